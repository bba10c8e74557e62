"""Build the HTML book from executed notebooks, with every script served from the build.

The rendered pages must work with no network, so the build serves, from its own ``_static``
folder, the JavaScript that would otherwise come from CDNs:

* plotly.js, copied from the installed ``plotly`` package and loaded on every page before
  anything else (``lib.plotting.show`` emits figures without it);
* require.js and ``@jupyter-widgets/html-manager`` (renders saved ipywidgets state), and
  MathJax 3, fetched from the npm registry with ``npm pack`` at build time;
* ``lib/web/widgets-setup.js``, the book's own glue between those (see its comments).

They are cached under ``_build/assets`` (ignored by git); nothing third-party is committed.
The book is built by copying ``_config.yml``, ``_toc.yml``, the bibliography
(``references.bib``), the pages that are not notebooks (``book/references.md``) and the
notebooks of one run (or the committed ``book/*.ipynb``) into a staging folder and running
``jupyter-book build`` there with execution off: the notebooks already carry their outputs.

Progress bars are for interactive runs: the staged copy of each notebook drops the tqdm bars
saved in its outputs (frozen at whatever they showed when the run ended) and the widget models
only they used (:func:`quiet_notebook`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from lib.runner import BOOK_DIR, ROOT

__all__ = ["NPM_PACKAGES", "fetch_assets", "build_book", "pages_without_notebook",
           "is_progress_bar", "quiet_notebook"]

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
        from lib.data import load_photo
        from lib.plotting import png_bytes

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


def pages_without_notebook(book_dir: Path | None = None) -> list[Path]:
    """The book's MyST pages that are not a notebook's twin (``book/references.md``): the same in
    every build, whichever run's notebooks it shows."""
    book_dir = Path(book_dir or BOOK_DIR)
    return sorted(p for p in book_dir.glob("*.md") if not p.with_suffix(".ipynb").exists())


def build_book(notebook_dir: Path | None = None, *, label: str = "committed",
               build_root: Path | None = None, force: bool = False, log=print) -> Path:
    """Build the HTML book from a folder of executed notebooks; return the HTML folder.

    A build whose inputs (the notebooks' bytes, ``_config.yml``, ``_toc.yml``, bibliographies,
    this module, :mod:`lib.sphinx_ext`, ``lib/web``, the jupyter-book version) are those of the
    build already in the staging folder is skipped, and says so; ``force`` rebuilds.

    Args:
        notebook_dir: folder with the chapters' ``.ipynb`` (a run's ``book/``); default the
            committed ``book/``.
        label: name of the staging folder under ``_build/`` (e.g. the profile).
    """
    notebook_dir = Path(notebook_dir or BOOK_DIR)
    notebooks = sorted(notebook_dir.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks in {notebook_dir}")
    stage = (build_root or ROOT / "_build") / f"src-{label}"
    key = _build_key(notebooks)
    html = stage / "_build" / "html"
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

    for nb in notebooks:
        staged = nbformat.read(nb, as_version=4)
        quiet_notebook(staged)
        nbformat.write(staged, stage / "book" / nb.name)
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


def _build_key(notebooks: list[Path]) -> str:
    """sha256 of everything the HTML is made from: notebooks, configuration, build code."""
    import hashlib
    from importlib.metadata import version

    h = hashlib.sha256(f"jupyter-book {version('jupyter-book')}, plotly {version('plotly')}"
                       .encode())
    here = Path(__file__).parent
    inputs = [ROOT / "_config.yml", ROOT / "_toc.yml", *sorted(ROOT.glob("*.bib")),
              *pages_without_notebook(),
              here / "book.py", here / "sphinx_ext.py",
              *sorted(p for p in (here / "web").rglob("*") if p.is_file()), *notebooks]
    for p in inputs:
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()
