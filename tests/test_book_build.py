"""The HTML build is skipped when its inputs are those of the build already there."""

import subprocess

import nbformat
from nbformat.v4 import new_markdown_cell, new_notebook

import lib.tooling.book


def fake_jupyter_book(tmp_path, monkeypatch, label: str) -> list:
    """Stand in for the npm assets and `jupyter-book build STAGE`: each build writes
    ``index.html`` ("build n") into the staging folder of ``label``; returns the list of builds."""
    assets = tmp_path / "assets"
    assets.mkdir(exist_ok=True)
    (assets / "favicon.png").write_bytes(b"png")
    monkeypatch.setattr(lib.tooling.book, "fetch_assets", lambda: assets)
    builds = []

    def fake_build(cmd, **kw):
        builds.append(cmd)
        html = tmp_path / "_build" / f"src-{label}" / "_build" / "html"
        html.mkdir(parents=True, exist_ok=True)
        (html / "index.html").write_text(f"build {len(builds)}")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(lib.tooling.book.subprocess, "run", fake_build)
    return builds


def test_an_unchanged_book_is_not_rebuilt(tmp_path, monkeypatch):
    builds = fake_jupyter_book(tmp_path, monkeypatch, "x")
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nbformat.write(new_notebook(cells=[new_markdown_cell("# One")]), nbs / "01_one.ipynb")
    lines = []

    def build(**kw):
        return lib.tooling.book.build_book(nbs, label="x", build_root=tmp_path / "_build",
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

    from lib.tooling.book import is_progress_bar, quiet_notebook

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


# ---- staging: the Colab cell's commit, Colab's metadata, how each chapter was made ------------

SHA = "0123456789abcdef0123456789abcdef01234567"
URL = "https://example.org/book"


def chapter_notebook(runs_model=True):
    """A chapter as the book has them: the setup cell, the parameters, code that imports lib."""
    from nbformat.v4 import new_code_cell

    from lib.tooling.book import setup_cell_source

    code = "from lib.models import load_model" if runs_model else "import lib.profiles"
    return new_notebook(cells=[new_markdown_cell("# 2. A chapter"),
                               new_code_cell(setup_cell_source(url=URL)),
                               new_code_cell('PROFILE = "cpu"', metadata={"tags": ["parameters"]}),
                               new_code_cell(code)])


def run_record(folder, *, executed=None, reused=None, **fields):
    """A run folder with a run.json as lib.tooling.runner writes it."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    record = {"profile": "gpu", "out": str(folder), "started": "2026-11-30T08:00:00",
              "chapters": sorted({**(executed or {}), **(reused or {})}),
              "seconds": {c: s for c, (s, _) in (executed or {}).items()},
              "finished": {c: f for c, (_, f) in (executed or {}).items()},
              "keys": {c: {"packages": {"torch": "2.13.0+cu128"}, "python": "3.11.7"}
                       for c in executed or {}},
              "reused": reused or {}, "status": "ok", "git_commit": SHA,
              "machine": "host-7f3a x86_64, 16 CPUs",
              "cpu": "AMD EPYC 9654 96-Core Processor", "cores": 16, "threads": 16,
              "device": "NVIDIA H200", "python": "3.11.7", **fields}
    (folder / "run.json").write_text(json.dumps(record))
    return folder / "run.json"


def test_staging_puts_the_runs_record_into_the_last_cell(tmp_path):
    from lib.tooling.book import COLAB_METADATA, setup_cell_source, stage_notebook

    record = run_record(tmp_path / "run", executed={"02_chapter": (629.4, "2026-11-30T08:10:29")})
    nb = chapter_notebook()
    assert stage_notebook(nb, "02_chapter", record=record, commit=SHA, url=URL) is None
    assert nb.cells[1].source == setup_cell_source(SHA, url=URL)  # installs the run's commit
    assert {k: nb.metadata[k] for k in COLAB_METADATA} == COLAB_METADATA
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## How this chapter was made")
    for fact in ["**Profile:** `gpu`", f"[`{SHA[:12]}`]({URL}/commit/{SHA})",
                 "**Machine:** AMD EPYC 9654 96-Core Processor, 16 CPUs, 16 threads",
                 "**Device:** NVIDIA H200 (torch 2.13.0+cu128)", "**Run time:** 10 min 29 s",
                 "**Date:** 2026-11-30", "(recorded in run run)",
                 "`python -m lib run --profile gpu --chapters 02_chapter`"]:
        assert fact in last.source, f"{fact!r} not in\n{last.source}"
    assert "host-7f3a" not in last.source and str(tmp_path) not in last.source
    assert "uncommitted" not in last.source
    nbformat.validate(nb)


def test_a_reused_chapter_reports_the_run_that_executed_it(tmp_path):
    from lib.tooling.book import stage_notebook

    first = run_record(tmp_path / "20261129-100000", git_commit="abcdef1+uncommitted",
                       executed={"02_chapter": (42.04, "2026-11-29T10:00:42")})
    second = run_record(tmp_path / "20261130-080000", executed={},
                        reused={"02_chapter": str(first.parent)})
    nb = chapter_notebook()
    assert stage_notebook(nb, "02_chapter", record=second, commit=SHA, url=URL) is None
    last = nb.cells[-1].source
    assert "(recorded in run 20261129-100000)" in last and "**Run time:** 42.0 s" in last
    assert "`abcdef1` plus uncommitted changes" in last.replace(f"]({URL}/commit/abcdef1)", "")
    assert "**Date:** 2026-11-29" in last


def test_a_chapter_without_a_record_says_so(tmp_path):
    from lib.tooling.book import stage_notebook

    record = run_record(tmp_path / "run", executed={"01_other": (1.0, "2026-11-30T08:00:01")})
    nb = chapter_notebook()
    missing = stage_notebook(nb, "02_chapter", record=record, commit=None, profile="gpu", url=URL)
    assert missing == "02_chapter: no record of its execution (run run did not execute 02_chapter)"
    last = nb.cells[-1].source
    assert "without a record of this chapter's execution" in last and "not known" in last
    assert "**Run time:**" not in last and not any(ch.isdigit() for ch in last.split("(")[0])
    assert "`python -m lib run --profile gpu --chapters 02_chapter`" in last
    assert 'BOOK_COMMIT = "main"' in nb.cells[1].source  # unknown commit: main
    nb = chapter_notebook()
    missing = stage_notebook(nb, "02_chapter", record=tmp_path / "nowhere" / "run.json",
                             commit=None, url=URL)
    assert "no record run.json in nowhere/" in missing and "not known" in nb.cells[-1].source


def test_the_committed_record_and_a_page_that_runs_no_model(tmp_path):
    import json

    from lib.tooling.book import stage_notebook

    entry = {"profile": "cpu", "git_commit": SHA, "finished": "2026-12-02T09:00:00",
             "seconds": 0.9, "cpu": "AMD EPYC", "cores": 2, "threads": 2, "device": "CPU",
             "torch": "2.13.0+cpu", "python": "3.11.7"}
    (tmp_path / "run.json").write_text(json.dumps({"chapters": {"00_intro": entry}}))
    nb = chapter_notebook(runs_model=False)
    assert stage_notebook(nb, "00_intro", record=tmp_path / "run.json", commit=SHA, url=URL) is None
    last = nb.cells[-1].source
    assert last.startswith("## How this page was made") and "it runs no model" in last
    assert "`cpu` profile" in last and "2026-12-02" in last and "0.9 s" in last
    assert "(AMD EPYC, 2 CPUs, 2 threads)" in last and "python -m lib run" not in last


def test_a_setup_cell_without_the_placeholder_is_refused(tmp_path):
    import pytest

    from lib.tooling.book import stage_notebook

    nb = chapter_notebook()
    nb.cells[1].source = nb.cells[1].source.replace("  # the book build writes", "  # someone")
    with pytest.raises(ValueError, match="02_chapter: the Colab setup cell has no line"):
        stage_notebook(nb, "02_chapter", record=None, commit=SHA, url=URL)


def test_the_build_stages_every_chapter_and_rebuilds_when_the_record_changes(tmp_path, monkeypatch):
    builds = fake_jupyter_book(tmp_path, monkeypatch, "gpu")
    record = run_record(tmp_path / "run", executed={"02_chapter": (5.0, "2026-11-30T08:00:05")})
    nbs = tmp_path / "run" / "book"
    nbs.mkdir()
    nbformat.write(chapter_notebook(), nbs / "02_chapter.ipynb")
    nbformat.write(chapter_notebook(), nbs / "03_unrecorded.ipynb")
    lines = []

    def build():
        return lib.tooling.book.build_book(nbs, label="gpu", build_root=tmp_path / "_build",
                                   log=lines.append)

    build()
    staged = tmp_path / "_build" / "src-gpu" / "book"
    two = nbformat.read(staged / "02_chapter.ipynb", as_version=4)
    assert "**Run time:** 5.0 s" in two.cells[-1].source and f'"{SHA}"' in two.cells[1].source
    three = nbformat.read(staged / "03_unrecorded.ipynb", as_version=4)
    assert "without a record" in three.cells[-1].source
    assert "warning: 03_unrecorded: no record of its execution" in " ".join(lines)
    assert f"the Colab setup cells install commit {SHA}" in lines
    build()
    assert len(builds) == 1  # unchanged: skipped
    record.write_text(record.read_text().replace("5.0", "6.0"))
    build()
    assert len(builds) == 2  # the record is an input of the pages


def test_figures_are_numbered_by_chapter():
    from lib.tooling.sphinx_ext import chapter_prefix, number_by_chapter

    assert [chapter_prefix(d) for d in ("book/02_correlation", "book/90_appendix_models",
                                        "book/00_intro", "book/references")] == ["2", "A", None, None]
    numbers = {"book/02_correlation": {"figure": {"fig-b": (12,), "fig-a": (9,), "fig-c": (13,)}},
               "book/90_appendix_models": {"figure": {"fig-x": (40,)}},
               "book/references": {"figure": {"fig-r": (41,)}}}
    number_by_chapter(numbers)
    assert numbers["book/02_correlation"]["figure"] == {"fig-a": ("2", 1), "fig-b": ("2", 2),
                                                          "fig-c": ("2", 3)}
    assert numbers["book/90_appendix_models"]["figure"] == {"fig-x": ("A", 1)}
    assert numbers["book/references"]["figure"] == {"fig-r": (41,)}  # not a chapter: left alone


def test_the_run_time_says_how_many_results_came_from_the_cache(tmp_path):
    """A chapter whose pairs came from the disk cache ran faster than it would from scratch; its
    page says so beside the run time (issue 29: "1 min 12 s" hid that)."""
    from lib.tooling.book import stage_notebook

    record = run_record(tmp_path / "run", executed={"02_chapter": (72.0, "2026-11-30T08:10:29")},
                        cache={"02_chapter": {"reused": 27, "computed": 3}})
    nb = chapter_notebook()
    stage_notebook(nb, "02_chapter", record=record, commit=SHA, url=URL)
    assert "**Run time:** 1 min 12 s (27 of its 30 expensive results" in nb.cells[-1].source
    fresh = run_record(tmp_path / "fresh", executed={"02_chapter": (72.0, "2026-11-30T08:10:29")},
                       cache={"02_chapter": {"reused": 0, "computed": 30}})
    nb = chapter_notebook()
    stage_notebook(nb, "02_chapter", record=fresh, commit=SHA, url=URL)
    assert "**Run time:** 1 min 12 s\n" in nb.cells[-1].source  # nothing reused: nothing said


def test_the_cache_counts_what_it_reused_and_computed(tmp_path, monkeypatch):
    from lib import cache

    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path))
    before = cache.cache_use()
    cache.lookup("counted", "1", lambda: 1, x=1)
    cache.lookup("counted", "1", lambda: 1, x=1)
    after = cache.cache_use()
    assert after["computed"] - before["computed"] == 1 and after["reused"] - before["reused"] == 1


def test_the_bibliography_is_labelled_by_author_and_year_as_the_text_cites():
    """The references page labels each work as its citations read ("Song et al., 2021"), not
    with numbers the text never uses; every label is unique."""
    from pybtex.database import parse_file

    from lib.tooling.book import ROOT
    from lib.tooling.sphinx_ext import author_year_label

    entries = parse_file(str(ROOT / "references.bib")).entries
    labels = {key: author_year_label(e) for key, e in entries.items()}
    assert labels["song2021ddim"] == "Song et al., 2021"
    assert labels["bell1997"] == "Bell and Sejnowski, 1997"
    assert labels["anderson1965"] == "Anderson, 1965"
    assert len(set(labels.values())) == len(labels)
    assert ":style: authoryear" in (ROOT / "book" / "references.md").read_text()
