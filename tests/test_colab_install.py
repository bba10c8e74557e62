"""Colab's setup cell and the dependency declarations it relies on.

The fast checks: the package's dependencies are ranges that each hold their exact pin (so
``pip install -e ".[test,pinned]"`` installs the pins and Colab keeps what it has in range); the
five-line setup cell does nothing outside Colab and, when pip fails, shows pip's error without
a traceback.

The slow check (marker ``colab_install``; ``-m "not colab_install"`` deselects it) installs the
package the way the setup cell does, into a fresh virtual environment made to look like a Colab
image: what the package needs except diffusers is installed first (Colab preinstalls torch,
numpy, transformers ...), at the pinned versions except two at Colab's own, older versions
(:data:`COLAB_VERSIONS`); then the cell itself runs, from a local clone of this repository at a
commit holding the working tree. Pip must keep every preinstalled package as it was (exact
pins in the package's dependencies would replace the two) and add diffusers and the package; the
environment must then import ``lib`` from the installed wheel and run the embedded model
``tiny-a``. The pinned torch comes from the local wheel folder when pip has one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from lib.tooling.book import SETUP_PLACEHOLDER, setup_cell_source
from lib.tooling.runner import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
#: the extras that are ranges (with the base dependencies); `pinned` and `test` are exact
RANGES = PROJECT["dependencies"] + EXTRAS["sd"] + EXTRAS["book"]
#: what the test's stand-in for a Colab image lacks: Colab preinstalls the rest of the base
COLAB_LACKS = {"diffusers", "myst-nb"}
#: versions Colab ships (2025) that differ from the pins but are in range: pip must keep them
COLAB_VERSIONS = {"ipywidgets": "7.7.1", "tqdm": "4.67.1"}


def _name(requirement: str) -> str:
    return Requirement(requirement).name.lower()


def test_dependencies_are_ranges_that_hold_their_pins():
    ranges = {_name(r): Requirement(r) for r in RANGES}
    pins = {_name(p): Requirement(p) for p in EXTRAS["pinned"]}
    assert len(ranges) == len(RANGES) and len(pins) == len(EXTRAS["pinned"]), "a name twice"
    for name, req in ranges.items():
        ops = {s.operator for s in req.specifier}
        assert ops == {">=", "<"}, f"{req}: a range is a lower and an upper bound, not {ops}"
    assert sorted(pins) == sorted(ranges), "`pinned` pins exactly the ranged packages"
    for name, pin in pins.items():
        (spec,) = pin.specifier
        assert spec.operator == "==", f"{pin} is not an exact pin"
        assert ranges[name].specifier.contains(spec.version), \
            f"the pin {pin} is outside its range {ranges[name]}: make and Colab would disagree"
    assert all("==" in t for t in EXTRAS["test"])
    # Colab's extra: the sd profile's packages (a GPU session switches to sd), no pins
    assert EXTRAS["colab"] == [f"{PROJECT['name']}[sd]"]
    assert '-e ".[test,pinned]"' in (ROOT / "Makefile").read_text()


def _cell_script(tmp_path: Path, source: str, colab: bool = True) -> Path:
    """An IPython script (``.ipy``: ``%pip`` is a magic) that runs a cell's source as Colab would
    (``google.colab`` imported); run it with :func:`_run_cell`."""
    fake = "import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n"
    script = tmp_path / "setup_cell.ipy"
    script.write_text((fake if colab else "") + source)
    return script


def _run_cell(python, script: Path, cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    """Run the script in IPython (installed in the environment with the test's packages), with
    ``python`` as the ``sys.executable`` that ``%pip`` installs into."""
    runner = ("import sys, IPython; sys.executable = sys.argv[1]; "
              "IPython.start_ipython(argv=['--quick', '--no-banner', sys.argv[2]])")
    return subprocess.run([sys.executable, "-c", runner, str(python), str(script)],
                          capture_output=True, text=True, cwd=cwd, env=_clean_env(),
                          timeout=timeout)


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def test_the_setup_cell_does_nothing_outside_colab(tmp_path):
    script = _cell_script(tmp_path, setup_cell_source(url="file:///nonexistent/repo"), colab=False)
    proc = _run_cell(sys.executable, script, tmp_path, 60)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


def test_a_failed_install_prints_pips_error_without_a_traceback(tmp_path):
    """pip cannot clone the repository: the cell shows pip's error naming what it tried to
    install and the notebook carries on (exit status 0, no traceback). Nothing is installed."""
    url = f"file://{tmp_path}/no-such-repository"
    script = _cell_script(tmp_path, setup_cell_source(url=url))
    proc = _run_cell(sys.executable, script, tmp_path, 300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "ERROR" in out and "no-such-repository" in out, out


def test_the_setup_cell_is_five_lines_and_the_staged_one_differs_only_in_its_commit():
    sha = "0123456789abcdef0123456789abcdef01234567"
    committed, staged = setup_cell_source(), setup_cell_source(sha)
    assert len(committed.splitlines()) == len(staged.splitlines()) == 5
    assert SETUP_PLACEHOLDER in committed and SETUP_PLACEHOLDER not in staged
    assert staged == committed.replace(SETUP_PLACEHOLDER, f'BOOK_COMMIT = "{sha}"  # the commit '
                                       "this page was built from (the build wrote it)")
    assert '%pip install -q "dewhitening-book[colab] @ git+' in committed
    assert committed.rstrip().endswith('@{BOOK_COMMIT}"')  # IPython expands it when it runs
    for unpinned in (sha + "+uncommitted", None):  # no commit holds the code: main
        cell = setup_cell_source(unpinned)
        assert 'BOOK_COMMIT = "main"' in cell and SETUP_PLACEHOLDER not in cell
        assert len(cell.splitlines()) == 5
    assert "uncommitted changes to 0123456789ab" in setup_cell_source(sha + "+uncommitted")
    with pytest.raises(ValueError, match="not a git commit"):
        setup_cell_source("main; rm -rf /")


def _snapshot_clone(dest: Path) -> str:
    """A clone of this repository with one more commit holding the working tree (tracked files
    and untracked ones git does not ignore), so the test installs the code under test; in a
    clean checkout that commit's tree is HEAD's. Returns the commit."""
    def git(*args, cwd=dest):
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                              text=True).stdout

    git("clone", "-q", str(ROOT), str(dest), cwd=ROOT)
    for rel in git("ls-files", "-z").split("\0"):
        if rel and (dest / rel).is_file():
            (dest / rel).unlink()
    for rel in git("ls-files", "-z", "--cached", "--others", "--exclude-standard",
                   cwd=ROOT).split("\0"):
        src = ROOT / rel
        if rel and src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git("add", "-A")
    git("-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-q",
        "--allow-empty", "-m", "the working tree under test")
    return git("rev-parse", "HEAD").strip()


def _freeze(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], check=True,
                         capture_output=True, text=True, env=_clean_env()).stdout
    return {_name(line.split("==")[0]): line.split("==")[1]
            for line in out.splitlines() if "==" in line}


@pytest.mark.colab_install
def test_the_setup_cell_installs_the_package_into_a_colab_like_environment(tmp_path):
    times = {}
    t0 = time.perf_counter()
    commit = _snapshot_clone(tmp_path / "clone")
    times["clone"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=_clean_env())
    python = venv / "bin" / "python"
    # a recent pip, as Colab has (the pip that venv bundles rejects git+file:// requirements)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"pip=={version('pip')}"],
                   check=True, capture_output=True, env=_clean_env(), cwd=tmp_path, timeout=600)
    times["venv"] = time.perf_counter() - t0

    # the stand-in for Colab's image: the pinned versions of what the package needs, but diffusers
    t0 = time.perf_counter()
    needed = {_name(r) for r in PROJECT["dependencies"] + EXTRAS["sd"]} - COLAB_LACKS
    image = [p for p in EXTRAS["pinned"] if _name(p) in needed - set(COLAB_VERSIONS)]
    image += [f"{name}=={v}" for name, v in COLAB_VERSIONS.items()]
    subprocess.run([str(python), "-m", "pip", "install", "-q", *image], check=True,
                   capture_output=True, text=True, env=_clean_env(), cwd=tmp_path, timeout=1800)
    before = _freeze(python)
    assert not COLAB_LACKS & set(before)
    assert {n: before.get(n) for n in COLAB_VERSIONS} == COLAB_VERSIONS
    times["colab image (torch ...)"] = time.perf_counter() - t0

    # the cell itself, from the local clone at that commit
    t0 = time.perf_counter()
    cell = setup_cell_source(commit, url=f"file://{tmp_path / 'clone'}")
    proc = _run_cell(python, _cell_script(tmp_path, cell), tmp_path, 1200)
    times["setup cell"] = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out and "ERROR" not in out, out
    after = _freeze(python)
    changed = {n: (v, after.get(n)) for n, v in before.items() if after.get(n) != v}
    assert changed == {}, f"the install changed preinstalled packages: {changed}"
    assert {"dewhitening-book", "diffusers", "myst-nb"} <= set(after) - set(before)

    # the installed package (not this checkout) imports and runs its embedded model
    t0 = time.perf_counter()
    check = ("import torch, lib, lib.models, lib.prose\n"
             "lib.prose.glue('n', 3)  # the chapters' glue (myst-nb) is installed too\n"
             "m = lib.models.load_model('tiny-a')\n"
             "x = torch.zeros(1, *m.sample_shape)\n"
             "print(lib.__file__, tuple(m.eps(x, 500).shape))\n")
    proc = subprocess.run([str(python), "-c", check], capture_output=True, text=True,
                          cwd=tmp_path, env=_clean_env(), timeout=600)
    times["import lib, load tiny-a"] = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    path, shape = proc.stdout.strip().split(" ", 1)
    assert path.startswith(str(venv)) and "site-packages" in path
    assert re.fullmatch(r"\(1, 3, \d+, \d+\)", shape), shape
    print("colab install test, seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
