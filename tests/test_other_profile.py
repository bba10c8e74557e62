"""A book built from a run of another profile shows that run's numbers in its prose.

Every measured number in the chapters' text is glued (myst-nb ``{glue:text}``) from the cell
that computed it. This test runs two chapters under the ``mini`` profile (toy sizes, about a
minute on the CPU; together they paste over 100 numbers), builds the HTML from that run with the
committed notebooks for the other chapters, and checks that the numbers pasted into those pages'
prose and captions are exactly that run's glued values, formatted as the text asks, and that
enough of them differ from the committed ``cpu`` run for the check to mean something. (nbval
already re-executes every chapter; running the whole book again here would do that work twice.)
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from html import unescape

import nbformat
import pytest

from lib.prose import glued_values
from lib.tooling.runner import BOOK_DIR, chapters

#: the chapters run under ``mini``: quick there, and rich in glued numbers
CHAPTERS = ["02_correlation", "05_annealing"]
GLUE = re.compile(r"\{glue(?::text)?\}`([\w.-]+)(?::([^`]*))?`")


def _expected(nb) -> Counter:
    """The text every glue role of a notebook pastes, from its own glued values."""
    from myst_nb.core.variables import format_plain_text

    values = glued_values(nb)
    texts = [c.source for c in nb.cells if c.cell_type == "markdown"]
    texts += [c.metadata.get("mystnb", {}).get("figure", {}).get("caption", "")
              for c in nb.cells if c.cell_type == "code"]
    pasted = Counter()
    for text in texts:
        for key, spec in GLUE.findall(text):
            pasted[format_plain_text(values[key], spec or "")] += 1
    return pasted


# Sphinx's smartquotes curl the straight quotes of pasted text
STRAIGHT = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def _pasted(html: str) -> Counter:
    return Counter(unescape(re.sub(r"<[^>]+>", "", m)).translate(STRAIGHT)
                   for m in re.findall(r'<span class="pasted-text">(.*?)</span>', html, re.S))


@pytest.mark.whole_book
def test_a_book_built_from_a_mini_run_shows_the_mini_runs_numbers(tmp_path):
    from lib.tooling.book import build_book
    from lib.tooling.runner import run_chapters

    run_dir, record = run_chapters("mini", CHAPTERS, out=tmp_path / "run", reuse=False,
                                   log=lambda *a: None)
    for path in chapters():  # the other pages: the committed notebooks
        if not (run_dir / "book" / path.name).exists():
            shutil.copy(path, run_dir / "book" / path.name)
    html = build_book(run_dir / "book", label="mini-test", build_root=tmp_path / "build",
                      log=lambda *a: None)
    differ = 0
    for path in (p for p in chapters() if p.stem in CHAPTERS):
        ran = nbformat.read(run_dir / "book" / path.name, as_version=4)
        expected = _expected(ran)
        page = (html / "book" / f"{path.stem}.html").read_text(encoding="utf-8")
        assert _pasted(page) == expected, f"{path.stem}: the page's pasted numbers are not the run's"
        committed = glued_values(nbformat.read(BOOK_DIR / path.name, as_version=4))
        differ += sum(committed.get(k) != v for k, v in glued_values(ran).items())
    assert differ >= 20, "too few glued values differ from the cpu run for the check to mean much"
    # the intro's results table pastes other chapters' numbers: from this run's notebooks
    from myst_nb.core.variables import format_plain_text

    intro = nbformat.read(run_dir / "book" / "00_intro.ipynb", as_version=4)
    cross = re.compile(r"\{glue:text\}`([\w.-]+\.ipynb)::([\w.-]+)(?::([^`]*))?`")
    expected = Counter()
    for cell in (c for c in intro.cells if c.cell_type == "markdown"):
        for doc, key, spec in cross.findall(cell.source):
            values = glued_values(nbformat.read(run_dir / "book" / doc, as_version=4))
            expected[format_plain_text(values[key], spec or "")] += 1
    assert sum(expected.values()) >= 10, "the intro pastes too few chapter numbers"
    page = (html / "book" / "00_intro.html").read_text(encoding="utf-8")
    assert _pasted(page) == expected, "the intro's table does not show the run's numbers"
