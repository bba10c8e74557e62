"""The papermill runner on tiny notebooks: figures saved, times recorded, failures named."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from lib.__main__ import main
from lib.runner import ChapterFailed, run_chapters


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
    # the source notebook was not touched
    assert not nbformat.read(book / "01_tiny.ipynb", as_version=4).cells[1].get("outputs")
    # a second run into the same folder is refused
    with pytest.raises(FileExistsError):
        run_chapters("cpu", out=out, book_dir=book, log=lambda *a: None)


def test_failure_names_chapter_and_cell(tmp_path, capsys, monkeypatch):
    book = write_book(tmp_path / "book", failing=True)
    with pytest.raises(ChapterFailed, match=r"chapter 01_tiny failed at cell index 2: ValueError: boom"):
        run_chapters("cpu", out=tmp_path / "run", book_dir=book, log=lambda *a: None)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"
    # the command line exits 1 and names chapter and cell; `latest` never points to a failure
    import lib.runner

    monkeypatch.setattr(lib.runner, "BOOK_DIR", book)
    monkeypatch.setattr(lib.runner, "RUNS_DIR", tmp_path / "runs")
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
