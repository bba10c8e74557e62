"""Execute the book's chapters with papermill: ``python -m lib run --profile P``.

A run writes, under ``runs/<profile>/<run id>/`` (or ``--out DIR``):

* ``book/<chapter>.ipynb``: the executed notebooks;
* ``figures/<chapter>/<name>.json`` and ``.html``: every figure, as plotly JSON and as a
  standalone page (``lib.plotting.show`` writes them when ``LIB_FIGURE_DIR`` is set);
* ``run.json``: profile, chapters, time of each, status, git commit, machine.

A run never overwrites an earlier one: each gets a fresh folder, ``runs/<profile>/latest``
points to the newest run that finished, and an explicit ``--out`` must be a new or empty
folder. ``--in-place``
(``cpu`` profile only) writes the outputs back into the committed ``book/*.ipynb``; that is how
the committed notebooks get their outputs (``make notebooks``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lib.plotting import FIGURE_DIR_ENV

__all__ = ["ROOT", "BOOK_DIR", "chapters", "select_chapters", "new_run_dir", "run_chapters",
           "ChapterFailed", "RunRecord"]

ROOT = Path(__file__).resolve().parent.parent
BOOK_DIR = ROOT / "book"
RUNS_DIR = ROOT / "runs"


class ChapterFailed(RuntimeError):
    """A chapter raised an error; names the chapter and the failing cell."""

    def __init__(self, chapter: str, cell_index: int | None, message: str, log: Path | None):
        where = f"cell index {cell_index}" if cell_index is not None else "before any cell ran"
        text = f"chapter {chapter} failed at {where}: {message}"
        if log is not None:
            text += f"\n  the partly executed notebook is {log}"
        super().__init__(text)
        self.chapter, self.cell_index = chapter, cell_index


@dataclass
class RunRecord:
    """What ``run.json`` holds."""

    profile: str
    out: str
    started: str
    chapters: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    status: str = "running"
    error: str | None = None
    git_commit: str | None = None
    machine: str = field(default_factory=lambda: f"{platform.node()} {platform.machine()}, "
                                                 f"{os.cpu_count()} CPUs")

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def chapters(book_dir: Path | None = None) -> list[Path]:
    """The chapter notebooks, in book order (by file name)."""
    book_dir = Path(book_dir or BOOK_DIR)
    return sorted(p for p in book_dir.glob("*.ipynb") if not p.name.startswith("."))


def select_chapters(wanted: list[str] | None, book_dir: Path | None = None) -> list[Path]:
    """Chapters matching names or number prefixes (``01``, ``01_preliminaries``, ``preliminaries``)."""
    available = chapters(book_dir)
    if not wanted:
        return available
    picked = []
    for w in wanted:
        w = Path(w).stem
        hits = [p for p in available if p.stem == w or p.stem.split("_", 1)[0] == w
                or p.stem.split("_", 1)[-1] == w]
        if not hits:
            raise ValueError(f"no chapter matches {w!r}; chapters are "
                             f"{[p.stem for p in available]}")
        picked += [h for h in hits if h not in picked]
    return sorted(picked)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "lib", "book", "data"],
                               cwd=ROOT, text=True, capture_output=True).stdout.strip()
        return out + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def new_run_dir(profile: str, out: str | os.PathLike | None = None,
                runs_dir: Path | None = None) -> Path:
    """A fresh folder for a run; never one that already holds files."""
    runs_dir = Path(runs_dir or RUNS_DIR)
    if out is not None:
        out = Path(out)
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} already exists and is not empty; a run never "
                                  "overwrites an earlier one: choose a new --out or remove it")
        out.mkdir(parents=True, exist_ok=True)
        return out
    base = runs_dir / profile
    base.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out, k = base / stamp, 1
    while out.exists():
        k += 1
        out = base / f"{stamp}-{k}"
    out.mkdir()
    return out


def _point_latest(run_dir: Path) -> None:
    """Make ``runs/<profile>/latest`` point to a run that finished."""
    latest = run_dir.parent / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.name)


def _strip_papermill_metadata(path: Path) -> None:
    """Remove papermill's timing metadata so the committed notebooks diff cleanly."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


def run_chapters(profile: str, wanted: list[str] | None = None, out=None, *,
                 in_place: bool = False, book_dir: Path | None = None,
                 kernel_name: str = "python3", log=print) -> tuple[Path, RunRecord]:
    """Execute chapters with papermill under a profile.

    Returns:
        the run folder and its record. Raises :class:`ChapterFailed` on the first failure.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from tqdm.auto import tqdm

    from lib.profiles import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    if in_place and profile != "cpu":
        raise ValueError("--in-place is only for the cpu profile: the committed notebooks "
                         "carry cpu outputs")
    book_dir = Path(book_dir or BOOK_DIR)
    selected = select_chapters(wanted, book_dir)
    run_dir = new_run_dir(profile, out)
    nb_dir = run_dir / "book"
    if not in_place:
        nb_dir.mkdir(exist_ok=True)
    record = RunRecord(profile=profile, out=str(run_dir),
                       started=_dt.datetime.now().isoformat(timespec="seconds"),
                       chapters=[p.stem for p in selected], git_commit=_git_commit())
    record.write(run_dir / "run.json")
    log(f"running {len(selected)} chapter(s) with profile {profile!r} into {run_dir}")
    bar = tqdm(selected, desc="chapters", unit="chapter", file=sys.stderr)
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        target = nb if in_place else nb_dir / nb.name
        env_before = os.environ.get(FIGURE_DIR_ENV)
        os.environ[FIGURE_DIR_ENV] = str(run_dir / "figures" / nb.stem)
        t0 = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(nb), str(target),
                parameters=None if profile == "cpu" else {"PROFILE": profile},
                kernel_name=kernel_name, cwd=str(nb.parent), progress_bar=False,
                log_output=False)
        except PapermillExecutionError as err:
            record.status, record.error = "failed", f"{nb.stem}: {err.ename}: {err.evalue}"
            record.write(run_dir / "run.json")
            raise ChapterFailed(nb.stem, err.cell_index, f"{err.ename}: {err.evalue}",
                                target) from None
        except Exception as err:  # kernel death, missing kernel, ...
            record.status, record.error = "failed", f"{nb.stem}: {err!r}"
            record.write(run_dir / "run.json")
            raise ChapterFailed(nb.stem, None, repr(err), None) from err
        finally:
            if env_before is None:
                os.environ.pop(FIGURE_DIR_ENV, None)
            else:
                os.environ[FIGURE_DIR_ENV] = env_before
        seconds = time.perf_counter() - t0
        record.seconds[nb.stem] = round(seconds, 1)
        record.write(run_dir / "run.json")
        if in_place:
            _strip_papermill_metadata(target)
        log(f"  {nb.stem}: {seconds:.1f} s")
    record.status = "ok"
    record.write(run_dir / "run.json")
    if out is None and not in_place:
        _point_latest(run_dir)
    log(f"done in {sum(record.seconds.values()):.1f} s; notebooks in "
        f"{book_dir if in_place else nb_dir}, figures in {run_dir / 'figures'}")
    return run_dir, record
