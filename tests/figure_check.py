"""The figure-collision check both browser tests run: load a page, wait for its plotly figures
to draw, and run figure_overlap.js on them."""

from __future__ import annotations

import time
from pathlib import Path

OVERLAP_JS = (Path(__file__).parent / "figure_overlap.js").read_text()


def figure_problems(driver, url: str, *, timeout: float = 45) -> list[dict]:
    """The problems figure_overlap.js finds on the page at ``url`` once every figure drew:
    ``{"figure", "problem", "a", "b"?}`` each."""
    driver.get(url)
    deadline = time.time() + timeout
    while time.time() < deadline and driver.execute_script(
            "return document.querySelectorAll('.plotly-graph-div svg.main-svg').length"
            " < document.querySelectorAll('.plotly-graph-div').length"):
        time.sleep(0.3)
    time.sleep(0.5)
    return driver.execute_script(OVERLAP_JS)


def describe(problem: dict) -> str:
    return (f"{problem['figure']}: {problem['problem']}: {problem['a']}"
            + (f" / {problem['b']}" if problem.get("b") else ""))
