"""Execute the book's chapters with papermill: ``python -m lib run --profile P``.

A run writes, under ``runs/<profile>/<run id>/`` (or ``--out DIR``):

* ``book/<chapter>.ipynb``: the executed notebooks;
* ``figures/<chapter>/<name>.json`` and ``.html``: every figure, as plotly JSON and as a
  standalone page (``lib.plotting.show`` writes them when ``LIB_FIGURE_DIR`` is set);
* ``run.json``: profile, chapters, time of each and when it finished, status, git commit,
  machine (CPU model, cores, threads) and device, and each chapter's dependency key
  (:func:`chapter_key`) with the run it was reused from, if any.

**Do each piece of work once.** Before executing a chapter the runner computes its key: the
sha256 of the notebook's cells (sources and tags, not outputs), of every ``lib`` module the
chapter imports (followed through ``lib``'s own imports; a bare ``import lib`` counts as all of
them), of every file under ``data/`` (the embedded weights), of the profile and parameters, of
the installed versions of the numerical packages and of the floating-point environment
(:mod:`lib.numerics`). When an earlier run of the same profile under ``runs/`` executed that
chapter with the same key, its executed notebook and figures are linked into the new run and the
runner says so; otherwise it says what changed and executes. ``reuse=False`` (``--rerun``), or
the cache switched off (``LIB_NO_CACHE=1``, ``--no-cache``), executes every chapter.

**One chapter at a time.** Chapters executed side by side (two at a time, one thread each)
took 2.0 times their 2-thread times on this project's 2-core machine (0.9 times the throughput
of one after the other), so the runner has no option for it: each chapter gets the whole thread
budget.

A run never overwrites an earlier one: each gets a fresh folder, ``runs/<profile>/latest``
points to the newest run that finished, and an explicit ``--out`` must be a new or empty
folder. ``--in-place``
(``cpu`` profile only) writes the outputs back into the committed ``book/*.ipynb``; that is how
the committed notebooks get their outputs (``make notebooks``). It also writes their record,
``book/run.json`` (:data:`COMMITTED_RECORD`), committed beside them: one entry per chapter
(:func:`chapter_entry`: profile, commit, CPU model, cores, threads, device, seconds, when it
finished), updated for each chapter the run executes and kept for the others. The book build
ends each chapter with it (:mod:`lib.tooling.book`).
"""

from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lib.profiles import FIGURE_DIR_ENV, NETWORK_LOG_ENV, PROFILES

__all__ = ["ROOT", "BOOK_DIR", "COMMITTED_RECORD", "chapters", "select_chapters", "new_run_dir",
           "run_chapters", "ChapterFailed", "RunRecord", "chapter_modules", "chapter_key",
           "find_reusable", "cpu_model", "device_name", "git_commit", "chapter_entry",
           "read_chapter_entry", "update_committed_record"]

ROOT = Path(__file__).resolve().parents[2]
BOOK_DIR = ROOT / "book"
RUNS_DIR = ROOT / "runs"
LIB_DIR = ROOT / "lib"
DATA_DIR = ROOT / "data"
#: names the commit of a tree copied without its repository (see :func:`git_commit`)
GIT_COMMIT_ENV = "LIB_GIT_COMMIT"
#: the record of the committed notebooks' run, beside them in ``book/`` (``--in-place`` writes it)
COMMITTED_RECORD = "run.json"
#: packages whose version can change a chapter's numbers or figures
KEY_PACKAGES = ("torch", "numpy", "scipy", "diffusers", "transformers", "plotly", "scikit-image",
                "scikit-learn", "matplotlib", "ipywidgets", "myst-nb")


class ChapterFailed(RuntimeError):
    """A chapter raised an error; names the chapter and the failing cell."""

    def __init__(self, chapter: str, cell_index: int | None, message: str, log: Path | None):
        where = f"cell index {cell_index}" if cell_index is not None else "before any cell ran"
        text = f"chapter {chapter} failed at {where}: {message}"
        if log is not None:
            text += f"\n  the partly executed notebook is {log}"
        super().__init__(text)
        self.chapter, self.cell_index = chapter, cell_index


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s "model name", e.g. "AMD EPYC 7763 64-Core
    Processor"), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(profile: str) -> str:
    """What a profile's chapters compute on: ``"CPU"``, or the name of CUDA GPU 0.

    torch is imported only for a profile that runs on a GPU.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    if not PROFILES[profile].device.startswith("cuda"):
        return "CPU"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU found"
    return torch.cuda.get_device_name(0)


@dataclass
class RunRecord:
    """What ``run.json`` holds.

    ``seconds`` and ``finished`` (ISO time) are per executed chapter; ``reused`` names the run
    a chapter's outputs were taken from instead. ``network`` is per executed chapter and model:
    the images that went through the network and the seconds spent there
    (:func:`lib.models.network_use`), the floor under the chapter's time. ``cpu``, ``cores``, ``threads`` (per chapter
    kernel) and ``device`` say where the chapters executed; ``machine`` adds the host name.
    """

    profile: str
    out: str
    started: str
    chapters: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    finished: dict[str, str] = field(default_factory=dict)
    keys: dict[str, dict] = field(default_factory=dict)
    reused: dict[str, str] = field(default_factory=dict)
    network: dict[str, dict] = field(default_factory=dict)
    cache: dict[str, dict] = field(default_factory=dict)
    status: str = "running"
    error: str | None = None
    git_commit: str | None = None
    wall_seconds: float | None = None
    machine: str = field(default_factory=lambda: f"{platform.node()} {platform.machine()}, "
                                                 f"{available_cpus()} CPUs")
    cpu: str = field(default_factory=cpu_model)
    cores: int | None = field(default_factory=lambda: available_cpus())
    threads: int | None = None
    device: str | None = None
    python: str = field(default_factory=platform.python_version)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


#: what a page says about how its chapter was made: one entry per chapter (:func:`chapter_entry`)
ENTRY_FIELDS = ("profile", "git_commit", "finished", "seconds", "cpu", "cores", "threads",
                "device", "torch", "python", "cache")


def chapter_entry(record: dict, chapter: str) -> dict:
    """How one chapter executed in a run, from the run's record (``run.json`` as a dict), trimmed
    to :data:`ENTRY_FIELDS`: no host name, no path.

    Fields an older record lacks are ``None``, except two it implies: the device of the ``cpu``
    profile is ``"CPU"``, and the cores are read from ``machine``.

    Raises:
        KeyError: if the run did not execute ``chapter`` (reused or never reached).
    """
    if chapter not in record.get("seconds", {}):
        raise KeyError(f"run {record.get('out', '?')} did not execute chapter {chapter}")
    packages = record.get("keys", {}).get(chapter, {}).get("packages", {})
    device = record.get("device") or ("CPU" if record.get("profile") == "cpu" else None)
    cores = record.get("cores")
    if cores is None:  # older records name the CPUs only in "machine": "host x86_64, 2 CPUs"
        found = re.search(r"(\d+) CPUs", record.get("machine") or "")
        cores = int(found.group(1)) if found else None
    return {
        "profile": record.get("profile"),
        "git_commit": record.get("git_commit"),
        "finished": record.get("finished", {}).get(chapter) or record.get("started"),
        "seconds": record["seconds"][chapter],
        "cpu": record.get("cpu"),
        "cores": cores,
        "threads": record.get("threads") or record.get("threads_per_job"),
        "device": device,
        "torch": packages.get("torch"),
        "python": record.get("python") or record.get("keys", {}).get(chapter, {}).get("python"),
        "cache": record.get("cache", {}).get(chapter),
    }


def read_chapter_entry(record_path: Path, chapter: str) -> tuple[dict | None, str]:
    """The entry (:func:`chapter_entry`) of the run that executed a chapter, and where it is from.

    ``record_path`` is a run's ``run.json`` or the committed ``book/run.json``. A chapter that a
    run reused from an earlier run is followed to the run that executed it.

    Returns:
        ``(entry, source)``; ``entry`` is ``None`` when no record has the chapter, and
        ``source`` then says what is missing.
    """
    seen: list[Path] = []
    path = Path(record_path)
    while True:
        if not path.is_file():
            why = f"no record {path.name} in {path.parent.name}/" if not seen else \
                f"{seen[-1].parent.name} reused it from {path.parent.name}, whose record is gone"
            return None, why
        if path.resolve() in seen:
            return None, f"the records reuse chapter {chapter} in a circle"
        seen.append(path.resolve())
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            return None, f"{path} cannot be read: {err}"
        if "seconds" not in record:  # the committed record: one entry per chapter
            entry = record.get("chapters", {}).get(chapter)
            if entry is None:
                return None, f"{path.parent.name}/{path.name} has no entry for {chapter}"
            return {k: entry.get(k) for k in ENTRY_FIELDS}, f"{path.parent.name}/{path.name}"
        if chapter in record["seconds"]:
            return chapter_entry(record, chapter), f"run {path.parent.name}"
        earlier = record.get("reused", {}).get(chapter)
        if earlier is None:
            return None, f"run {path.parent.name} did not execute {chapter}"
        path = Path(earlier) / "run.json"


def update_committed_record(path: Path, entries: dict[str, dict], keep: list[str]) -> None:
    """Write the committed record: these chapters' entries replace theirs, the other chapters'
    entries stay (a run of some chapters leaves the others' outputs as they were).

    Args:
        path: ``book/run.json``.
        entries: chapter -> :func:`chapter_entry`.
        keep: the book's chapters; entries of chapters no longer in the book are dropped.
    """
    old = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8")).get("chapters", {})
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); delete it or fix it") from err
    merged = {c: e for c, e in {**old, **entries}.items() if c in keep}
    out = {"about": "How the committed notebooks in book/ were executed: one entry per chapter, "
                    "written by `python -m lib run --profile cpu --in-place` (make notebooks). "
                    "The book build ends each chapter with its entry.",
           "chapters": dict(sorted(merged.items()))}
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _lib_imports(tree: ast.AST, package: str, lib_dir: Path) -> set[str] | None:
    """The ``lib`` modules a parsed file imports (``None``: all of them, a bare ``import lib``).

    ``package`` is the importing file's package (``"lib"`` inside lib, ``""`` in a notebook),
    for relative imports.
    """
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "lib":
                    return None
                if alias.name.startswith("lib."):
                    found.add(alias.name.split(".")[1])
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: only meaningful inside lib
                if package != "lib":
                    continue
                module = "lib" + ("." + module if module else "")
            if module == "lib":
                names = [a.name for a in node.names]
                if "*" in names:
                    return None
                found.update(names)  # modules among them are kept below
            elif module.startswith("lib."):
                found.add(module.split(".")[1])
    return {m for m in found if (lib_dir / f"{m}.py").exists()}


def _all_modules(lib_dir: Path) -> list[str]:
    return sorted(p.stem for p in lib_dir.glob("*.py"))


def chapter_modules(notebook, lib_dir: Path | None = None) -> list[str]:
    """The ``lib`` modules a chapter's code can run: its imports, followed through ``lib``.

    ``notebook`` is a path or an already read ``nbformat`` notebook.

    Returns module file names (``"fixed_point.py"``), with ``__init__.py`` whenever any is
    imported (an empty list when the chapter imports nothing from ``lib``). Code that cannot be
    parsed counts as importing all of ``lib``; IPython's magics (``%pip ...``) are read as
    IPython runs them, as calls that import nothing.
    """
    import nbformat
    from IPython.core.inputtransformer2 import TransformerManager

    lib_dir = Path(lib_dir or LIB_DIR)
    nb = notebook if isinstance(notebook, nbformat.NotebookNode) else \
        nbformat.read(notebook, as_version=4)
    ipython = TransformerManager()
    code = "\n".join(ipython.transform_cell(c.source) for c in nb.cells if c.cell_type == "code")
    try:
        todo = _lib_imports(ast.parse(code), "", lib_dir)
    except SyntaxError:
        todo = None
    if todo is None:
        return [f"{m}.py" for m in _all_modules(lib_dir)]
    if not todo:
        return []  # the chapter runs no code of lib
    seen: set[str] = {"__init__"}
    todo = set(todo) | {"__init__"}
    while todo:
        m = todo.pop()
        seen.add(m)
        try:
            found = _lib_imports(ast.parse((lib_dir / f"{m}.py").read_text(encoding="utf-8")),
                                 "lib", lib_dir)
        except SyntaxError:
            found = None
        if found is None:
            return [f"{m}.py" for m in _all_modules(lib_dir)]
        todo |= found - seen
    return sorted(f"{m}.py" for m in seen)


def _packages() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in KEY_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _data_digest(data_dir: Path) -> str:
    h = hashlib.sha256()
    if data_dir.is_dir():
        for p in sorted(data_dir.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(data_dir)).encode())
                h.update(_sha256(p.read_bytes()).encode())
    return h.hexdigest()


def chapter_key(notebook: Path, profile: str, parameters: dict | None = None, *,
                lib_dir: Path | None = None, data_dir: Path | None = None,
                _shared: dict | None = None) -> dict:
    """What a chapter's executed output depends on, as digests; ``["key"]`` sums them up.

    The parts: ``source`` (the cells' types, sources and tags), ``modules`` (each ``lib`` file
    of :func:`chapter_modules`), ``data`` (every file under ``data/``), ``profile``,
    ``parameters``, ``packages`` (installed versions), ``numerics`` (the rounding environment
    of :mod:`lib.numerics`) and ``python``.
    """
    import nbformat

    from lib.numerics import ENV as numerics_env  # imports torch: only when a key is computed

    lib_dir, data_dir = Path(lib_dir or LIB_DIR), Path(data_dir or DATA_DIR)
    shared = _shared if _shared is not None else {}
    if "data" not in shared:
        shared["data"] = _data_digest(data_dir)
        shared["packages"] = _packages()
    nb = nbformat.read(notebook, as_version=4)
    cells = [[c.cell_type, c.source, sorted(c.metadata.get("tags", []))] for c in nb.cells]
    parts = {
        "source": _sha256(json.dumps(cells).encode()),
        "modules": {m: _sha256((lib_dir / m).read_bytes())
                    for m in chapter_modules(nb, lib_dir)},
        "data": shared["data"],
        "profile": profile,
        "parameters": parameters or {},
        "packages": shared["packages"],
        "numerics": {k: os.environ.get(k) for k in numerics_env},
        "python": platform.python_version(),
    }
    parts["key"] = _sha256(json.dumps(parts, sort_keys=True).encode())
    return parts


def _records(runs_dir: Path, profile: str) -> list[tuple[Path, dict]]:
    """Earlier runs of a profile, newest first."""
    found = []
    base = runs_dir / profile
    if base.is_dir():
        for run_json in base.glob("*/run.json"):
            if run_json.parent.is_symlink():
                continue
            try:
                found.append((run_json.parent, json.loads(run_json.read_text(encoding="utf-8"))))
            except (OSError, json.JSONDecodeError):
                continue
    found.sort(key=lambda item: item[1].get("started", ""), reverse=True)
    return found


def find_reusable(chapter: str, key: dict, records: list[tuple[Path, dict]]
                  ) -> tuple[Path | None, str]:
    """An earlier run that executed ``chapter`` with this key, and a line saying why (not).

    Args:
        records: the earlier runs of the profile, newest first (:func:`_records`).

    Returns ``(run folder, reason)``; the folder is ``None`` when nothing can be reused, and
    the reason then names what changed since the newest earlier execution of the chapter.
    """
    newest = None
    for run_dir, rec in records:
        old = rec.get("keys", {}).get(chapter)
        done = chapter in rec.get("seconds", {}) or chapter in rec.get("reused", {})
        if not old or not done or not (run_dir / "book" / f"{chapter}.ipynb").exists():
            continue
        if old.get("key") == key["key"]:
            return run_dir, f"unchanged since {run_dir}"
        newest = newest or (run_dir, old)
    if newest is None:
        return None, "no earlier run of this chapter"
    run_dir, old = newest
    changed = [part for part in ("source", "data", "profile", "parameters", "packages",
                                 "numerics", "python") if old.get(part) != key[part]]
    mods = sorted(set(old.get("modules", {})) | set(key["modules"]))
    changed += [f"lib/{m}" for m in mods if old.get("modules", {}).get(m) != key["modules"].get(m)]
    return None, f"changed since {run_dir.name}: {', '.join(changed) or 'key format'}"


def _link(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (a copy across file systems)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (or copy) every file of the folder ``src`` into ``dst``."""
    for p in src.rglob("*"):
        if p.is_file():
            _link(p, dst / p.relative_to(src))


def git_commit(root: Path | None = None) -> str | None:
    """The checked-out commit (full sha), with ``+uncommitted`` when ``lib``, ``book``, ``data``
    or ``pyproject.toml`` (the dependencies) differ from it; ``None`` outside a git repository.

    A tree copied without its repository (the device machine) names its commit in the
    environment variable ``LIB_GIT_COMMIT``, which then wins."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    root = Path(root or ROOT)
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "lib", "book", "data",
                                "pyproject.toml"],
                               cwd=root, text=True, capture_output=True).stdout.strip()
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


#: environment variables that set a kernel's thread count (torch/OpenMP, OpenBLAS, MKL)
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cpus() -> int:
    """The logical CPUs this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def thread_budget() -> int:
    """Threads the run may use in all: ``OMP_NUM_THREADS`` if set, else the CPUs."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return max(1, os.cpu_count() or 1)


def _execute_chapter(nb: str, target: str, parameters: dict | None, kernel_name: str,
                     figure_dir: str) -> dict:
    """Execute one notebook with papermill. The kernel inherits the figure folder and where to
    keep its network use through the environment (both restored afterwards). Returns ``seconds``,
    ``network`` (:func:`lib.models.network_use` of the kernel) and, on failure, ``error``
    ``(cell index or None, message, whether the partly executed notebook was written)``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    names = (FIGURE_DIR_ENV, NETWORK_LOG_ENV)
    before = {k: os.environ.get(k) for k in names}
    os.environ[FIGURE_DIR_ENV] = figure_dir
    network_log = Path(figure_dir).parent / f"{Path(nb).stem}.network.json"
    network_log.parent.mkdir(parents=True, exist_ok=True)
    network_log.unlink(missing_ok=True)
    os.environ[NETWORK_LOG_ENV] = str(network_log)
    t0 = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(nb, target, parameters=parameters, kernel_name=kernel_name,
                                   cwd=str(Path(nb).parent), progress_bar=False, log_output=False)
    except PapermillExecutionError as err:
        error = (err.cell_index, f"{err.ename}: {err.evalue}", True)
    except Exception as err:  # kernel death, missing kernel, ...
        error = (None, repr(err), False)
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    logged = json.loads(network_log.read_text(encoding="utf-8")) if network_log.exists() else {}
    network_log.unlink(missing_ok=True)
    return {"seconds": time.perf_counter() - t0, "error": error,
            "network": logged.get("network", {}), "cache": logged.get("cache", {})}


def floor_table(record: "RunRecord") -> list[str]:
    """Lines that give, per executed chapter and in total, the network evaluations, the
    seconds spent in the network (the floor no speed-up of the code around it can beat), the
    wall time, and wall time / floor."""
    lines = [f"{'chapter':<22}{'evaluations':>13}{'network s':>11}{'wall s':>9}{'wall/network':>14}"]
    total = [0, 0.0, 0.0]
    for chapter, seconds in record.seconds.items():
        use = record.network.get(chapter, {})
        n = sum(u["evaluations"] for u in use.values())
        floor = sum(u["seconds"] for u in use.values())
        ratio = f"{seconds / floor:.2f}" if floor > 0 else "-"
        lines.append(f"{chapter:<22}{n:>13,}{floor:>11.1f}{seconds:>9.1f}{ratio:>14}")
        total = [total[0] + n, total[1] + floor, total[2] + seconds]
    ratio = f"{total[2] / total[1]:.2f}" if total[1] > 0 else "-"
    lines.append(f"{'total':<22}{total[0]:>13,}{total[1]:>11.1f}{total[2]:>9.1f}{ratio:>14}")
    return lines


def run_chapters(profile: str, wanted: list[str] | None = None, out=None, *,
                 in_place: bool = False, book_dir: Path | None = None,
                 kernel_name: str = "python3", reuse: bool = True,
                 runs_dir: Path | None = None, log=print) -> tuple[Path, RunRecord]:
    """Execute chapters with papermill under a profile.

    Args:
        reuse: take a chapter's executed notebook and figures from an earlier run of the same
            profile when its :func:`chapter_key` is unchanged (never with ``in_place`` or with
            the cache off).
        runs_dir: where runs live and earlier ones are looked for (default ``runs/``).

    Returns:
        the run folder and its record. Raises :class:`ChapterFailed` on the first failure
        (the chapters after it are not started).
    """
    from tqdm.auto import tqdm

    from lib.cache import enabled as cache_enabled  # imports torch: only when a run starts

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    if in_place and profile != "cpu":
        raise ValueError("--in-place is only for the cpu profile: the committed notebooks "
                         "carry cpu outputs")
    book_dir = Path(book_dir or BOOK_DIR)
    selected = select_chapters(wanted, book_dir)
    runs_dir = Path(runs_dir or RUNS_DIR)
    run_dir = new_run_dir(profile, out, runs_dir)
    nb_dir = run_dir / "book"
    if not in_place:
        nb_dir.mkdir(exist_ok=True)
    record = RunRecord(profile=profile, out=str(run_dir),
                       started=_dt.datetime.now().isoformat(timespec="seconds"),
                       chapters=[p.stem for p in selected], git_commit=git_commit(),
                       device=device_name(profile))
    record.write(run_dir / "run.json")
    log(f"running {len(selected)} chapter(s) with profile {profile!r} into {run_dir}")
    settings = PROFILES[profile].chapters

    def parameters_of(nb: Path) -> dict | None:  # papermill's: the profile and its overrides
        extra = settings[nb.stem].parameters if nb.stem in settings else {}
        if profile == "cpu" and not extra:
            return None
        return {"PROFILE": profile, **extra}
    reuse = reuse and not in_place and cache_enabled()
    # the earlier runs, read once (this run's own folder is not among them)
    earlier_runs = [(d, rec) for d, rec in _records(runs_dir, profile)
                    if d.resolve() != run_dir.resolve()]
    shared: dict = {}

    def target_of(nb: Path) -> Path:  # where a chapter's executed notebook goes
        return nb if in_place else nb_dir / nb.name

    todo = []
    for nb in selected:
        target = target_of(nb)
        key = chapter_key(nb, profile, parameters_of(nb), _shared=shared)
        record.keys[nb.stem] = key
        if reuse:
            earlier, why = find_reusable(nb.stem, key, earlier_runs)
            if earlier is not None:
                _link(earlier / "book" / nb.name, target)
                if (earlier / "figures" / nb.stem).is_dir():
                    _link_tree(earlier / "figures" / nb.stem, run_dir / "figures" / nb.stem)
                record.reused[nb.stem] = str(earlier)
                record.write(run_dir / "run.json")
                log(f"  {nb.stem}: reused, {why}")
                continue
            log(f"  {nb.stem}: executing ({why})")
        todo.append(nb)
    record.threads = thread_budget()

    def args_of(nb):
        return (str(nb), str(target_of(nb)), parameters_of(nb), kernel_name,
                str(run_dir / "figures" / nb.stem))

    def finished(nb, result) -> ChapterFailed | None:
        if result["error"] is not None:
            cell, message, written = result["error"]
            record.status, record.error = "failed", f"{nb.stem}: {message}"
            record.write(run_dir / "run.json")
            if in_place and written:  # its committed outputs are now partial: no entry describes them
                update_committed_record(book_dir / COMMITTED_RECORD, {},
                                        keep=[p.stem for p in chapters(book_dir) if p != nb])
            return ChapterFailed(nb.stem, cell, message, target_of(nb) if written else None)
        record.seconds[nb.stem] = round(result["seconds"], 1)
        record.network[nb.stem] = result.get("network", {})
        record.cache[nb.stem] = result.get("cache", {})
        record.finished[nb.stem] = _dt.datetime.now().isoformat(timespec="seconds")
        record.write(run_dir / "run.json")
        if in_place:
            _strip_papermill_metadata(nb)
            update_committed_record(book_dir / COMMITTED_RECORD,
                                    {nb.stem: chapter_entry(asdict(record), nb.stem)},
                                    keep=[p.stem for p in chapters(book_dir)])
        log(f"  {nb.stem}: {result['seconds']:.1f} s")
        return None

    bar = tqdm(total=len(todo), desc="chapters", unit="chapter", file=sys.stderr)
    failure, t_start = None, time.perf_counter()
    for nb in todo:
        bar.set_postfix_str(nb.stem)
        failure = finished(nb, _execute_chapter(*args_of(nb)))
        bar.update()
        if failure:
            break
    bar.close()
    if failure:
        raise failure
    record.status, record.wall_seconds = "ok", round(time.perf_counter() - t_start, 1)
    record.write(run_dir / "run.json")
    if out is None and not in_place:
        _point_latest(run_dir)
    reused = f", {len(record.reused)} reused" if record.reused else ""
    if record.seconds:
        log("where the time went (the network's own time is the floor):")
        for line in floor_table(record):
            log("  " + line)
    log(f"done in {record.wall_seconds:.1f} s{reused}; notebooks in "
        f"{book_dir if in_place else nb_dir}, figures in {run_dir / 'figures'}")
    return run_dir, record
