"""A small Sphinx extension for the book's pages.

* Loads plotly.js on every page (``lib.tooling.book`` copies it from the installed plotly
  package into ``_static/plotly``; ``lib.plotting.show`` emits figures without it).
* Drops repeated inline scripts. With jupyter-book 1.0.4 and Sphinx 7.4, sphinx-thebe's and
  sphinx-togglebutton's inline scripts are added twice, and the second
  ``const THEBE_JS_URL = ...`` is a JavaScript error on every page.
* Numbers figures by chapter: "Fig. 2.4" is the fourth figure of chapter 2 and "Fig. A.3" the
  third of the appendix (Sphinx would count the whole book: the fourth figure of chapter 2 would
  be "Fig. 12"). Each caption names the paper's figure it reproduces.
* Serves ``lib/tooling/web/css`` and adds ``book.css`` to every page: printed lines wrap at the column's
  width, and :class:`lib.prose.Table` renders as a compact table.
* Labels the bibliography by author and year, as the text cites ("[Song et al., 2021]", not
  "[14]"): the pybtex style ``authoryear`` that ``book/references.md`` asks for.
"""

from pathlib import Path

CSS_DIR = Path(__file__).parent / "web" / "css"


def chapter_prefix(docname: str) -> str | None:
    """``book/02_correlation`` -> ``"2"``; ``book/90_appendix_models`` -> ``"A"``; else None."""
    stem = docname.rsplit("/", 1)[-1]
    head = stem.split("_", 1)[0]
    if not head.isdigit() or int(head) == 0:
        return None
    return "A" if int(head) >= 90 else str(int(head))


def number_by_chapter(fignumbers: dict) -> dict:
    """Renumber Sphinx's figure numbers as (chapter, k), k counting each chapter's figures.

    Args:
        fignumbers: Sphinx's ``env.toc_fignumbers``, ``{docname: {kind: {id: (n,)}}}``.

    Returns:
        The same dict, changed in place: a chapter's figures numbered ``("2", 1)``,
        ``("2", 2)`` ... in their order; pages that are no chapter left alone.
    """
    for docname, kinds in fignumbers.items():
        prefix = chapter_prefix(docname)
        if prefix is None:
            continue
        for kind, ids in kinds.items():
            order = sorted(ids, key=lambda i: ids[i])
            for k, fid in enumerate(order, start=1):
                ids[fid] = (prefix, k)
    return fignumbers


def _renumber(app, env):
    number_by_chapter(getattr(env, "toc_fignumbers", {}))
    return []


def _serve_css(app):
    if str(CSS_DIR) not in app.config.html_static_path:
        app.config.html_static_path.append(str(CSS_DIR))


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        # the two copies differ only in filename None vs "" (no file: an inline script)
        key = (getattr(script, "filename", script) or "",
               repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def author_year_label(entry) -> str:
    """``"Song et al., 2021"``, ``"Bell and Sejnowski, 1997"`` or ``"Kessy, 2018"`` for a pybtex
    entry, as sphinxcontrib-bibtex's ``author_year`` citations print it in the text."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = ["".join(p.last_names).replace("{", "").replace("}", "") for p in persons]
    who = (names[0] if len(names) == 1 else f"{names[0]} and {names[1]}" if len(names) == 2
           else f"{names[0]} et al." if names else entry.key)
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


def _register_author_year_style() -> None:
    from pybtex.plugin import register_plugin
    from pybtex.style.formatting.plain import Style as Plain
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            seen: dict[str, int] = {}
            for entry in sorted_entries:  # a second "Song et al., 2021" becomes "2021b"
                label = author_year_label(entry)
                seen[label] = seen.get(label, 0) + 1
                yield label if seen[label] == 1 else f"{label}{chr(ord('a') + seen[label] - 1)}"

    class AuthorYearStyle(Plain):
        default_label_style = "authoryear"

    register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels, force=True)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle, force=True)


def setup(app):
    _register_author_year_style()
    app.add_js_file("plotly/plotly.min.js")
    app.add_css_file("book.css")
    app.connect("builder-inited", _serve_css)
    app.connect("env-get-updated", _renumber, priority=900)  # after Sphinx assigns the numbers
    app.connect("html-page-context", _dedupe_scripts, priority=10)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
