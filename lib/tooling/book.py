"""Build the HTML book from executed notebooks, with every script served from the build.

The rendered pages must work with no network, so the build serves, from its own ``_static``
folder, the JavaScript that would otherwise come from CDNs:

* plotly.js, copied from the installed ``plotly`` package and loaded on every page
  (``lib.plotting.show`` emits figures without it);
* require.js and ``@jupyter-widgets/html-manager`` (renders saved ipywidgets state), and
  MathJax 3, fetched from the npm registry with ``npm pack`` at build time;
* ``lib/tooling/web/widgets-setup.js``, the book's own glue between those (see its comments).

They are cached under ``_build/assets`` (ignored by git); nothing third-party is committed.
The book is built by copying ``_config.yml``, ``_toc.yml``, the bibliography
(``references.bib``), the pages that are not notebooks (``book/references.md``) and the
notebooks of one run (or the committed ``book/*.ipynb``) into a staging folder and running
``jupyter-book build`` there with execution off: the notebooks already carry their outputs.

Each notebook is staged by :func:`stage_notebook`, which makes four changes to the copy:

* Progress bars are for interactive runs: it drops the tqdm bars saved in the outputs (frozen at
  whatever they showed when the run ended) and the widget models only they used
  (:func:`quiet_notebook`).
* The Colab setup cell (:func:`setup_cell_source`) installs the package at ``main``; the staged
  copy installs the commit the book was built from (the run's ``git_commit``, or ``HEAD`` for the
  committed notebooks), unless that commit had uncommitted changes or is unknown.
* Colab's notebook metadata (:data:`COLAB_METADATA`) asks for a GPU runtime.
* A last markdown cell, "How this chapter was made" (:func:`provenance_cell_source`): profile,
  commit, CPU, CPUs, device, run time and date from the run's record (``run.json``, or the
  committed ``book/run.json``), and the command that regenerates the chapter's figures. A chapter
  the record does not have says so.

Colab's launch buttons open the notebooks committed on GitHub (``repository.branch``), not these
staged copies: the committed setup cell installs ``main``, as the notebook itself comes from
``main``. The staged copies are what a reader downloads from a page.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from lib.data import load_photo
from lib.plotting import png_bytes
from lib.tooling.runner import (BOOK_DIR, COMMITTED_RECORD, ROOT, chapter_modules, git_commit,
                                read_chapter_entry)

__all__ = ["NPM_PACKAGES", "fetch_assets", "build_book", "pages_without_notebook",
           "is_progress_bar", "quiet_notebook", "repository_url", "setup_cell_source",
           "SETUP_PLACEHOLDER", "COLAB_METADATA", "provenance_cell_source", "stage_notebook"]

ASSETS_DIR = ROOT / "_build" / "assets"
# npm package -> (files or folders to keep, relative to the package root; where under _assets)
NPM_PACKAGES = {
    "requirejs@2.3.7": (["require.js"], "widgets"),
    "@jupyter-widgets/html-manager@1.0.6": (["dist"], "widgets/html-manager-dist"),
    "mathjax@3.2.2": (["es5"], "mathjax/es5"),
}


def _npm_pack(spec: str, dest: Path) -> Path:
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed once to fetch require.js, the ipywidgets html "
                           "manager and MathJax from the npm registry; install Node.js/npm")
    out = subprocess.run(["npm", "pack", spec, "--pack-destination", str(dest), "--silent"],
                         cwd=dest, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"npm pack {spec} failed:\n{out.stderr}")
    return dest / out.stdout.strip().splitlines()[-1]


def fetch_assets(assets_dir: Path = ASSETS_DIR) -> Path:
    """Fetch (once) the scripts the book serves itself; return the folder to serve."""
    import plotly

    web = assets_dir / "web"
    marker = web / ".complete"
    if not marker.exists():
        shutil.rmtree(web, ignore_errors=True)
        tmp = assets_dir / "npm"
        tmp.mkdir(parents=True, exist_ok=True)
        for spec, (keep, where) in NPM_PACKAGES.items():
            tgz = _npm_pack(spec, tmp)
            with tarfile.open(tgz) as tar:
                members = [m for m in tar.getmembers()
                           if any(m.name == f"package/{k}" or m.name.startswith(f"package/{k}/")
                                  for k in keep)]
                tar.extractall(tmp / "x", members=members, filter="data")
            for k in keep:
                src = tmp / "x" / "package" / k
                dst = web / where if src.is_dir() else web / where / Path(k).name
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, dst, dirs_exist_ok=True)
                else:
                    shutil.copy2(src, dst)
            shutil.rmtree(tmp / "x")
        marker.touch()
    if not (web / "favicon.png").exists():
        cat = load_photo("cat")[:, 20:276:8, 100:356:8]  # (3, 32, 32): the cat's face
        (web / "favicon.png").write_bytes(png_bytes(cat))
    shutil.copy2(Path(__file__).parent / "web" / "widgets-setup.js", web / "widgets")
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    (web / "plotly").mkdir(exist_ok=True)
    shutil.copy2(plotly_js, web / "plotly" / "plotly.min.js")
    return web


_TQDM = re.compile(r"\d+%\|.*\|\s*\d+/\d+")  # tqdm's line: " 40%|####      | 4/10 [...]"
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def is_progress_bar(output: dict) -> bool:
    """A tqdm progress bar saved in a notebook: a widget view whose text fallback is tqdm's line."""
    data = output.get("data", {})
    return _WIDGET_VIEW in data and bool(_TQDM.search(str(data.get("text/plain", ""))))


def quiet_notebook(nb) -> int:
    """Drop the saved progress bars from a notebook (in place), and the widget models that no
    remaining view uses; return how many bars were dropped."""
    dropped, views = 0, []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if is_progress_bar(out):
                dropped += 1
                continue
            if _WIDGET_VIEW in out.get("data", {}):
                views.append(out["data"][_WIDGET_VIEW]["model_id"])
            kept.append(out)
        cell["outputs"] = kept
    state = nb.get("metadata", {}).get("widgets", {}).get(_WIDGET_STATE, {}).get("state")
    if dropped and state is not None:
        used, todo = set(), list(views)
        while todo:  # every model a kept view reaches through "IPY_MODEL_<id>" references
            mid = todo.pop()
            if mid in used or mid not in state:
                continue
            used.add(mid)
            todo += re.findall(r"IPY_MODEL_(\w+)", str(state[mid]))
        for mid in [m for m in state if m not in used]:
            del state[mid]
    return dropped


def repository_url(config: Path | None = None) -> str:
    """The book's repository, ``repository.url`` of ``_config.yml`` (set there and only there)."""
    import yaml

    config = Path(config or ROOT / "_config.yml")
    url = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("repository", {}).get("url")
    if not url:
        raise ValueError(f"{config} sets no repository.url; the Colab setup cell installs from it")
    return url.rstrip("/")


#: the line of the committed setup cell that the book build replaces with the commit it builds
SETUP_PLACEHOLDER = 'BOOK_COMMIT = "main"  # the book build writes the commit it was built from here'

_SETUP_CELL = '''# Colab only: install the book's package (lib) from _config.yml's repository
import sys
{commit_line}
if "google.colab" in sys.modules:
    %pip install -q "dewhitening-book[colab] @ git+{url}@{{BOOK_COMMIT}}"
'''


def _commit_line(commit: str | None) -> str:
    """The ``BOOK_COMMIT = ...`` line, with a comment that says where the commit comes from."""
    if commit == "main":
        return SETUP_PLACEHOLDER
    if commit is None:
        return 'BOOK_COMMIT = "main"  # the build knew no commit (no git repository): main'
    sha, _, rest = commit.partition("+")
    if not re.fullmatch(r"[0-9a-f]{7,40}", sha) or rest not in ("", "uncommitted"):
        raise ValueError(f"{commit!r} is not a git commit (hex, optionally +uncommitted)")
    if rest:
        return (f'BOOK_COMMIT = "main"  # built from uncommitted changes to {sha[:12]}, '
                "which no commit holds")
    return f'BOOK_COMMIT = "{sha}"  # the commit this page was built from (the build wrote it)'


def setup_cell_source(commit: str | None = "main", *, url: str | None = None) -> str:
    """The source of every chapter's first code cell: in Colab, install this package.

    Five lines: in Colab, IPython's ``%pip install -q "dewhitening-book[colab] @ git+URL@COMMIT"``
    (the ``colab`` extra and the package's dependency ranges, ``pyproject.toml``, so pip keeps
    Colab's own packages when they are in range; a failed install prints pip's error, not a
    traceback). Elsewhere it does nothing. What a Colab runtime without a GPU should do is said
    by :func:`lib.profiles.resolve`, once the package is installed.

    Args:
        commit: ``"main"`` (the default) gives the committed cell, whose ``BOOK_COMMIT`` line is
            :data:`SETUP_PLACEHOLDER`; a commit sha gives the cell the book build stages; a sha
            with ``+uncommitted``, or ``None`` (unknown), installs ``main`` and says why.
        url: the repository (default :func:`repository_url`).

    Returns:
        the cell's source.
    """
    return _SETUP_CELL.format(commit_line=_commit_line(commit), url=url or repository_url())


#: Colab's notebook metadata for a GPU runtime (Runtime > Change runtime type > T4 GPU)
COLAB_METADATA = {"accelerator": "GPU", "colab": {"provenance": [], "gpuType": "T4"}}


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def provenance_cell_source(chapter: str, entry: dict | None, source: str, *, profile: str = "cpu",
                           runs_model: bool = True, url: str | None = None) -> str:
    """The markdown of a chapter's last cell: how it was made, from its record entry.

    Args:
        chapter: the notebook's name (``"02_correlation"``).
        entry: the chapter's entry (:func:`lib.tooling.runner.read_chapter_entry`), or ``None`` when the
            record has none: the page then says so and gives no numbers.
        source: where the entry comes from, or why there is none.
        profile: the profile of the build, for the command when there is no entry.
        runs_model: ``False`` for a page that runs no model (the intro): one short paragraph.
        url: the repository, for the commit link (default :func:`repository_url`).
    """
    url = url or repository_url()
    title = "## How this chapter was made" if runs_model else "## How this page was made"
    if entry is None:
        command = f"`python -m lib run --profile {profile} --chapters {chapter}`"
        return (f"{title}\n\nThe book was built without a record of this "
                f"{'chapter' if runs_model else 'page'}'s execution ({source}), so the profile, "
                "commit, machine and run time of its outputs are not known."
                + (f" To regenerate its figures, in a clone of the repository: {command}."
                   if runs_model else ""))
    commit = entry.get("git_commit")
    if commit:
        sha, _, rest = commit.partition("+")
        commit_text = f"[`{sha[:12]}`]({url}/commit/{sha})" + \
            (" plus uncommitted changes" if rest else "")
    else:
        commit_text = "not recorded"
    date = str(entry["finished"])[:10] if entry.get("finished") else "not recorded"
    seconds = _duration(entry["seconds"]) if entry.get("seconds") is not None else "not recorded"
    machine = ", ".join([entry.get("cpu") or "CPU model not recorded",
                         f"{entry['cores']} CPUs" if entry.get("cores") else "CPUs not recorded",
                         *([f"{entry['threads']} threads"] if entry.get("threads") else [])])
    profile = entry.get("profile") or profile
    if not runs_model:
        return (f"{title}\n\nExecuted with the `{profile}` profile at commit {commit_text} on "
                f"{date}, in {seconds} ({machine}); it runs no model.")
    torch = f" (torch {entry['torch']})" if entry.get("torch") else ""
    return "\n".join([
        title, "",
        f"The outputs on this page come from executing this notebook (recorded in {source}):", "",
        f"* **Profile:** `{profile}`",
        f"* **Commit:** {commit_text}",
        f"* **Machine:** {machine}",
        f"* **Device:** {entry.get('device') or 'not recorded'}{torch}",
        f"* **Run time:** {seconds}{_cache_note(entry.get('cache'))}",
        f"* **Date:** {date}", "",
        "To regenerate its figures, in a clone of the repository at that commit (`make` installs "
        "the pinned dependencies into `.venv`): "
        f"`python -m lib run --profile {profile} --chapters {chapter}`. The executed notebook "
        f"and every figure (plotly JSON and a standalone HTML page) land in "
        f"`runs/{profile}/<time>/`.",
    ])


def _cache_note(use: dict | None) -> str:
    """What the run time leaves out: the results the run took from the disk cache."""
    if not use or not use.get("reused"):
        return ""
    total = use["reused"] + use.get("computed", 0)
    return (f" ({use['reused']} of its {total} expensive results, such as fixed-point pairs "
            "and DDIM inversions, were reused from the disk cache `runs/cache`, where an earlier "
            "run computed them: executing it from an empty cache takes longer)")


def stage_notebook(nb, chapter: str, *, record: Path | None, commit: str | None,
                   profile: str = "cpu", url: str | None = None) -> str | None:
    """Prepare a notebook (in place) for the book: the four changes in this module's docstring.

    Args:
        nb: the executed notebook (``nbformat`` v4).
        chapter: its name (``"02_correlation"``).
        record: the run's ``run.json`` or the committed ``book/run.json``; ``None``: none.
        commit: what the setup cell installs (see :func:`setup_cell_source`).
        profile: the profile of the build (the command of a chapter with no record entry).
        url: the repository (default :func:`repository_url`).

    Returns:
        ``None``, or a line saying why the chapter has no record entry.

    Raises:
        ValueError: if the notebook has a Colab setup cell without :data:`SETUP_PLACEHOLDER`.
    """
    import nbformat

    url = url or repository_url()
    quiet_notebook(nb)
    for cell in nb.cells:
        if cell.get("cell_type") == "code" and "google.colab" in cell.get("source", ""):
            if SETUP_PLACEHOLDER not in cell.source:
                raise ValueError(f"{chapter}: the Colab setup cell has no line "
                                 f"{SETUP_PLACEHOLDER!r}; its source must be "
                                 "lib.tooling.book.setup_cell_source()")
            cell.source = cell.source.replace(SETUP_PLACEHOLDER, _commit_line(commit))
    nb.metadata["accelerator"] = COLAB_METADATA["accelerator"]
    nb.metadata["colab"] = {**nb.metadata.get("colab", {}), **COLAB_METADATA["colab"]}
    if record is not None:
        entry, source = read_chapter_entry(Path(record), chapter)
    else:
        entry, source = None, "no record was given to the build"
    runs_model = "models.py" in chapter_modules(nb)
    nb.cells.append(nbformat.v4.new_markdown_cell(provenance_cell_source(
        chapter, entry, source, profile=profile, runs_model=runs_model, url=url)))
    return None if entry is not None else f"{chapter}: no record of its execution ({source})"


def pages_without_notebook(book_dir: Path | None = None) -> list[Path]:
    """The book's MyST pages that are not a notebook's twin (``book/references.md``): the same in
    every build, whichever run's notebooks it shows."""
    book_dir = Path(book_dir or BOOK_DIR)
    return sorted(p for p in book_dir.glob("*.md") if not p.with_suffix(".ipynb").exists())


def html_dir(label: str = "committed", build_root: Path | None = None) -> Path:
    """Where :func:`build_book` puts the HTML of the build ``label`` (``make site`` builds
    ``committed``, the folder the publishing workflow deploys)."""
    return (build_root or ROOT / "_build") / f"src-{label}" / "_build" / "html"


def build_book(notebook_dir: Path | None = None, *, label: str = "committed",
               record: Path | None = None, commit: str | None = "record",
               build_root: Path | None = None, force: bool = False, log=print) -> Path:
    """Build the HTML book from a folder of executed notebooks; return the HTML folder.

    A build whose inputs (the notebooks' bytes, their record, the commit, ``_config.yml``,
    ``_toc.yml``, bibliographies, this module, :mod:`lib.tooling.runner`, :mod:`lib.tooling.sphinx_ext`,
    ``lib/tooling/web``, the jupyter-book version) are those of the build already in the staging folder
    is skipped, and says so; ``force`` rebuilds.

    Args:
        notebook_dir: folder with the chapters' ``.ipynb`` (a run's ``book/``); default the
            committed ``book/``.
        label: name of the staging folder under ``_build/`` (e.g. the profile).
        record: the notebooks' record: default the committed ``book/run.json`` for the
            committed notebooks, else the run's ``run.json`` beside ``notebook_dir``.
        commit: what the Colab setup cells install (:func:`setup_cell_source`); default
            (``"record"``) the record's ``git_commit`` for a run, ``HEAD`` (with
            ``+uncommitted`` when the tree differs) for the committed notebooks.
    """
    import json

    committed = notebook_dir is None or Path(notebook_dir).resolve() == BOOK_DIR.resolve()
    notebook_dir = Path(notebook_dir or BOOK_DIR)
    notebooks = sorted(notebook_dir.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks in {notebook_dir}")
    if record is None:
        record = notebook_dir / COMMITTED_RECORD if committed else notebook_dir.parent / "run.json"
    record = Path(record)
    run = {}
    if record.is_file():
        try:
            run = json.loads(record.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"the record {record} is not valid JSON: {err}") from err
    if commit == "record":
        commit = git_commit() if committed else run.get("git_commit")
    profile = run.get("profile") or ("cpu" if committed else label)
    html = html_dir(label, build_root)
    stage = html.parent.parent
    key = _build_key(notebooks, [record] if record.is_file() else [], f"commit {commit}")
    if not force and (html / "index.html").exists() and (stage / BUILD_KEY).exists() \
            and (stage / BUILD_KEY).read_text() == key:
        log(f"the book at {html / 'index.html'} is up to date (the same notebooks, "
            "configuration and build code); nothing to build")
        return html
    shutil.rmtree(stage, ignore_errors=True)  # a build folder, derived from the run: safe to replace
    (stage / "book").mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, stage / name)
    for src in sorted(ROOT.glob("*.bib")):
        shutil.copy2(src, stage / src.name)
    for page in pages_without_notebook():
        shutil.copy2(page, stage / "book" / page.name)
    import nbformat

    url = repository_url()
    for nb in notebooks:
        staged = nbformat.read(nb, as_version=4)
        missing = stage_notebook(staged, nb.stem, record=record, commit=commit, profile=profile,
                                 url=url)
        if missing:
            log(f"warning: {missing}; its page says so")
        nbformat.write(staged, stage / "book" / nb.name)
    log(f"the Colab setup cells install commit {commit}" if commit and "+" not in commit
        else f"the Colab setup cells install main (the build's commit: {commit or 'unknown'})")
    shutil.copytree(fetch_assets(), stage / "_assets")
    log(f"building the book from {notebook_dir} ...")
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(stage), "--warningiserror",
           "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    # the redirecting index.html has no icon link, and browsers then ask for /favicon.ico
    shutil.copy2(stage / "_assets" / "favicon.png", html / "favicon.ico")
    (stage / BUILD_KEY).write_text(key)
    log(f"the book is at {html / 'index.html'}")
    return html


BUILD_KEY = ".build-key"


def _build_key(notebooks: list[Path], records: list[Path] = (), extra: str = "") -> str:
    """sha256 of everything the HTML is made from: notebooks, their record, configuration,
    build code, and ``extra`` (the commit the setup cells install)."""
    import hashlib
    from importlib.metadata import version

    h = hashlib.sha256(f"jupyter-book {version('jupyter-book')}, plotly {version('plotly')}, "
                       f"{extra}".encode())
    here = Path(__file__).parent
    inputs = [ROOT / "_config.yml", ROOT / "_toc.yml", *sorted(ROOT.glob("*.bib")),
              *pages_without_notebook(),
              here / "book.py", here / "runner.py", here / "sphinx_ext.py",
              *sorted(p for p in (here / "web").rglob("*") if p.is_file()), *records,
              *notebooks]
    for p in inputs:
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()
