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


def setup(app):
    app.add_js_file("plotly/plotly.min.js")
    app.add_css_file("book.css")
    app.connect("builder-inited", _serve_css)
    app.connect("env-get-updated", _renumber, priority=900)  # after Sphinx assigns the numbers
    app.connect("html-page-context", _dedupe_scripts, priority=10)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
