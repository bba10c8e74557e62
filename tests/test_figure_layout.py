"""Every figure function of lib.plotting, fed data of the chapters' shapes and labels of their
lengths and passed through the house style, draws in headless Chromium at 1280 and 800 px with no
text that collides (tests/figure_overlap.js: overlapping texts, texts outside the figure or under
the legend or a colour bar, log-axis labels that are not their values). A planted figure with a
legend over its title and minor log labels shows the check can fail.

The book's own pages are checked the same way in tests/test_book_browser.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import plotly
import plotly.graph_objects as go
import pytest

from figure_check import figure_problems
from lib import plotting

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WIDTHS = (1280, 800)
NAMES = ["tiny-a", "tiny-b", "gaussian"]
RNG = np.random.default_rng(0)


def _images(n, side=32):
    return list(RNG.uniform(-1, 1, (n, 3, side, side)))


def _gains(n=300):
    lam = np.sort(10 ** RNG.uniform(-3, 2, n))[::-1]
    gain = lam ** -0.4 * np.exp(0.2 * RNG.standard_normal(n))
    return NS(lam=lam, gain=gain, low=gain * 0.8, high=gain * 1.2, level=0.95)


def figures() -> dict[str, go.Figure]:
    """One figure per function, with the chapters' numbers of panels, rows and labels."""
    figs = {}
    figs["image_grid, titles"] = plotting.image_grid(
        _images(8), cols=4, titles=[f"{n} (train)" for n in
                                    ("astronaut", "cat", "china", "flower", "motorcycle", "coffee",
                                     "rocket", "hubble_deep_field")])
    figs["image_grid, 12 columns, labelled rows"] = plotting.image_grid(
        _images(24), cols=12, row_labels=["training crops", "held-out crops"])
    figs["labelled_rows"] = plotting.labelled_rows(
        [(f"{name}: (b) fixed-point noise, t = 980", _images(6)) for name in NAMES], cols=6,
        col_labels=[f"image {i}" for i in range(1, 7)])
    frames = [_images(6) for _ in range(6)]
    figs["image_slider"] = plotting.image_slider(
        frames, [f"{t} (\u1fb1 = 0.{t:03d})" for t in (0, 100, 300, 500, 700, 980)],
        slider_prefix="t = ", cols=6,
        titles=[f"image {i // 2 + 1}, {'zero' if i % 2 == 0 else 'random'} start" for i in range(6)])
    panels = {f"{name}, {dist}": {f"K = {k}": (_gains(), {"ZCA \u03bb\u207b\u00b9\u141f\u00b2": None})
                                  for k in (10, 20, 50, 100)}
              for name in NAMES[:2] for dist in ("in distribution", "out of distribution")}
    for panel in panels.values():
        for label, (g, curves) in panel.items():
            panel[label] = (g, {"ZCA: \u03bb^-1/2": g.lam ** -0.5, "\u03a3\u207b\u00b9": 1 / g.lam})
    figs["gains_figure"] = plotting.gains_figure(panels, lam_min=0.02, slider_prefix="K = ",
                                                 height=520)
    methods = ["diff", "diff-ridge", "zca", "zca-cor", "pca", "pca-cor", "cholesky", "paper"]
    scores = {name: [NS(method=m, held_out=NS(r2=RNG.uniform(-2, 1), r2_scaled=RNG.uniform(0, 1),
                                              pearson=RNG.uniform(0, 1))) for m in methods]
              for name in NAMES}
    figs["map_scores_figure"] = plotting.map_scores_figure(scores)
    X = RNG.standard_normal((200, 48))
    figs["mapped_covariance_figure"] = plotting.mapped_covariance_figure(
        X, {name: RNG.standard_normal((48, 48)) for name in NAMES}, block=24)
    stats = {name: NS(p_value=1e-3, **{f"{k}_{m}": RNG.standard_normal(64)
                                       for k in ("paired", "repaired", "independent")
                                       for m in ("r", "l2")}) for name in NAMES}
    figs["pairing_figure"] = plotting.pairing_figure(stats)
    side = 8
    cross = {name: RNG.uniform(-0.1, 0.5, (side * side, side * side)) for name in NAMES}
    d = np.arange(-(side - 1), side)
    profile = NS(mean=RNG.uniform(-0.1, 0.5, (2 * side - 1, 2 * side - 1)), dx=d, dy=d,
                 radius=np.arange(side), radial=np.linspace(0.5, 0, side))
    figs["cross_correlation_figure"] = plotting.cross_correlation_figure(
        cross, {n: profile for n in NAMES}, {n: profile for n in NAMES}, side, rows_shown=4,
        offsets=4)
    runs = {(name, solver, start): NS(evaluations=np.arange(0, 301, 10),
                                      residuals=10 ** -np.linspace(0, 2, 31)[:, None] * np.ones((31, 4)))
            for name in NAMES for solver in ("picard", "damped picard", "anderson", "l-bfgs")
            for start in ("zero", "random")}
    figs["residual_figure"] = plotting.residual_figure(runs, 1e-3)
    n = 1000
    history = NS(temperature=np.linspace(1e-3, 0, n), best_loss=np.geomspace(1, 0.05, n + 1)[:, None],
                 loss=np.geomspace(1, 0.05, n + 1)[:, None], acceptance=RNG.uniform(0, 1, n))
    figs["annealing_traces"] = plotting.annealing_traces(
        {loss: NS(history=history) for loss in ("baseline", "forward", "backward")})
    strengths = [0.3, 0.5, 0.7, 0.9, 1.0]
    curves = {(name, method): (np.linspace(0.9, 0.3, 5), np.linspace(0, 1, 5), np.linspace(-0.1, 0.4, 5))
              for name in NAMES[:2] for method in ("sdedit", "sdedit-annealed", "ddim-inversion")}
    figs["edit_tradeoff_figure"] = plotting.edit_tradeoff_figure(curves, strengths)
    return {name: plotting.house_style(fig) for name, fig in figs.items()}


def planted() -> go.Figure:
    """A figure that breaks the rules: its legend over its title, three long subplot titles side
    by side, and a log axis with plotly's minor labels."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=["a subplot title that is far too long to fit beside the next one"] * 3)
    for j in range(3):
        fig.add_trace(go.Scatter(x=[0.01, 0.1, 1, 10], y=[0.05, 0.3, 1, 5], name=f"curve {j}"),
                      1, j + 1)
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig.update_layout(title="A title under the legend", height=500,
                             legend=dict(orientation="h", x=0, y=1.08, yanchor="bottom"))


def problems(figs: dict[str, go.Figure], tmp_path: Path) -> dict[int, list]:
    """The overlap check's findings for each figure, at each of :data:`WIDTHS`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("headless Chromium is needed: apt-get install chromium chromium-driver")
    shutil.copy2(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", tmp_path)
    body = "\n".join(
        f'<figure><p class="caption-number">{name}</p>'
        + fig.to_html(full_html=False, include_plotlyjs=False, config={"responsive": True})
        + "</figure>" for name, fig in figs.items())
    found = {}
    for width in WIDTHS:
        page = tmp_path / f"figures-{width}.html"
        page.write_text(f'<html><head><script src="plotly.min.js"></script></head>'
                        f'<body style="margin:0 20px">{body}</body></html>')
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", f"--window-size={width},1000"):
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        try:
            found[width] = figure_problems(driver, page.as_uri())
        finally:
            driver.quit()
    return found


def test_every_figure_function_draws_without_colliding_text(tmp_path):
    found = problems(figures(), tmp_path)
    report = [f"{w} px, {p['figure']}: {p['problem']}: {p['a']} / {p.get('b', '')}"
              for w, ps in found.items() for p in ps]
    assert not report, "\n".join(report)


def test_the_check_finds_a_planted_collision(tmp_path):
    found = problems({"planted": planted()}, tmp_path)
    for width, ps in found.items():
        kinds = {p["problem"] for p in ps}
        assert "overlap" in kinds, (width, ps)  # the subplot titles run together
        assert "a log axis tick label that is not its value" in kinds, (width, ps)
        assert any(p["problem"] == "under the legend" and "title" in p["a"] for p in ps), (width, ps)
    # the house style moves the legend below the plot and labels the log axis by decades
    styled = problems({"styled": plotting.house_style(planted())}, tmp_path)
    for ps in styled.values():
        assert not any("title: A title" in p["a"] + p.get("b", "") for p in ps), ps
        assert not any(p["problem"].startswith("a log axis") for p in ps), ps
