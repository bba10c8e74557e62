"""Plotly figures that render in the static book (no network), in Jupyter and in Colab.

``show(fig, name)`` is the one way chapters display a figure:

* under the chapter runner (which sets the environment variable ``LIB_FIGURE_DIR``) it emits
  the figure as HTML *without* plotly.js: the book serves plotly.js itself (``_config.yml``
  loads it on every page), so there is no CDN and no 3.5 MB copy per figure in the committed
  notebooks. It also writes ``<name>.json`` (plotly JSON) and ``<name>.html`` (a page that
  loads the ``plotly.min.js`` written beside it) into that folder;
* in Colab it uses plotly's ``colab`` renderer;
* anywhere else (a live Jupyter kernel) it uses plotly's default renderer.

The figure's ``div`` id is derived from its name, so re-running a chapter gives the same HTML.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from lib.profiles import in_colab

__all__ = ["show", "to_uint8", "png_bytes", "image_source", "image_grid", "image_slider",
           "gains_figure", "binned_gains", "left_align_titles", "FIGURE_DIR_ENV",
           "map_scores_figure", "mapped_covariance_figure"]

FIGURE_DIR_ENV = "LIB_FIGURE_DIR"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def save(fig: go.Figure, name: str, directory: str | os.PathLike) -> list[Path]:
    """Write ``name.json`` and a standalone ``name.html`` (plotly.js inline) into a folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.json", directory / f"{name}.html"]
    paths[0].write_text(pio.to_json(fig), encoding="utf-8")
    paths[1].write_text(fig.to_html(full_html=True, include_plotlyjs="directory"), encoding="utf-8")
    if not (directory / "plotly.min.js").exists():
        import plotly

        shutil.copy2(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", directory)
    return paths


def show(fig: go.Figure, name: str) -> None:
    """Display a figure (see the module docstring) and save it when the runner asks.

    Args:
        fig: the plotly figure.
        name: a file-name-safe identifier, unique within the chapter (letters, digits, ``_.-``).
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"figure name {name!r} must use only letters, digits, '_', '.', '-'")
    out = os.environ.get(FIGURE_DIR_ENV)
    if in_colab():
        fig.show(renderer="colab")
    elif out:
        from IPython.display import HTML, display

        save(fig, name, out)
        display(HTML(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
                                 config={"responsive": True, "displaylogo": False})))
    else:
        fig.show()


def to_uint8(image) -> np.ndarray:
    """An image in [-1, 1] ``(3, H, W)`` (or ``(H, W)``) as uint8 ``(H, W, 3)`` (or ``(H, W)``)."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3:
        a = a.transpose(1, 2, 0)
    return np.clip(np.round((a + 1.0) * 127.5), 0, 255).astype(np.uint8)


def png_bytes(image, *, upscale: int = 1, fmt: str = "png") -> bytes:
    """PNG (or JPEG) file bytes of an image in [-1, 1] ``(3, H, W)``, optionally enlarged."""
    from PIL import Image

    a = to_uint8(image)
    if upscale > 1:
        a = np.repeat(np.repeat(a, upscale, axis=0), upscale, axis=1)
    buf = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(a).save(buf, format="JPEG", quality=90)
    elif fmt == "png":
        Image.fromarray(a).save(buf, format="PNG")
    else:
        raise ValueError(f"fmt must be 'png' or 'jpeg', got {fmt!r}")
    return buf.getvalue()


def image_source(image, *, upscale: int = 1, fmt: str = "png") -> str:
    """A data URI of an image in [-1, 1] (compact in the page, unlike raw pixel arrays).

    PNG is exact and suits small crops; JPEG keeps noisy photographs small.
    """
    data = base64.b64encode(png_bytes(image, upscale=upscale, fmt=fmt)).decode("ascii")
    return f"data:image/{fmt};base64,{data}"


def _image_trace(image, upscale: int, fmt: str = "png", **kwargs) -> go.Image:
    return go.Image(source=image_source(image, upscale=upscale, fmt=fmt), hoverinfo="skip",
                    **kwargs)


def _hide_axes(fig: go.Figure) -> None:
    fig.update_xaxes(visible=False, showgrid=False)
    fig.update_yaxes(visible=False, showgrid=False, scaleanchor=None)


def image_grid(images, *, titles=None, cols: int | None = None, upscale: int = 1,
               height_per_row: int = 180, title: str | None = None,
               fmt: str = "png", vertical_spacing: float | None = None) -> go.Figure:
    """A grid of images in [-1, 1], each ``(3, H, W)``, with optional subplot titles.

    ``vertical_spacing`` is the gap between rows as a fraction of the figure's height (default
    0.08 with titles, 0.02 without); a grid of many rows needs a smaller one, or the gaps take
    most of the height and the images shrink.
    """
    images = list(images)
    n = len(images)
    cols = cols or n
    rows = -(-n // cols)
    if vertical_spacing is None:
        vertical_spacing = 0.08 if titles else 0.02
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles,
                        horizontal_spacing=0.01, vertical_spacing=vertical_spacing)
    for i, image in enumerate(images):
        fig.add_trace(_image_trace(image, upscale, fmt), row=i // cols + 1, col=i % cols + 1)
    _hide_axes(fig)
    fig.update_layout(height=height_per_row * rows + (60 if title else 30), title=title,
                      margin=dict(l=10, r=10, t=60 if title else 30, b=10))
    return fig


def left_align_titles(fig: go.Figure, *, font_size: int | None = None) -> go.Figure:
    """Start each subplot title at its subplot's left edge instead of centring it.

    For grids whose first image of a row carries a long row label ("tiny-a: (b) fixed-point
    noise") and the others none: centred, the label would run off the figure's left edge.

    Args:
        fig: a figure from :func:`image_grid` or :func:`image_slider` (equal columns).
        font_size: also set the titles' font size.

    Returns:
        The same figure, changed in place.
    """
    width = np.diff(fig.layout.xaxis.domain)[0] if fig.layout.xaxis.domain else 1.0
    for ann in fig.layout.annotations:
        if ann.text and ann.xref == "paper" and ann.x is not None:
            ann.update(x=ann.x - width / 2, xanchor="left")
            if font_size:
                ann.update(font_size=font_size)
    return fig


def image_slider(frames, labels, *, slider_prefix: str, titles=None, upscale: int = 1,
                 height: int = 360, title: str | None = None, fmt: str = "png",
                 cols: int | None = None) -> go.Figure:
    """Images that change with a slider; ``frames[k]`` is a list of images shown at step k.

    The slider toggles trace visibility (no animation), so it works in the static page. With
    ``cols`` the images of a step fill a grid row by row (default: one row).
    """
    frames = [list(f) for f in frames]
    per = len(frames[0])
    cols = cols or per
    rows = -(-per // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=0.06 if titles else 0.02)
    for k, frame in enumerate(frames):
        if len(frame) != per:
            raise ValueError("every slider step must show the same number of images")
        for j, image in enumerate(frame):
            fig.add_trace(_image_trace(image, upscale, fmt, visible=(k == 0)),
                          row=j // cols + 1, col=j % cols + 1)
    steps = []
    for k, label in enumerate(labels):
        visible = [False] * (per * len(frames))
        visible[k * per:(k + 1) * per] = [True] * per
        steps.append(dict(method="restyle", args=[{"visible": visible}], label=str(label)))
    fig.update_layout(sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix=slider_prefix),
                                    pad=dict(t=30))],
                      height=height, title=title, margin=dict(l=10, r=10, t=60, b=10))
    _hide_axes(fig)
    return fig


_CURVE_DASH = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def gains_figure(panels: dict, *, lam_min: float, slider_prefix: str = "", title: str | None = None,
                 height: int = 460) -> go.Figure:
    """Per-direction gains of measured maps against reference curves, on log-log axes.

    Args:
        panels: ``{panel title: {step label: (gains, curves)}}``: one subplot per panel, one
            slider step per label (the same labels in every panel). ``gains`` is a
            :class:`lib.linear_map.EigenGains` (shown with its intervals where
            ``lambda > lam_min``, the well-determined directions), ``curves`` a
            ``{name: values per direction}`` drawn as black lines.
        lam_min: the smallest eigenvalue shown.
        slider_prefix: text before the step label on the slider (no slider for one step).

    Returns:
        the figure; the slider toggles trace visibility, so it works on a static page.
    """
    titles = list(panels)
    labels = list(next(iter(panels.values())))
    if any(list(p) != labels for p in panels.values()):
        raise ValueError("every panel must have the same step labels")
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.04)
    step_of = []
    for j, name in enumerate(titles):
        for k, label in enumerate(labels):
            gains, curves = panels[name][label]
            keep = (gains.lam > lam_min) & (gains.gain > 0)
            lam, g = gains.lam[keep], gains.gain[keep]
            err = dict(type="data", symmetric=False, thickness=0.6, width=0,
                       array=np.clip(gains.high[keep] - g, 0, None),
                       arrayminus=np.clip(g - gains.low[keep], 0, g * 0.999))
            fig.add_trace(go.Scatter(x=lam, y=g, mode="markers", error_y=err,
                                     name=f"measured gain ({gains.level:.0%} interval)",
                                     legendgroup="measured", showlegend=(j == 0 and k == 0),
                                     marker=dict(size=4, color="#1f77b4", opacity=0.6),
                                     visible=(k == 0)), row=1, col=j + 1)
            step_of.append(k)
            for c, (curve_name, values) in enumerate(curves.items()):
                values = np.asarray(values, dtype=np.float64)[keep]
                order = np.argsort(lam)
                fig.add_trace(go.Scatter(x=lam[order], y=values[order], mode="lines",
                                         name=curve_name, legendgroup=curve_name,
                                         showlegend=(j == 0),
                                         line=dict(color="black", width=1.5,
                                                   dash=_CURVE_DASH[c % len(_CURVE_DASH)]),
                                         visible=(k == 0)), row=1, col=j + 1)
                step_of.append(k)
        fig.update_xaxes(type="log", title_text="eigenvalue lambda of Sigma", row=1, col=j + 1)
    # the y range of the measured gains (with their intervals), so that reference curves that
    # run off to 1e3 do not squash the data
    measured = [(g.low[(g.lam > lam_min) & (g.gain > 0)], g.high[(g.lam > lam_min) & (g.gain > 0)])
                for p in panels.values() for g, _ in p.values()]
    low = np.concatenate([m[0] for m in measured])
    high = np.concatenate([m[1] for m in measured])
    low, high = low[np.isfinite(low) & (low > 0)], high[np.isfinite(high) & (high > 0)]
    if len(low) and len(high):
        fig.update_yaxes(range=[np.log10(np.quantile(low, 0.01)) - 0.3,
                                np.log10(high.max()) + 0.3])
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="gain u^T W u", row=1, col=1)
    if len(labels) > 1:
        steps = [dict(method="restyle", label=str(label),
                      args=[{"visible": [s == k for s in step_of]}]) for k, label in enumerate(labels)]
        fig.update_layout(sliders=[dict(active=0, steps=steps, pad=dict(t=40),
                                        currentvalue=dict(prefix=slider_prefix))])
    fig.update_layout(height=height, title=title, margin=dict(t=150),
                      legend=dict(orientation="h", x=0, y=1.12, yanchor="bottom"))
    return fig


def binned_gains(gains, *, lam_min: float, per_decade: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Median gain in bins of ``lambda`` (``per_decade`` per decade, above ``lam_min``): a
    readable summary of hundreds of noisy per-direction gains. Returns bin centres and medians
    (bins with fewer than 3 directions are left out)."""
    keep = gains.lam > lam_min
    lam, g = gains.lam[keep], gains.gain[keep]
    edges = 10.0 ** (np.arange(np.floor(np.log10(lam.min()) * per_decade),
                               np.ceil(np.log10(lam.max()) * per_decade) + 1) / per_decade)
    centres, medians = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (lam >= lo) & (lam < hi)
        if inside.sum() >= 3:
            centres.append(np.sqrt(lo * hi))
            medians.append(np.median(g[inside]))
    return np.array(centres), np.array(medians)


def map_scores_figure(results: dict, *, title: str | None = None, height: int = 420) -> go.Figure:
    """Held-out scores of maps from image to noise, one panel per model, grouped bars.

    Args:
        results: ``{model: rows}``, each row a :class:`lib.linear_map.MapComparison` (``.method``
            and ``.held_out`` with ``r2``, ``r2_scaled`` and ``pearson``), e.g. the second item
            of :func:`lib.linear_map.compare_maps`'s result. Scores below -1 are drawn at -1.
    """
    fig = make_subplots(rows=1, cols=len(results), subplot_titles=list(results), shared_yaxes=True)
    scores = (("R\u00b2 held out", "r2", "#1f77b4"), ("best-scaled R\u00b2 held out", "r2_scaled", "#ff7f0e"),
              ("Pearson held out", "pearson", "#2ca02c"))
    for j, rows in enumerate(results.values()):
        for label, field, color in scores:
            fig.add_trace(go.Bar(x=[r.method for r in rows],
                                 y=np.maximum([getattr(r.held_out, field) for r in rows], -1),
                                 name=label, marker_color=color, legendgroup=label,
                                 showlegend=(j == 0)), row=1, col=j + 1)
    fig.update_yaxes(range=[-1.05, 1.05])
    fig.update_yaxes(title_text="score (clipped at -1)", row=1, col=1)
    return fig.update_layout(barmode="group", height=height, title=title)


def mapped_covariance_figure(X, maps: dict, *, block: int, title: str | None = None,
                             height: int = 430) -> go.Figure:
    """A block of the covariance of each map's outputs ``X W^T``, divided by its mean variance
    (given in the panel's title), as heatmaps on [-1, 1]; a whitening shows the identity.

    Args:
        X: images ``(N, D)``; maps: ``{model: W (D, D)}``; block: the first outputs shown.
    """
    from lib.whitening import covariance

    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(0)
    titles, blocks = [], []
    for name, W in maps.items():
        c = covariance(Xc @ np.asarray(W)[:block].T)
        titles.append(f"{name}<br>mean variance {np.mean(np.diag(c)):.2g}")  # two lines: no overlap
        blocks.append(c / np.mean(np.diag(c)))
    fig = make_subplots(rows=1, cols=len(maps), subplot_titles=titles)
    for j, c in enumerate(blocks):
        fig.add_trace(go.Heatmap(z=c, zmin=-1, zmax=1, colorscale="RdBu_r", showscale=(j == 0)),
                      row=1, col=j + 1)
    fig.update_yaxes(autorange="reversed")
    return fig.update_layout(height=height, title=title, margin=dict(t=110))
