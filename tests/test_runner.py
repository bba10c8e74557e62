"""The papermill runner on tiny notebooks: figures saved, times recorded, failures named."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from lib.__main__ import main
from lib.tooling.runner import ChapterFailed, run_chapters


def write_book(folder, failing=False):
    folder.mkdir()
    cells = [new_code_cell('PROFILE = "cpu"', metadata={"tags": ["parameters"]}),
             new_code_cell("import plotly.graph_objects as go\nfrom lib.plotting import show\n"
                           "show(go.Figure(go.Scatter(y=[1, 3, 2])), 'line')\nprint(PROFILE)")]
    if failing:
        cells.append(new_code_cell("raise ValueError('boom')"))
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3",
                                                            "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, folder / "01_tiny.ipynb")
    return folder


def test_run_saves_notebooks_figures_and_times(tmp_path):
    book = write_book(tmp_path / "book")
    out, record = run_chapters("cpu", out=tmp_path / "run", book_dir=book, log=lambda *a: None)
    executed = nbformat.read(out / "book" / "01_tiny.ipynb", as_version=4)
    assert executed.cells[1].outputs[-1]["text"].strip() == "cpu"
    assert (out / "figures" / "01_tiny" / "line.json").exists()
    html = (out / "figures" / "01_tiny" / "line.html").read_text()
    assert 'src="plotly.min.js"' in html and (out / "figures" / "01_tiny" / "plotly.min.js").exists()
    fig = json.loads((out / "figures" / "01_tiny" / "line.json").read_text())
    assert fig["data"][0]["y"] == [1, 3, 2]
    saved = json.loads((out / "run.json").read_text())
    assert saved["status"] == "ok" and saved["seconds"]["01_tiny"] > 0
    from lib.tooling.runner import cpu_model

    assert saved["cpu"] == cpu_model() and saved["device"] == "CPU" and saved["threads"] >= 1
    assert saved["finished"]["01_tiny"] >= saved["started"]
    # the source notebook was not touched
    assert not nbformat.read(book / "01_tiny.ipynb", as_version=4).cells[1].get("outputs")
    # a second run into the same folder is refused
    with pytest.raises(FileExistsError):
        run_chapters("cpu", out=out, book_dir=book, log=lambda *a: None)


def test_the_in_place_run_writes_the_committed_record(tmp_path):
    """``--in-place`` (make notebooks) writes book/run.json: one trimmed entry per chapter, kept
    for the chapters a later run does not execute, read back by the book build."""
    import platform

    from lib.tooling.runner import available_cpus, chapter_entry, cpu_model, read_chapter_entry

    book = write_book(tmp_path / "book")
    _, rec = run_chapters("cpu", out=tmp_path / "run1", book_dir=book, in_place=True,
                          log=lambda *a: None)
    text = (book / "run.json").read_text()
    entry = json.loads(text)["chapters"]["01_tiny"]
    assert entry == chapter_entry(json.loads((tmp_path / "run1" / "run.json").read_text()),
                                  "01_tiny")
    assert entry["profile"] == "cpu" and entry["seconds"] == rec.seconds["01_tiny"] > 0
    assert entry["git_commit"] == rec.git_commit and entry["finished"] == rec.finished["01_tiny"]
    assert (entry["cpu"], entry["cores"], entry["device"]) == (cpu_model(), available_cpus(), "CPU")
    assert entry["torch"] == rec.keys["01_tiny"]["packages"]["torch"]
    assert str(tmp_path) not in text and "/" not in str(entry["cpu"])  # no paths
    if len(platform.node()) >= 6:
        assert platform.node() not in text  # no host name
    # the outputs are in the committed notebook, the record beside it
    assert nbformat.read(book / "01_tiny.ipynb", as_version=4).cells[1].outputs
    assert read_chapter_entry(book / "run.json", "01_tiny") == (entry, "book/run.json")
    # a run of another chapter alone keeps 01's entry; a chapter gone from the book drops out
    nb = nbformat.read(book / "01_tiny.ipynb", as_version=4)
    nbformat.write(nb, book / "02_more.ipynb")
    run_chapters("cpu", ["02"], out=tmp_path / "run2", book_dir=book, in_place=True,
                 log=lambda *a: None)
    chapters = json.loads((book / "run.json").read_text())["chapters"]
    assert sorted(chapters) == ["01_tiny", "02_more"] and chapters["01_tiny"] == entry
    (book / "01_tiny.ipynb").unlink()
    run_chapters("cpu", ["02"], out=tmp_path / "run3", book_dir=book, in_place=True,
                 log=lambda *a: None)
    assert sorted(json.loads((book / "run.json").read_text())["chapters"]) == ["02_more"]
    # a run into a run folder leaves the committed record alone
    before = (book / "run.json").read_text()
    run_chapters("cpu", out=tmp_path / "run4", book_dir=book, log=lambda *a: None)
    assert (book / "run.json").read_text() == before


def test_failure_names_chapter_and_cell(tmp_path, capsys, monkeypatch):
    book = write_book(tmp_path / "book", failing=True)
    with pytest.raises(ChapterFailed, match=r"chapter 01_tiny failed at cell index 2: ValueError: boom"):
        run_chapters("cpu", out=tmp_path / "run", book_dir=book, log=lambda *a: None)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"
    # the command line exits 1 and names chapter and cell; `latest` never points to a failure
    import lib.tooling.runner

    monkeypatch.setattr(lib.tooling.runner, "BOOK_DIR", book)
    monkeypatch.setattr(lib.tooling.runner, "RUNS_DIR", tmp_path / "runs")
    assert main(["run"]) == 1
    assert "chapter 01_tiny failed at cell index 2" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "cpu" / "latest").exists()


def test_cli_exit_codes(tmp_path, capsys):
    assert main(["run", "--profile", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown profile" in capsys.readouterr().err
    assert main(["run", "--chapters", "99", "--out", str(tmp_path / "y")]) == 2
    assert "no chapter matches" in capsys.readouterr().err


def test_gpu_profile_without_gpu_is_refused():
    import torch

    from lib.profiles import resolve

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="PROFILE = 'cpu'"):
        resolve("gpu")
    assert resolve("cpu").n_fit == 20_000


@pytest.mark.parametrize("gpu", [False, True])
def test_colab_says_what_its_runtime_runs(monkeypatch, capsys, gpu):
    """In Colab the default cpu profile becomes sd on a GPU runtime; without a GPU it stays cpu
    and says how to get one (the setup cell is five lines and says nothing of it)."""
    import sys
    import types

    from lib import profiles

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(profiles, "_cuda_available", lambda: gpu)
    assert profiles.resolve("cpu").name == ("sd" if gpu else "cpu")
    said = capsys.readouterr().out
    assert ("using the 'sd' profile" in said) == gpu
    assert ("No GPU in this runtime" in said and "T4 GPU" in said) == (not gpu)
    assert profiles.resolve("cpu", verbose=False) and capsys.readouterr().out == ""
    monkeypatch.delitem(sys.modules, "google.colab")
    assert profiles.resolve("cpu").name == "cpu" and capsys.readouterr().out == ""


# ---- reuse of unchanged chapters -------------------------------------------------------------

def write_reuse_book(folder):
    """Two chapters: 01 imports nothing from lib, 02 imports lib.schedule (and what it imports)."""
    folder.mkdir()
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    stamp = "import time\nprint(time.time_ns())"
    nbformat.write(new_notebook(cells=[new_code_cell(stamp)], metadata=meta),
                   folder / "01_plain.ipynb")
    # the key follows the import inside the function; the kernel never runs it (importing
    # torch would add seconds to each of the many executions below)
    uses = "def uses_schedule():\n    from lib.schedule import sd_alphas_cumprod\n"
    nbformat.write(new_notebook(cells=[new_code_cell(uses + stamp)], metadata=meta),
                   folder / "02_lib.ipynb")
    return folder


def stamps(run_dir):
    return {p.stem: nbformat.read(p, as_version=4).cells[0].outputs[-1]["text"]
            for p in sorted((run_dir / "book").glob("*.ipynb"))}


@pytest.fixture
def reuse_env(tmp_path, monkeypatch):
    """A book, a copy of lib and a data folder the keys are computed from, and a runs folder."""
    import shutil

    import lib.tooling.runner

    lib_copy = tmp_path / "lib"
    lib_copy.mkdir()
    for p in lib.tooling.runner.LIB_DIR.glob("*.py"):
        shutil.copy2(p, lib_copy / p.name)
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / "w.bin").write_bytes(b"weights")
    monkeypatch.setattr(lib.tooling.runner, "LIB_DIR", lib_copy)
    monkeypatch.setattr(lib.tooling.runner, "DATA_DIR", data)
    monkeypatch.delenv("LIB_NO_CACHE", raising=False)
    book = write_reuse_book(tmp_path / "book")
    lines = []

    def run(**kw):
        out, rec = run_chapters("cpu", book_dir=book, runs_dir=tmp_path / "runs",
                                log=lines.append, **kw)
        return out, rec

    return book, lib_copy, data, run, lines


def test_an_unchanged_chapter_is_reused_and_the_runner_says_so(reuse_env):
    book, _, _, run, lines = reuse_env
    first, rec1 = run()
    assert rec1.reused == {} and set(rec1.seconds) == {"01_plain", "02_lib"}
    second, rec2 = run()
    assert second != first
    assert set(rec2.reused) == {"01_plain", "02_lib"} and rec2.seconds == {}
    assert stamps(second) == stamps(first)  # the earlier outputs, not a new execution
    assert any(line.startswith("  01_plain: reused, unchanged since") for line in lines)
    saved = json.loads((second / "run.json").read_text())
    assert saved["reused"]["02_lib"] == str(first)
    # a third run reuses through the second (which itself reused)
    third, rec3 = run()
    assert set(rec3.reused) == {"01_plain", "02_lib"} and stamps(third) == stamps(first)


def test_a_changed_chapter_alone_is_re_executed(reuse_env):
    book, _, _, run, lines = reuse_env
    first, _ = run()
    nb = nbformat.read(book / "01_plain.ipynb", as_version=4)
    nb.cells.append(new_code_cell("x = 1"))
    nbformat.write(nb, book / "01_plain.ipynb")
    second, rec = run()
    assert set(rec.seconds) == {"01_plain"} and set(rec.reused) == {"02_lib"}
    assert stamps(second)["01_plain"] != stamps(first)["01_plain"]
    assert any("01_plain: executing (changed since" in line and "source" in line
               for line in lines)


def test_a_lib_change_re_executes_the_chapters_that_import_it(reuse_env):
    _, lib_copy, _, run, lines = reuse_env
    run()
    (lib_copy / "annealing.py").write_text((lib_copy / "annealing.py").read_text() + "\n# edit\n")
    _, rec = run()  # 02 imports lib.schedule, which does not import lib.annealing
    assert set(rec.reused) == {"01_plain", "02_lib"}
    (lib_copy / "schedule.py").write_text((lib_copy / "schedule.py").read_text() + "\n# edit\n")
    _, rec = run()
    assert set(rec.seconds) == {"02_lib"} and set(rec.reused) == {"01_plain"}
    assert any("02_lib: executing" in line and "lib/schedule.py" in line for line in lines)
    (lib_copy / "__init__.py").write_text((lib_copy / "__init__.py").read_text() + "\n# edit\n")
    _, rec = run()  # every lib import runs lib/__init__.py
    assert set(rec.seconds) == {"02_lib"}


def test_a_weights_change_re_executes_every_chapter(reuse_env):
    _, _, data, run, _ = reuse_env
    run()
    (data / "models" / "w.bin").write_bytes(b"new weights")
    _, rec = run()
    assert set(rec.seconds) == {"01_plain", "02_lib"} and rec.reused == {}


def test_rerun_no_cache_in_place_and_profile_execute_everything(reuse_env, monkeypatch):
    _, _, _, run, _ = reuse_env
    run()
    assert run(reuse=False)[1].reused == {}
    monkeypatch.setenv("LIB_NO_CACHE", "1")
    assert run()[1].reused == {}
    monkeypatch.delenv("LIB_NO_CACHE")
    assert set(run()[1].reused) == {"01_plain", "02_lib"}
    monkeypatch.setenv("LIB_ROUNDING_JITTER", "8")  # another floating-point environment
    assert run()[1].reused == {}


def test_chapter_modules_follow_imports_through_lib(tmp_path):
    from lib.tooling.runner import chapter_modules

    pkg = tmp_path / "lib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n\ndef g():\n    from lib import c\n")
    (pkg / "b.py").write_text("import numpy\nfrom lib.d import h\n")
    (pkg / "c.py").write_text("")
    (pkg / "d.py").write_text("")
    (pkg / "e.py").write_text("")
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}

    def modules(code):
        path = tmp_path / "nb.ipynb"
        nbformat.write(new_notebook(cells=[new_code_cell(code)], metadata=meta), path)
        return chapter_modules(path, pkg)

    everything = ["__init__.py", "a.py", "b.py", "c.py", "d.py", "e.py"]
    assert modules("from lib.a import g") == ["__init__.py", "a.py", "b.py", "c.py", "d.py"]
    assert modules("%matplotlib inline\nfrom lib import d, e") == ["__init__.py", "d.py", "e.py"]
    assert modules("import numpy") == []
    assert modules("import lib") == everything
    assert modules("from lib import *") == everything
    assert modules("def broken(:\n  pass") == everything  # cannot parse: assume everything
    # the real chapters: chapter 5 needs the annealing, chapter 1 does not
    from lib.tooling.runner import BOOK_DIR

    ch1 = chapter_modules(BOOK_DIR / "01_preliminaries.ipynb")
    ch5 = chapter_modules(BOOK_DIR / "05_annealing.ipynb")
    assert "annealing.py" in ch5 and "annealing.py" not in ch1 and "whitening.py" in ch1


def test_cli_reuses_and_its_flags_execute(reuse_env, monkeypatch, capsys):
    import lib.tooling.runner

    book, _, _, run, _ = reuse_env
    runs = book.parent / "runs"
    monkeypatch.setattr(lib.tooling.runner, "BOOK_DIR", book)
    monkeypatch.setattr(lib.tooling.runner, "RUNS_DIR", runs)
    monkeypatch.setenv("LIB_NO_CACHE", "0")  # restored after the test (--no-cache sets it)

    def last_record():
        latest = runs / "cpu" / "latest"
        return json.loads((latest / "run.json").read_text())

    assert main(["run"]) == 0 and last_record()["reused"] == {}
    assert main(["run"]) == 0 and set(last_record()["reused"]) == {"01_plain", "02_lib"}
    assert "01_plain: reused, unchanged since" in capsys.readouterr().out
    assert main(["run", "--rerun"]) == 0 and last_record()["reused"] == {}
    assert main(["run", "--no-cache"]) == 0 and last_record()["reused"] == {}
    import os

    assert os.environ["LIB_NO_CACHE"] == "1"  # the chapters' kernels inherit it


# ---- chapters side by side -------------------------------------------------------------------

def write_thread_book(folder, failing=False):
    """Three chapters that print the thread count their kernel was given (and its pid)."""
    folder.mkdir()
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    show = "import os\nprint(os.environ.get('OMP_NUM_THREADS'), os.getpid())"
    for i in range(1, 4):
        cells = [new_code_cell(show)]
        if failing and i == 2:
            cells.append(new_code_cell("raise ValueError('boom')"))
        nbformat.write(new_notebook(cells=cells, metadata=meta), folder / f"0{i}_c.ipynb")
    return folder


def kernel_threads(run_dir):
    return {p.stem: nbformat.read(p, as_version=4).cells[0].outputs[-1]["text"].split()[0]
            for p in sorted((run_dir / "book").glob("*.ipynb"))}


def test_each_chapter_gets_the_whole_thread_budget(tmp_path, monkeypatch):
    import os

    book = write_thread_book(tmp_path / "book")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    out, rec = run_chapters("cpu", out=tmp_path / "one", book_dir=book, log=lambda *a: None)
    assert set(rec.seconds) == {"01_c", "02_c", "03_c"} and rec.threads == 4
    assert set(kernel_threads(out).values()) == {"4"}
    saved = json.loads((out / "run.json").read_text())
    assert saved["wall_seconds"] > 0 and "jobs" not in saved
    assert os.environ["OMP_NUM_THREADS"] == "4"


def test_a_failure_names_the_chapter_and_starts_no_later_one(tmp_path, monkeypatch):
    book = write_thread_book(tmp_path / "book", failing=True)
    with pytest.raises(ChapterFailed, match=r"chapter 02_c failed at cell index 1: ValueError: boom"):
        run_chapters("cpu", out=tmp_path / "run", book_dir=book, log=lambda *a: None)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["status"] == "failed" and set(saved["seconds"]) == {"01_c"}
    assert not (tmp_path / "run" / "book" / "03_c.ipynb").exists()


def test_thread_budget(monkeypatch):
    from lib.tooling.runner import thread_budget

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_budget() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert thread_budget() >= 1  # unreadable: the CPUs


def test_the_floor_table_gives_each_chapters_time_over_its_network_time():
    from lib.tooling.runner import RunRecord, floor_table

    record = RunRecord(profile="cpu", out="x", started="now", chapters=["a", "b"],
                       seconds={"a": 30.0, "b": 10.0},
                       network={"a": {"m": {"evaluations": 1000, "seconds": 10.0},
                                      "n": {"evaluations": 500, "seconds": 5.0}}, "b": {}})
    lines = floor_table(record)
    assert lines[1].split() == ["a", "1,500", "15.0", "30.0", "2.00"]
    assert lines[2].split() == ["b", "0", "0.0", "10.0", "-"]
    assert lines[3].split() == ["total", "1,500", "15.0", "40.0", "2.67"]
