"""Structure of the chapters: jupytext pairs in sync, one parameters cell, the Colab setup cell,
the dependency pins, and the runner's bookkeeping."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from lib.tooling.book import pages_without_notebook
from lib.tooling.runner import BOOK_DIR, ROOT, chapters, new_run_dir, select_chapters

CHAPTERS = chapters()


def test_there_are_chapters_and_toc_lists_them_all():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = [toc["root"]] + [c["file"] for c in toc["chapters"]]
    pages = [f"book/{p.stem}" for p in pages_without_notebook()]
    assert pages == ["book/references"]  # the bibliography, built from references.bib
    assert listed == [f"book/{p.stem}" for p in CHAPTERS] + pages  # the chapters, then the pages


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_pair_in_sync(path):
    md = path.with_suffix(".md")
    assert md.exists(), f"{path.name} has no paired MyST .md (jupytext --set-formats ipynb,md:myst)"
    ipynb = nbformat.read(path, as_version=4)
    text = jupytext.read(md)
    a = [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in ipynb.cells]
    b = [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in text.cells]
    assert a == b, f"{path.name} and {md.name} differ: run `jupytext --sync {md}`"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_one_parameters_cell_with_cpu_profile(path):
    nb = nbformat.read(path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert re.search(r'^PROFILE = "cpu"', params[0].source, re.M)
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_committed_outputs_are_complete(path):
    """Every code cell ran, in order, without errors (the committed cpu outputs)."""
    nb = nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in _code_cells(nb)]
    assert all(isinstance(n, int) for n in counts), "some cells were not executed: make notebooks"
    assert counts == sorted(counts)
    for cell in _code_cells(nb):
        assert not [o for o in cell.outputs if o.output_type == "error"]
        for out in cell.outputs:  # figures are served plotly.js by the book, never inline or CDN
            html = str(out.get("data", {}).get("text/html", ""))
            assert "cdn.plot.ly" not in html and len(html) < 2_000_000


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_colab_setup_cell_installs_from_the_configured_repository(path):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    nb = nbformat.read(path, as_version=4)
    setup = [c for c in _code_cells(nb) if "google.colab" in c.source]
    assert len(setup) == 1
    assert f"git+{url}" in setup[0].source
    from lib.tooling.book import setup_cell_source

    assert setup[0].source.rstrip() == setup_cell_source().rstrip(), "the setup cell is lib.tooling.book.setup_cell_source()"
    assert nb.metadata.get("accelerator") == "GPU", "Colab should start the notebook on a GPU"
    assert nb.metadata.get("colab", {}).get("gpuType"), "Colab's GPU type is missing"
    # it comes before the parameters cell, so PROFILE can switch to "sd" after it
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    assert nb.cells.index(setup[0]) < params


def test_environment_yml_matches_pyproject():
    """environment.yml installs exactly what make installs: the `pinned` and `test` extras (the
    package's own dependencies are ranges; tests/test_colab_install.py checks they hold the pins)."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = extras["pinned"] + extras["test"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pins) == sorted(pip_section)
    assert all("==" in p for p in pins), "every pin is exact"


def test_select_chapters():
    assert select_chapters(["01"]) == [BOOK_DIR / "01_preliminaries.ipynb"]
    assert select_chapters(["preliminaries", "00_intro"]) == CHAPTERS[:2]
    with pytest.raises(ValueError, match="no chapter matches"):
        select_chapters(["99"])


def test_runs_never_overwrite(tmp_path):
    a = new_run_dir("cpu", runs_dir=tmp_path)
    (a / "x").write_text("1")
    b = new_run_dir("cpu", runs_dir=tmp_path)
    assert a != b and (a / "x").read_text() == "1"
    with pytest.raises(FileExistsError, match="never overwrites"):
        new_run_dir("cpu", out=a)
    assert new_run_dir("cpu", out=tmp_path / "fresh").is_dir()


def _nbval(notebook: Path, cwd: Path, *options: str, **env):
    """nbval on one notebook in a subprocess (rooted at ``cwd``), with extra environment."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
           str(notebook), "--rootdir", str(cwd), *options]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, **env})


def test_nbval_fails_when_a_key_number_changes(tmp_path):
    """nbval with the book's sanitizers must catch a changed printed number (fast: chapter 00)."""
    nb = nbformat.read(BOOK_DIR / "00_intro.ipynb", as_version=4)
    stream = next(o for c in _code_cells(nb) for o in c.outputs if o.output_type == "stream"
                  and "20,000" in o.text)
    stream.text = stream.text.replace("20,000", "20,001")
    nbformat.write(nb, tmp_path / "00_intro.ipynb")
    proc = _nbval(tmp_path / "00_intro.ipynb", tmp_path, "--nbval-sanitize-with",
                  str(ROOT / "tests" / "nbval_sanitize.cfg"))
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "20,001" in proc.stdout and "1 failed" in proc.stdout


def test_nbval_checks_the_chapters_in_a_perturbed_floating_point_environment(tmp_path):
    """conftest.py starts nbval's kernels in lib.numerics.ENV (rounding jitter, ATen's AVX2).

    A notebook holds three checked outputs made in the plain environment, except the last:
    a number printed to a precision the jitter cannot reach, the same number to its last bit,
    and the kernel environment as the perturbed kernel sees it. Under the perturbation exactly
    the last-bit number fails; with ``LIB_NBVAL_PERTURB=0`` exactly the environment line fails.
    """
    import shutil

    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    setup = ("import os, torch\nfrom lib.numerics import rounding_jitter\n"
             "x = rounding_jitter(torch.ones(1000)).double()")
    cells = [(setup, ""),
             ('print(f"robust {float(x.sum()):.2f}")', "robust 1000.00\n"),
             ('print("last bit", repr(float(x.sum())))', "last bit 1000.0\n"),
             ('print("kernels", os.environ.get("LIB_ROUNDING_JITTER"), '
              'torch.backends.cpu.get_cpu_capability())', "kernels 8 AVX2\n")]
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3",
                                                           "display_name": "Python 3",
                                                           "language": "python"}})
    for k, (source, text) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source, execution_count=k + 1)
        if text:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        nb.cells.append(cell)
    path = tmp_path / "check.ipynb"
    nbformat.write(nb, path)

    perturbed = _nbval(path, tmp_path)
    assert perturbed.returncode == 1 and "1 failed, 3 passed" in perturbed.stdout, perturbed.stdout[-3000:]
    assert "last bit 1000.0" in perturbed.stdout and "kernels 8 AVX2" not in perturbed.stdout
    plain = _nbval(path, tmp_path, LIB_NBVAL_PERTURB="0")
    assert plain.returncode == 1 and "1 failed, 3 passed" in plain.stdout, plain.stdout[-3000:]
    assert "kernels 8 AVX2" in plain.stdout and "last bit 1000.0" not in plain.stdout


def test_licence_and_citation_name_this_book():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert cff["repository-code"] == config["repository"]["url"]
    assert cff["version"] == project["version"]
    assert set(cff["license"]) == {"MIT", "CC-BY-4.0"}
    licence = (ROOT / "LICENSE").read_text()
    assert "MIT License" in licence and "CC BY 4.0" in licence
    paper = cff["references"][0]  # the paper, the same in the citation file, the bibliography
    bib = (ROOT / "references.bib").read_text()  # and the intro's link
    bib_url = re.search(r"@misc\{paper,.*?url\s*=\s*\{([^}]+)\}", bib, re.S).group(1)
    assert paper["url"] == bib_url and f"]({bib_url})" in (BOOK_DIR / "00_intro.md").read_text()


def test_every_citation_is_in_the_bibliography_and_every_entry_is_cited():
    keys = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "references.bib").read_text(), re.M))
    cited = set()
    for md in sorted(BOOK_DIR.glob("*.md")):
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", md.read_text()):
            cited |= {k.strip() for k in group.split(",")}
    assert cited - keys == set(), "cited but not in references.bib"
    assert keys - cited == set(), "in references.bib but never cited"


def _prose_lines(path):
    """The markdown lines of a chapter's MyST twin that are prose: not code cells, headings or
    directive titles."""
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```{code-cell}"):
            in_code = True
        elif in_code and line.strip() == "```":
            in_code = False
        elif not in_code and not line.startswith(("#", "```")):
            yield line


def test_equations_are_displayed_once_with_the_papers_numbers_and_every_mention_links():
    labels = {}
    for md in sorted(BOOK_DIR.glob("*.md")):
        lines = md.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.fullmatch(r"\(eq-(\d+)\)=", line)
            if m:
                assert m.group(1) not in labels, f"eq-{m.group(1)} is labelled twice"
                block = "\n".join(lines[i + 1:i + 6])
                assert lines[i + 1].startswith("$$") and f"\\tag{{{m.group(1)}}}$$" in block, \
                    f"{md.name}: eq-{m.group(1)} must label a $$ block tagged {m.group(1)}"
                labels[m.group(1)] = md.name
    assert sorted(labels, key=int) == [str(n) for n in range(1, 12)]  # the paper's Eqs. (1)-(11)
    for md in sorted(BOOK_DIR.glob("*.md")):
        for line in _prose_lines(md):
            assert "\\qquad (" not in line, f"{md.name}: a typed equation number: {line}"
            bare = re.sub(r"\{ref\}`[^`]*`", "", line)
            assert not re.search(r"\b(Eqs?\.?|Equations?)\s*\(?\d|\bEqs?\.$", bare), \
                f"{md.name}: unlinked mention: {line}"
            for text, n in re.findall(r"\{ref\}`([^`<]*)<eq-(\d+)>`", line):
                assert n in labels, f"{md.name} links eq-{n}, which no chapter displays"
                shown = re.findall(r"\d+", text)
                assert shown == [n], f"{md.name}: the link text {text!r} does not name eq-{n}"


def test_cells_that_draw_or_import_are_collapsed_in_the_book():
    """Plotting and import cells are collapsed (hide-input) or removed; the code stays one click
    away in the book and in full in Jupyter and Colab."""
    drawing = re.compile(r"\bshow\(|make_subplots\(|go\.Figure\(|image_grid\(|image_slider\(")
    for path in CHAPTERS:
        for cell in _code_cells(nbformat.read(path, as_version=4)):
            tags = cell.metadata.get("tags", [])
            if "parameters" in tags:
                continue
            draws = bool(drawing.search(cell.source))
            imports = cell.source.lstrip().startswith(("import ", "from "))
            if draws or imports:
                assert {"hide-input", "remove-input", "remove-cell"} & set(tags), \
                    f"{path.name}: a cell that draws or imports is shown in full: {cell.source[:60]!r}"


def test_typed_numbers_catches_a_hand_typed_measurement_and_nothing_else():
    from lib.prose import typed_numbers

    # measured-looking numbers typed by hand are caught, in prose and in inline math
    assert typed_numbers("correlates at 0.44-0.45 with the seed, $r = 0.29$, about 6 % of it, "
                         "on 256 noises") == ["0.44", "0.45", "0.29", "6 %", "256"]
    # glued numbers, structure, the paper's numbers and powers of ten are not
    assert typed_numbers("at {glue:text}`r:.2f` (Sec. 4.2, Figs. 7-13, chapter 4, "
                         "{ref}`3.1 <sec-3-1>`, Eq. (7)); the paper's N = 50,000 at $t = 0.98T$; "
                         "below $10^{-3}$ in $[0.1, 1)$; a 1/k^2 share; 8x8 blocks") == []
    assert typed_numbers("## 4.3 Fig. 5 redone\n1. first point") == []
    assert typed_numbers("its 95 % interval") == []  # a convention (FIXED_NUMBERS)
    # a reference does not hide a measurement after it, and a directive's text is prose
    assert typed_numbers("(Sec. 4.2, 0.80 here); Figs. 10, 12 and 13.") == ["0.80"]
    assert typed_numbers("```{note}\nr = 0.44\n```\nand `x = 0.5` in code") == ["0.44"]
    assert typed_numbers("a made-up 0.98 tuned", allowed=set()) == ["0.98"]


def _markdown_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_measured_number_in_the_prose_is_glued_from_the_run(path):
    """A number typed into the prose would show the cpu run's value in a book built from another
    profile's run; only the paper's numbers (lib.prose.PAPER_NUMBERS) may be typed."""
    from lib.prose import glued_values, typed_numbers

    nb = nbformat.read(path, as_version=4)
    for cell in _markdown_cells(path):
        assert typed_numbers(cell.source) == [], f"{path.name}: typed, not glued: {cell.source[:120]!r}"
    # a key, or another notebook's (the intro's results table): "04_whitening.ipynb::m0_fit_p"
    role = re.compile(r"\{glue(?::[a-z]+)?\}`(?:([\w.-]+\.ipynb)::)?([\w.-]+)")
    used = {m.groups() for cell in _markdown_cells(path) for m in role.finditer(cell.source)}
    for cell in _code_cells(nb):  # captions paste glued numbers too, and type none
        caption = cell.metadata.get("mystnb", {}).get("figure", {}).get("caption", "")
        assert typed_numbers(caption) == [], f"{path.name}: a caption types a number: {caption!r}"
        used |= {m.groups() for m in role.finditer(caption)}
    glued = {None: set(glued_values(nb))}
    for other in {doc for doc, _ in used if doc}:
        assert (path.parent / other).exists(), f"{path.name} pastes from {other}, which is no chapter"
        glued[other] = set(glued_values(nbformat.read(path.parent / other, as_version=4)))
    missing = sorted(f"{doc}::{key}" if doc else key for doc, key in used if key not in glued[doc])
    assert not missing, f"{path.name}: the prose pastes keys that no cell glued: {missing}"


def test_every_figure_is_numbered_captioned_and_every_mention_links():
    """Each cell that shows a figure is a numbered figure (myst-nb's figure metadata) with a
    caption; every "Fig. n" in the prose is a link ({ref} with the paper's figure number as its
    text) to a figure that exists."""
    labels = {}
    for path in CHAPTERS:
        for cell in _code_cells(nbformat.read(path, as_version=4)):
            if "show(" not in cell.source:
                continue
            assert cell.source.count("show(") == 1, f"{path.name}: one figure per cell: {cell.source[:80]!r}"
            figure = cell.metadata.get("mystnb", {}).get("figure", {})
            assert figure.get("name", "").startswith("fig-"), f"{path.name}: an unnamed figure"
            assert len(figure.get("caption", "")) > 40, f"{path.name}: {figure.get('name')} has no caption"
            assert figure["name"] not in labels, f"{figure['name']} is used twice"
            labels[figure["name"]] = path.name
    assert len(labels) >= 30
    for path in CHAPTERS:
        for cell in _markdown_cells(path):
            for line in cell.source.splitlines():
                if line.lstrip().startswith("#"):
                    continue
                for target in re.findall(r"\{(?:num)?ref\}`[^`<]*<(fig-[\w-]+)>`", line):
                    assert target in labels, f"{path.name} links {target}, which no chapter shows"
                bare = re.sub(r"\{(?:num)?ref\}`[^`]*`", "", line)
                assert not re.search(r"\bFigs?\.\s*\d", bare), f"{path.name}: unlinked mention: {line}"


def test_no_line_of_inline_math_starts_like_a_list_item():
    """A line that starts with "- " inside $...$ ends the math and starts a bullet: the page then
    shows raw LaTeX (it happened to chapter 4's norm identity)."""
    for path in CHAPTERS:
        for cell in _markdown_cells(path):
            text = re.sub(r"\$\$.*?\$\$", "", cell.source, flags=re.S)
            before = ""
            for line in text.splitlines(keepends=True):
                if re.match(r"\s*[-+*]\s", line):
                    assert before.count("$") % 2 == 0, f"{path.name}: a math line starts a list: {line!r}"
                before += line


def test_figure_labels_differ_from_the_plotly_div_ids():
    """show(fig, name) draws into <div id="fig-name">; a figure label "fig-name" would give the
    page two elements with that id, and plotly would draw into the wrong one (or none)."""
    for path in CHAPTERS:
        for cell in _code_cells(nbformat.read(path, as_version=4)):
            figure = cell.metadata.get("mystnb", {}).get("figure")
            shown = re.search(r'show\([^,]+,\s*f?"([^"]+)"\)', cell.source)
            if figure and shown:
                assert figure["name"] != f"fig-{shown.group(1)}", f"{path.name}: {figure['name']}"


def test_chapters_import_only_the_public_names_of_lib():
    """Every name a chapter imports from a lib module is in that module's ``__all__``."""
    import ast
    import importlib

    from IPython.core.inputtransformer2 import TransformerManager

    for path in sorted(BOOK_DIR.glob("*.md")):
        cells = re.findall(r"```\{code-cell\} ipython3\n(?:---\n.*?\n---\n)?(.*?)```", path.read_text(), re.S)
        code = "\n".join(TransformerManager().transform_cell(
            "\n".join(line for line in cell.splitlines() if not line.startswith(":")))
            for cell in cells)
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lib."):
                public = importlib.import_module(node.module).__all__
                for alias in node.names:
                    assert alias.name in public, f"{path.name}: {node.module}.{alias.name} is private"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_code_cells_are_formatted_to_88_columns(path):
    """A reader's page shows code at most 88 columns wide, as ``ruff format --line-length 88``
    leaves it (the Colab cell's install line, one URL, is the exception)."""
    long = [line for cell in _code_cells(nbformat.read(path, as_version=4))
            for line in cell.source.splitlines()
            if len(line) > 88 and not line.lstrip().startswith("%pip install")]
    assert not long, f"{path.name}: lines over 88 columns: {long[:3]}"
