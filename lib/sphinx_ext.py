"""A small Sphinx extension for the book's pages.

* Loads plotly.js first on every page (``lib.book`` copies it from the installed plotly
  package into ``_static/plotly``; ``lib.plotting.show`` emits figures without it). Early is
  insurance: plotly.js 2.x registers itself as an anonymous AMD module when require.js (which
  the ipywidgets html manager needs) is already on the page, and ``window.Plotly`` then stays
  undefined. The plotly.js 4.1 bundled with plotly 7.1 no longer does, so with the pinned
  version the order does not matter; it does if plotly is ever downgraded.
* Drops repeated inline scripts. With jupyter-book 1.0.4 and Sphinx 7.4, sphinx-thebe's and
  sphinx-togglebutton's inline scripts are added twice, and the second
  ``const THEBE_JS_URL = ...`` is a JavaScript error on every page.
"""


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
    app.add_js_file("plotly/plotly.min.js", priority=100)
    app.connect("html-page-context", _dedupe_scripts, priority=10)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
