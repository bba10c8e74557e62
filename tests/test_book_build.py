"""The HTML build is skipped when its inputs are those of the build already there."""

import subprocess

import nbformat
from nbformat.v4 import new_markdown_cell, new_notebook

import lib.book


def test_an_unchanged_book_is_not_rebuilt(tmp_path, monkeypatch):
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "favicon.png").write_bytes(b"png")
    monkeypatch.setattr(lib.book, "fetch_assets", lambda: assets)
    builds = []

    def fake_build(cmd, **kw):  # stands in for `jupyter-book build STAGE`
        builds.append(cmd)
        html = tmp_path / "_build" / "src-x" / "_build" / "html"
        html.mkdir(parents=True, exist_ok=True)
        (html / "index.html").write_text(f"build {len(builds)}")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(lib.book.subprocess, "run", fake_build)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nbformat.write(new_notebook(cells=[new_markdown_cell("# One")]), nbs / "01_one.ipynb")
    lines = []

    def build(**kw):
        return lib.book.build_book(nbs, label="x", build_root=tmp_path / "_build",
                                   log=lines.append, **kw)

    html = build()
    assert len(builds) == 1 and (html / "index.html").read_text() == "build 1"
    assert build() == html and len(builds) == 1  # the same inputs: skipped
    assert "up to date" in lines[-1]
    assert build(force=True) == html and len(builds) == 2
    nbformat.write(new_notebook(cells=[new_markdown_cell("# One, edited")]), nbs / "01_one.ipynb")
    build()
    assert len(builds) == 3  # a notebook changed
    build()
    assert len(builds) == 3
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Two")]), nbs / "02_two.ipynb")
    build()
    assert len(builds) == 4  # a notebook added


def test_saved_progress_bars_are_dropped_with_the_models_only_they_use():
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from lib.book import is_progress_bar, quiet_notebook

    view = "application/vnd.jupyter.widget-view+json"

    def widget(mid, text):
        return new_output("display_data", data={view: {"model_id": mid, "version_major": 2,
                                                       "version_minor": 0}, "text/plain": text})

    bar = widget("b1", "tiny-a: the set:  40%|####      | 4/10 [00:02<00:03, 2.0it/s]")
    demo = widget("v1", "VBox(children=(Dropdown(description='photo'),))")
    printed = new_output("stream", name="stdout", text="100%| done 4/4 of the work\n")
    nb = new_notebook(cells=[new_code_cell("x", outputs=[bar, printed]),
                             new_code_cell("y", outputs=[demo])])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {
        "b1": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_p1"]}},
        "p1": {"model_name": "FloatProgressModel", "state": {"layout": "IPY_MODEL_l1"}},
        "l1": {"model_name": "LayoutModel", "state": {}},
        "v1": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_d1"]}},
        "d1": {"model_name": "DropdownModel", "state": {"layout": "IPY_MODEL_l2"}},
        "l2": {"model_name": "LayoutModel", "state": {}}}}}
    assert is_progress_bar(bar) and not is_progress_bar(demo) and not is_progress_bar(printed)
    assert quiet_notebook(nb) == 1
    assert nb.cells[0].outputs == [printed] and nb.cells[1].outputs == [demo]  # text stays
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert sorted(state) == ["d1", "l2", "v1"]  # the demo's models, and only they
    nbformat.validate(nb)
