"""The device script's path, run here on the CPU: execute, record, pack."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def test_run_on_device_packs_the_executed_notebooks_and_their_record(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "LIB_GIT_COMMIT": "f" * 40,
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(ROOT / "editions" / "run_on_device.sh"), "mini", "00_intro"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    log = (out / "log.txt").read_text()
    assert log.startswith("device: ") and "00_intro" in log
    with tarfile.open(out / "edition.tar.xz") as tar:
        names = tar.getnames()
        assert "run.json" in names and "book/00_intro.ipynb" in names
        assert not any(n.endswith(".html") for n in names)  # the book rebuilds the pages
        record = tar.extractfile("run.json").read().decode()
        nb = nbformat.reads(tar.extractfile("book/00_intro.ipynb").read().decode(), as_version=4)
    assert '"f' + "f" * 39 + '"' in record and '"mini"' in record  # the commit named by the env
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")  # executed


def test_a_run_that_fails_before_any_chapter_says_so_and_fails(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    done = subprocess.run([str(ROOT / "editions" / "run_on_device.sh"), "mini", "no_such_chapter"],
                          env=env, capture_output=True, text=True, timeout=300)
    log = (out / "log.txt").read_text()
    # the runner's own error reaches the log, the script reaches its end and exits with it
    assert done.returncode != 0 and "no_such_chapter" in log
    assert "nothing ran, nothing to pack" in log and not (out / "edition.tar.xz").exists()


def test_the_device_wheels_are_pinned_once_each():
    lines = [ln.strip() for ln in (ROOT / "editions" / "device-wheels.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    names = [ln.split("==")[0].lower().replace("_", "-") for ln in lines]
    assert all("==" in ln for ln in lines) and len(set(names)) == len(names)
    # the packages a chapter run needs beyond the device image (the device README's package list)
    assert {"diffusers", "plotly", "papermill", "ipykernel", "myst-nb", "nbclient"} <= set(names)


def test_the_device_runs_the_pinned_versions_of_what_it_carries():
    import tomllib

    pinned = dict(p.split("==") for p in
                  tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["pinned"])
    pinned = {k.lower().replace("_", "-"): v for k, v in pinned.items()}
    carried = dict(ln.strip().split("==") for ln in (ROOT / "editions" / "device-wheels.txt").read_text().splitlines()
                   if ln.strip() and not ln.startswith("#"))
    carried = {k.lower().replace("_", "-"): v for k, v in carried.items()}
    both = set(pinned) & set(carried)
    assert len(both) >= 6 and all(carried[k] == pinned[k] for k in both), \
        {k: (carried[k], pinned[k]) for k in both if carried[k] != pinned[k]}
