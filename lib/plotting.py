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

from lib import checks
from lib.profiles import FIGURE_DIR_ENV, in_colab
from lib.whitening import covariance

__all__ = ["show", "to_uint8", "png_bytes", "image_source", "image_grid", "image_slider",
           "gains_figure", "binned_gains", "left_align_titles", "FIGURE_DIR_ENV",
           "map_scores_figure", "mapped_covariance_figure", "pairing_figure",
           "cross_correlation_figure", "labelled_rows", "residual_figure", "SOLVER_COLORS",
           "annealing_traces", "LOSS_COLORS", "edit_tradeoff_figure", "EDIT_COLORS"]

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
    a = checks.array(image, "image")  # NaN would print as black pixels
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[0] in (1, 3))) or a.size == 0:
        raise ValueError(f"image must have shape (3, H, W) or (H, W), got {a.shape}")
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        a = a.transpose(1, 2, 0)
    return np.clip(np.round((a + 1.0) * 127.5), 0, 255).astype(np.uint8)


def png_bytes(image, *, upscale: int = 1, fmt: str = "png") -> bytes:
    """PNG (or JPEG) file bytes of an image in [-1, 1] ``(3, H, W)``, optionally enlarged."""
    from PIL import Image

    a = to_uint8(image)
    upscale = checks.count(upscale, "upscale")
    if upscale > 1:
        a = np.repeat(np.repeat(a, upscale, axis=0), upscale, axis=1)
    buf = io.BytesIO()
    if checks.choice(fmt, "fmt", ("png", "jpeg")) == "jpeg":
        Image.fromarray(a).save(buf, format="JPEG", quality=90)
    else:
        Image.fromarray(a).save(buf, format="PNG")
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
    if isinstance(images, (str, bytes, dict)) or not hasattr(images, "__iter__"):
        raise ValueError(f"images must be a list or batch of (3, H, W) images, got {images!r}"[:120])
    images = list(images)
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    cols = n if cols is None else checks.count(cols, "cols")
    if titles is not None and len(titles) > n:
        raise ValueError(f"titles has {len(titles)} entries for {n} images")
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

    X = checks.array(X, "X")
    Xc = X - X.mean(0)
    titles, blocks = [], []
    for name, W in maps.items():
        c = covariance(Xc @ checks.array(W, f"maps[{name!r}]")[:block].T)
        titles.append(f"{name}<br>mean variance {np.mean(np.diag(c)):.2g}")  # two lines: no overlap
        blocks.append(c / np.mean(np.diag(c)))
    fig = make_subplots(rows=1, cols=len(maps), subplot_titles=titles)
    for j, c in enumerate(blocks):
        fig.add_trace(go.Heatmap(z=c, zmin=-1, zmax=1, colorscale="RdBu_r", showscale=(j == 0)),
                      row=1, col=j + 1)
    fig.update_yaxes(autorange="reversed")
    return fig.update_layout(height=height, title=title, margin=dict(t=110))


def pairing_figure(stats: dict, *, title: str | None = None) -> go.Figure:
    """Chapter 2's Fig. 2b: per model, violins of each image's Pearson r and RMS distance with
    its own noise, another noise of its set (re-paired) and an independent noise.

    Args:
        stats: ``{model: PairingStats}`` (:func:`lib.correlation.pairing_stats` with
            ``independent``).
    """
    names = list(stats)
    fig = make_subplots(rows=2, cols=len(names), subplot_titles=names, vertical_spacing=0.12)
    kinds = [("paired", "#d62728"), ("re-paired", "#1f77b4"), ("independent", "#7f7f7f")]
    for j, name in enumerate(names):
        st = stats[name]
        for row, (metric, label) in enumerate([("r", "Pearson r"), ("l2", "RMS distance")], start=1):
            for kind, color in kinds:
                fig.add_trace(go.Violin(y=getattr(st, f"{kind.replace('-', '')}_{metric}"),
                                        name=kind, legendgroup=kind,
                                        showlegend=(j == 0 and row == 1), line_color=color,
                                        box_visible=True, meanline_visible=True, points=False),
                              row=row, col=j + 1)
            fig.update_yaxes(title_text=label if j == 0 else None, row=row, col=j + 1)
        fig.layout.annotations[j].text = f"{name} (p = {st.p_value:.1e})"
    fig.update_layout(height=620, violinmode="group", title=title)
    return fig


def cross_correlation_figure(cross: dict, profiles: dict, nulls: dict, side: int, *,
                             rows_shown: int = 4, offsets: int = 8,
                             title: str | None = None) -> go.Figure:
    """Chapter 2's Fig. 2c, one row per model: the noise-pixel / image-pixel cross-correlation
    of the first ``rows_shown`` image rows, its mean over offsets (``offsets`` each way), and
    its ring average against distance, paired and re-paired.

    Args:
        cross: ``{model: (D, D) cross-correlation}`` (:func:`lib.correlation.pixel_cross_correlation`).
        profiles, nulls: ``{model: OffsetProfile}``, paired and re-paired.
        side: the noise's side (pixels or latent cells).
    """
    names = list(cross)
    block, R, c = rows_shown * side, offsets, side - 1
    fig = make_subplots(rows=len(names), cols=3, horizontal_spacing=0.08, vertical_spacing=0.08,
                        subplot_titles=[t for name in names for t in
                                        (f"{name}: noise pixel vs image pixel (first {rows_shown} rows)",
                                         f"{name}: mean over offsets", f"{name}: against distance")])
    near = slice(c - R, c + R + 1)
    for i, name in enumerate(names):
        pr, row = profiles[name], i + 1
        fig.add_trace(go.Heatmap(z=cross[name][:block, :block], zmid=0, colorscale="RdBu_r",
                                 coloraxis="coloraxis"), row=row, col=1)
        fig.add_trace(go.Heatmap(z=pr.mean[near, near], x=pr.dx[near], y=pr.dy[near], zmid=0,
                                 coloraxis="coloraxis"), row=row, col=2)
        fig.add_trace(go.Scatter(x=pr.radius, y=pr.radial, mode="lines+markers", name="paired",
                                 line=dict(color="#d62728"), showlegend=(i == 0)), row=row, col=3)
        fig.add_trace(go.Scatter(x=nulls[name].radius, y=nulls[name].radial, mode="lines",
                                 name="re-paired", line=dict(color="grey", dash="dot"),
                                 showlegend=(i == 0)), row=row, col=3)
        fig.update_yaxes(autorange="reversed", row=row, col=1)
        fig.update_yaxes(autorange="reversed", title_text="dy", row=row, col=2)
        fig.update_xaxes(title_text="dx", row=row, col=2)
        fig.update_xaxes(title_text="offset length (pixels)", row=row, col=3)
    fig.update_layout(height=330 * len(names), coloraxis=dict(colorscale="RdBu_r", cmid=0),
                      title=title)
    return fig


def labelled_rows(rows, *, cols: int, upscale: int = 3, height_per_row: int = 130,
                  title: str | None = None, vertical_spacing: float = 0.025,
                  font_size: int = 11) -> go.Figure:
    """A grid of images whose rows are labelled: each ``(label, images)`` of ``rows`` fills one
    row of ``cols`` images, with the label over its first image, left-aligned
    (:func:`left_align_titles`)."""
    grid, titles = [], []
    for label, images in rows:
        images = list(images)
        grid += images
        titles += [label] + [""] * (len(images) - 1)
    fig = image_grid(grid, cols=cols, upscale=upscale, height_per_row=height_per_row,
                     titles=titles, vertical_spacing=vertical_spacing, title=title)
    return left_align_titles(fig, font_size=font_size)


#: the colours of chapter 3's solvers, in the order the chapter lists them
SOLVER_COLORS = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd")


def residual_figure(runs: dict, tol: float, *, title: str | None = None) -> go.Figure:
    """Chapter 3's convergence figure: per model, the median relative residual of each solver
    from each start against network evaluations (solid: zero start, dotted: random), with the
    threshold ``tol`` dashed.

    Args:
        runs: ``{(model, solver, start): FixedPointResult}`` (:func:`lib.fixed_point.fixed_point_starts`).
    """
    names = list(dict.fromkeys(k[0] for k in runs))
    colors = dict(zip(dict.fromkeys(k[1] for k in runs), SOLVER_COLORS * 4))
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True)
    for j, name in enumerate(names):
        for (n, solver, start), r in runs.items():
            if n != name:
                continue
            fig.add_trace(go.Scatter(x=r.evaluations, y=np.median(r.residuals, axis=1),
                                     mode="lines", name=f"{solver}, {start} start",
                                     legendgroup=f"{solver}{start}", showlegend=(j == 0),
                                     line=dict(color=colors[solver],
                                               dash="solid" if start == "zero" else "dot")),
                          row=1, col=j + 1)
        fig.add_hline(y=tol, line=dict(color="grey", dash="dash"), row=1, col=j + 1)
        fig.update_xaxes(title_text="network evaluations", row=1, col=j + 1)
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="median relative residual", row=1, col=1)
    fig.update_layout(height=420, legend=dict(orientation="h", y=-0.3), title=title)
    return fig


#: the colours of chapter 5's losses
LOSS_COLORS = {"baseline": "#636efa", "forward": "#ef553b", "backward": "#00cc96"}


def annealing_traces(runs: dict, *, window: int = 25, title: str | None = None) -> go.Figure:
    """Chapter 5's search over its iterations, one line per loss: the best loss over the loss
    of the random start (mean over chains), the acceptance rate (moving mean over ``window``
    iterations) and the temperature.

    Args:
        runs: ``{loss: AnnealResult}`` (:func:`lib.annealing.anneal`), all of one length.
    """
    fig = make_subplots(rows=1, cols=3, subplot_titles=["best loss / loss of the random start",
                                                        f"acceptance rate (moving mean of {window})",
                                                        "temperature T_k"])
    n_iters = len(next(iter(runs.values())).history.temperature)
    it = np.arange(n_iters + 1)
    for loss, r in runs.items():
        h, color = r.history, LOSS_COLORS.get(loss)
        rel = (h.best_loss / h.loss[0]).reshape(n_iters + 1, -1)
        fig.add_trace(go.Scatter(x=it, y=rel.mean(1), name=loss, line_color=color), row=1, col=1)
        acc = np.convolve(h.acceptance, np.ones(window) / window, mode="valid")
        fig.add_trace(go.Scatter(x=it[window:], y=acc, name=loss, line_color=color,
                                 showlegend=False), row=1, col=2)
    first = next(iter(runs.values())).history
    fig.add_trace(go.Scatter(x=it[1:], y=first.temperature, name="T_k", line_color="gray",
                             showlegend=False), row=1, col=3)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="iteration")
    fig.update_layout(height=380, title=title)
    return fig


#: the colours of chapter 6's edit methods
EDIT_COLORS = {"sdedit": "#636efa", "sdedit-annealed": "#ef553b", "ddim-inversion": "#00cc96"}


def edit_tradeoff_figure(curves: dict, strengths, *, title: str | None = None) -> go.Figure:
    """Chapter 6's Fig. 10 as a trade-off: per model, the structure kept (SSIM to the input)
    against the edit achieved (top: the share judged as the target; bottom: the log-error
    margin), one line per method, each point labelled with its strength.

    Args:
        curves: ``{(model, method): (SSIMs, shares, margins)}`` over ``strengths``
            (:func:`lib.findings.edit_rows`).
    """
    names = list(dict.fromkeys(k[0] for k in curves))
    fig = make_subplots(rows=2, cols=len(names), subplot_titles=[*names, *[""] * len(names)],
                        vertical_spacing=0.12)
    text = [f"{s:g}" for s in strengths]
    for j, name in enumerate(names):
        for (n, method), (ss, rate, margin) in curves.items():
            if n != name:
                continue
            for row, y in ((1, rate), (2, margin)):
                fig.add_trace(go.Scatter(x=ss, y=y, mode="lines+markers+text", text=text,
                                         textposition="top center", name=method,
                                         line_color=EDIT_COLORS.get(method),
                                         showlegend=(j == 0 and row == 1)), row=row, col=j + 1)
        fig.update_xaxes(title_text="structure kept: SSIM to the input", row=2, col=j + 1)
    fig.update_yaxes(title_text="share judged as the target", row=1, col=1)
    fig.update_yaxes(title_text="margin log(err_src / err_tgt)", row=2, col=1)
    fig.update_layout(height=640, title=title)
    return fig
