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
