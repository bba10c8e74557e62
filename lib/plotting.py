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

__all__ = ["show", "house_style", "to_uint8", "png_bytes", "image_source", "image_grid", "image_slider",
           "gains_figure", "binned_gains", "FIGURE_DIR_ENV",
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


def _log_span(fig: go.Figure, axis: str) -> float:
    """Decades spanned by the positive data on a log axis (``xaxis``, ``yaxis2``, ...), or by
    its range when one is set."""
    layout_axis = fig.layout[axis]
    if layout_axis.range is not None:
        return float(abs(layout_axis.range[1] - layout_axis.range[0]))
    ref = axis[0] + axis[5:]  # "xaxis2" -> "x2"
    values = []
    for trace in fig.data:
        if (getattr(trace, f"{axis[0]}axis", None) or axis[0]) == ref:
            v = getattr(trace, axis[0], None)
            try:
                v = np.asarray([] if v is None else v, dtype=np.float64).ravel()
            except (TypeError, ValueError):  # categories, dates
                continue
            values.append(v[np.isfinite(v) & (v > 0)])
    v = np.concatenate(values) if values else np.empty(0)
    return float(np.log10(v.max() / v.min())) if v.size else 0.0


def house_style(fig: go.Figure) -> go.Figure:
    """The book's figure style, applied by :func:`show` to every figure (issue 29):

    * the legend below the plot, in the figure's own coordinates, so that plotly makes room for
      it and it never covers a title or a colour bar;
    * a title, where a figure has one, left-aligned with room made for it, and room above the
      plot for plotly's tool bar;
    * log axes that span a decade or more labelled at powers of ten only (no minor "2" and "5"
      labels, which read as values); a log axis over less than a decade becomes linear.

    Returns:
        the same figure, changed in place.
    """
    if (fig.layout.meta or {}).get("house_style"):
        return fig  # styled already
    fig.update_layout(meta={**(fig.layout.meta or {}), "house_style": True})
    # room above the plot for the tool bar, which plotly draws over the top right corner
    fig.update_layout(margin_t=(40 if fig.layout.margin.t is None else fig.layout.margin.t) + 28)
    if any(getattr(t, "showlegend", None) is not False and getattr(t, "name", None)
           for t in fig.data) and fig.layout.showlegend is not False:
        fig.update_layout(legend=dict(orientation="h", yref="container", y=0, yanchor="bottom",
                                      x=0, xanchor="left", font_size=LABEL_SIZE,
                                      title_text=fig.layout.legend.title.text))
    if fig.layout.title.text:
        fig.update_layout(title=dict(x=0, xanchor="left", xref="container", y=1, yanchor="top",
                                     yref="container", automargin=True, pad=dict(l=10, t=8),
                                     font_size=14))
    for axis in [k for k in fig.layout.to_plotly_json() if k.startswith(("xaxis", "yaxis"))]:
        if fig.layout[axis].type == "log" and fig.layout[axis].dtick is None:
            # decades where the data span them; a linear axis where they span less (a log
            # axis over 0.8-1.1 crowds its labels, and reads no better)
            fig.layout[axis].update(**({"dtick": 1} if _log_span(fig, axis) >= 1 else
                                       {"type": "linear"}))
        if fig.layout[axis].visible is not False:  # ticks apart: no label meets another axis'
            fig.layout[axis].update(ticks="outside", ticklen=4)
    return fig


def show(fig: go.Figure, name: str) -> None:
    """Display a figure (see the module docstring) and save it when the runner asks.

    Args:
        fig: the plotly figure.
        name: a file-name-safe identifier, unique within the chapter (letters, digits, ``_.-``).
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"figure name {name!r} must use only letters, digits, '_', '.', '-'")
    out = os.environ.get(FIGURE_DIR_ENV)
    house_style(fig)
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


#: the width in pixels of a figure at its narrowest in the book (an 800 px window): labels are
#: wrapped so that they fit it
NARROW = 700
#: the font size of row, column and subplot labels, and the width of one of their characters
#: (a generous average, so that a wrapped label fits)
LABEL_SIZE, CHAR = 12, 7.5
LINE = 16  # the height of one line of a label


def _wrap(text: str, chars: float) -> str:
    """``text`` with ``<br>`` between words so that no line is longer than ``chars`` characters
    (a longer word stays whole)."""
    import textwrap

    text = "" if text is None else str(text)
    if not text or len(text) <= chars:
        return text
    return "<br>".join(textwrap.wrap(text, max(int(chars), 4), break_long_words=False))


def _n_lines(text: str) -> int:
    return 0 if not text else text.count("<br>") + 1


def _wrapped_rows(labels, chars: int) -> tuple[list[str], int]:
    """Row labels wrapped to ``chars`` characters a line, and the widest line's width in px."""
    text = [_wrap(label, chars) for label in labels]
    widest = max((len(line) for t in text for line in t.split("<br>")), default=0)
    return text, int(CHAR * widest)


def _place_row_labels(fig: go.Figure, text, cols: int, *, gap: int) -> None:
    """Each label right-aligned ``gap`` px left of its row of panels, at the row's middle."""
    for r, label in enumerate(text):
        domain = fig.layout[f"yaxis{'' if r == 0 else r * cols + 1}"].domain
        fig.add_annotation(text=label, xref="paper", yref="paper", x=0, xshift=-gap,
                           y=(domain[0] + domain[1]) / 2, xanchor="right", yanchor="middle",
                           align="right", showarrow=False, font_size=LABEL_SIZE)


def _grid(n: int, cols, *, titles, row_labels, col_labels, height_per_row: int,
          title: str | None, bottom: int = 10):
    """An empty grid of ``n`` image panels in ``cols`` columns with room for its labels.

    Per-image ``titles`` and ``col_labels`` (the first row's titles) are wrapped to a column's
    width at :data:`NARROW`; each gap between rows is as tall as the most lines a title of the
    next row has; ``row_labels`` sit in the left margin, right-aligned, beside their row.

    Returns:
        the figure (its height and margins set), and the number of columns.
    """
    cols = n if cols is None else checks.count(cols, "cols")
    rows = -(-n // cols)
    if titles is not None and col_labels is not None:
        raise ValueError("give titles (one per image) or col_labels (one per column), not both")
    if titles is not None and len(titles) > n:
        raise ValueError(f"titles has {len(titles)} entries for {n} images")
    if col_labels is not None:
        if len(col_labels) != cols:
            raise ValueError(f"col_labels needs one label per column ({cols}), got "
                             f"{len(col_labels)}")
        titles = list(col_labels)
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"row_labels needs one label per row ({rows}), got {len(row_labels)}")
    row_text, width = _wrapped_rows(row_labels or [], 18)
    left = 10 + width
    column_chars = (NARROW - left - 10) / cols / CHAR
    titles = [_wrap(t, column_chars) for t in (titles or [])] + [""] * n
    lines = [max(_n_lines(t) for t in titles[r * cols:(r + 1) * cols]) for r in range(rows)]
    top = 10 + (40 if title else 0) + LINE * lines[0]
    gap = max((6 + LINE * lines[r] for r in range(1, rows)), default=6)
    plot = rows * height_per_row + (rows - 1) * gap
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles[:rows * cols],
                        horizontal_spacing=min(0.01, 0.5 / cols),
                        vertical_spacing=gap / plot if rows > 1 else 0.0)
    for ann in fig.layout.annotations:
        ann.update(font_size=LABEL_SIZE)
    _place_row_labels(fig, row_text, cols, gap=8)
    fig.update_layout(height=top + plot + bottom, title=title,
                      margin=dict(l=left, r=10, t=top, b=bottom))
    return fig, cols


def image_grid(images, *, titles=None, row_labels=None, col_labels=None, cols: int | None = None,
               upscale: int = 1, height_per_row: int = 180, title: str | None = None,
               fmt: str = "png") -> go.Figure:
    """A grid of images in [-1, 1], each ``(3, H, W)``, filled row by row.

    Args:
        titles: one label per image (above it), or
        col_labels: one label per column (above the first row); and
        row_labels: one label per row (left of it). Labels are wrapped to fit the book's
            narrowest page (:data:`NARROW`), so none runs into its neighbour.
        cols: images per row (default: all in one row).
    """
    if isinstance(images, (str, bytes, dict)) or not hasattr(images, "__iter__"):
        raise ValueError(f"images must be a list or batch of (3, H, W) images, got {images!r}"[:120])
    images = list(images)
    if not images:
        raise ValueError("image_grid needs at least one image")
    fig, cols = _grid(len(images), cols, titles=titles, row_labels=row_labels,
                      col_labels=col_labels, height_per_row=height_per_row, title=title)
    for i, image in enumerate(images):
        fig.add_trace(_image_trace(image, upscale, fmt), row=i // cols + 1, col=i % cols + 1)
    _hide_axes(fig)
    return fig


def labelled_rows(rows, *, cols: int, upscale: int = 3, height_per_row: int = 130,
                  title: str | None = None, col_labels=None) -> go.Figure:
    """A grid of images whose rows are labelled: each ``(label, images)`` of ``rows`` fills one
    row of ``cols`` images, its label on the left."""
    grid, labels = [], []
    for label, images in rows:
        images = list(images)
        if len(images) != cols:
            raise ValueError(f"row {label!r} has {len(images)} images, not cols = {cols}")
        grid += images
        labels.append(label)
    return image_grid(grid, cols=cols, upscale=upscale, height_per_row=height_per_row,
                      row_labels=labels, col_labels=col_labels, title=title)


def image_slider(frames, labels, *, slider_prefix: str, titles=None, row_labels=None,
                 col_labels=None, upscale: int = 1, height_per_row: int = 240,
                 title: str | None = None, fmt: str = "png",
                 cols: int | None = None, active: int = 0) -> go.Figure:
    """Images that change with a slider; ``frames[k]`` is a list of images shown at step k.

    The slider toggles trace visibility (no animation), so it works in the static page. With
    ``cols`` the images of a step fill a grid row by row (default: one row); ``titles``,
    ``row_labels`` and ``col_labels`` label it as in :func:`image_grid`. The slider's step
    labels are hidden where they would not fit the narrowest page; its current value is shown.
    ``active`` is the step shown first.
    """
    frames = [list(f) for f in frames]
    active = checks.count(active, "active", lo=0)
    if active >= len(frames):
        raise ValueError(f"active must be a step in [0, {len(frames)}), got {active}")
    per = len(frames[0])
    if any(len(frame) != per for frame in frames):
        raise ValueError("every slider step must show the same number of images")
    fig, cols = _grid(per, cols, titles=titles, row_labels=row_labels, col_labels=col_labels,
                      height_per_row=height_per_row, title=title, bottom=90)
    for k, frame in enumerate(frames):
        for j, image in enumerate(frame):
            fig.add_trace(_image_trace(image, upscale, fmt, visible=(k == active)),
                          row=j // cols + 1, col=j % cols + 1)
    _hide_axes(fig)
    return _slider(fig, [str(label) for label in labels], slider_prefix,
                   [k for k in range(len(frames)) for _ in range(per)], active)


def _slider(fig: go.Figure, labels: list[str], prefix: str, step_of: list[int],
            active: int = 0) -> go.Figure:
    """A slider under the plot whose step ``k`` shows the traces with ``step_of[i] == k``. The
    step labels are drawn only when they fit side by side at :data:`NARROW` (else the current
    value alone says where the slider is)."""
    steps = [dict(method="restyle", label=label, args=[{"visible": [s == k for s in step_of]}])
             for k, label in enumerate(labels)]
    widest = max(len(label) for label in labels) * CHAR
    end = min(0.2, (widest / 2 + 4) / NARROW)  # room for the end labels, centred on their steps
    fits = widest < (1 - 2 * end) * NARROW / max(len(labels) - 1, 1)
    fig.update_layout(sliders=[dict(
        active=active, steps=steps, x=end, len=1 - 2 * end, pad=dict(t=30, b=10),
        font=dict(size=11, color="#444" if fits else "rgba(0,0,0,0)"),
        currentvalue=dict(prefix=prefix, font_size=LABEL_SIZE))])
    return fig


def _panels(rows: int, cols: int, titles, **kwargs) -> go.Figure:
    """``make_subplots`` with subplot titles wrapped to a panel's width at :data:`NARROW`."""
    chars = NARROW * 0.85 / cols / CHAR
    fig = make_subplots(rows=rows, cols=cols,
                        subplot_titles=[_wrap(t, chars) for t in titles] if titles else None,
                        **kwargs)
    for ann in fig.layout.annotations:
        ann.update(font_size=LABEL_SIZE)
    return fig


def _shared_title(fig: go.Figure, axis: str, text: str, *, row: int = 1, cols: int = 1) -> None:
    """One title for an axis the panels of a row share, on the middle panel (not one per
    panel, which run into each other)."""
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(title_text=text, row=row, col=(cols + 1) // 2 if axis == "x" else 1)


def _row_labels(fig: go.Figure, labels, cols: int) -> None:
    """A label left of each row of panels (in the left margin, which is widened for it)."""
    text, width = _wrapped_rows(labels, 14)
    _place_row_labels(fig, text, cols, gap=60)  # beyond the first column's axis title
    fig.update_layout(margin_l=80 + width)


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
    fig = _panels(1, len(titles), titles, shared_yaxes=True, horizontal_spacing=0.06)
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
        fig.update_xaxes(type="log", row=1, col=j + 1)
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
    _shared_title(fig, "x", "eigenvalue \u03bb of \u03a3", cols=len(titles))
    fig.update_yaxes(title_text="gain u\u1d40Wu", row=1, col=1)
    if len(labels) > 1:
        _slider(fig, [str(label) for label in labels], slider_prefix, step_of)
        fig.layout.sliders[0].pad.t = 70  # below the axis title
    return fig.update_layout(height=height, title=title, margin_t=40)


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
    fig = _panels(1, len(results), list(results), shared_yaxes=True, horizontal_spacing=0.04)
    scores = (("R\u00b2 held out", "r2", "#1f77b4"),
              ("best-scaled R\u00b2 held out", "r2_scaled", "#ff7f0e"),
              ("Pearson held out", "pearson", "#2ca02c"))
    for j, rows in enumerate(results.values()):
        for label, field, color in scores:  # horizontal bars: the maps' names read across
            fig.add_trace(go.Bar(y=[r.method for r in rows], orientation="h",
                                 x=np.maximum([getattr(r.held_out, field) for r in rows], -1),
                                 name=label, marker_color=color, legendgroup=label,
                                 showlegend=(j == 0)), row=1, col=j + 1)
    fig.update_xaxes(range=[-1.05, 1.05], dtick=0.5)
    fig.update_yaxes(autorange="reversed")
    _shared_title(fig, "x", "score (clipped at -1)", cols=len(results))
    n_maps = max(len(rows) for rows in results.values())
    return fig.update_layout(barmode="group", height=max(height, 60 + 36 * n_maps), title=title)


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
    fig = _panels(1, len(maps), titles)
    for j, c in enumerate(blocks):
        fig.add_trace(go.Heatmap(z=c, zmin=-1, zmax=1, colorscale="RdBu_r", showscale=(j == 0)),
                      row=1, col=j + 1)
    fig.update_yaxes(autorange="reversed")
    return fig.update_layout(height=height, title=title, margin=dict(t=70))


def pairing_figure(stats: dict, *, title: str | None = None) -> go.Figure:
    """Chapter 2's Fig. 2b: per model, violins of each image's Pearson r and RMS distance with
    its own noise, another noise of its set (re-paired) and an independent noise.

    Args:
        stats: ``{model: PairingStats}`` (:func:`lib.correlation.pairing_stats` with
            ``independent``).
    """
    names = list(stats)
    fig = _panels(2, len(names), names, vertical_spacing=0.12)
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
        fig.layout.annotations[j].text = _wrap(f"{name} (p = {st.p_value:.1e})",
                                               NARROW * 0.85 / len(names) / CHAR)
    fig.update_xaxes(showticklabels=False)  # the legend names the three violins
    fig.update_layout(height=620, violinmode="overlay", title=title)  # one violin per slot
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
    fig = _panels(len(names), 3, [f"noise pixel \u00d7 image pixel, first {rows_shown} rows",
                                  "mean over offsets", "against distance"]
                  + [""] * 3 * (len(names) - 1), horizontal_spacing=0.1, vertical_spacing=0.08)
    _row_labels(fig, names, 3)
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
        fig.update_yaxes(autorange="reversed", row=row, col=2)
    last = len(names)
    fig.update_yaxes(title_text="dy", row=1, col=2)
    fig.update_xaxes(title_text="dx", row=last, col=2)
    fig.update_xaxes(title_text="offset length (pixels)", row=last, col=3)
    fig.update_yaxes(title_text="noise pixel", row=1, col=1)
    fig.update_xaxes(title_text="image pixel", row=last, col=1)
    fig.update_layout(height=300 * len(names) + 60, title=title,
                      coloraxis=dict(colorscale="RdBu_r", cmid=0,
                                     colorbar=dict(title_text="r", thickness=12)))
    return fig


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
    fig = _panels(1, len(names), names, shared_yaxes=True)
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
    _shared_title(fig, "x", "network evaluations", cols=len(names))
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="median relative residual", row=1, col=1)
    return fig.update_layout(height=460, title=title)


#: the colours of chapter 5's losses
LOSS_COLORS = {"baseline": "#636efa", "forward": "#ef553b", "backward": "#00cc96"}


def annealing_traces(runs: dict, *, window: int = 25, title: str | None = None) -> go.Figure:
    """Chapter 5's search over its iterations, one line per loss: the best loss over the loss
    of the random start (mean over chains), the acceptance rate (moving mean over ``window``
    iterations) and the temperature.

    Args:
        runs: ``{loss: AnnealResult}`` (:func:`lib.annealing.anneal`), all of one length.
    """
    fig = _panels(1, 3, ["best loss / loss of the random start",
                         f"acceptance rate (moving mean of {window})", "temperature T<sub>k</sub>"],
                  horizontal_spacing=0.1)
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
    fig.add_trace(go.Scatter(x=it[1:], y=first.temperature, name="T<sub>k</sub>", line_color="gray",
                             showlegend=False), row=1, col=3)
    fig.update_yaxes(type="log", row=1, col=1)
    _shared_title(fig, "x", "iteration", cols=3)
    fig.update_layout(height=400, title=title)
    return fig


#: the colours of chapter 6's edit methods
EDIT_COLORS = {"sdedit": "#636efa", "sdedit-annealed": "#ef553b", "ddim-inversion": "#00cc96"}


def edit_tradeoff_figure(curves: dict, strengths, *, title: str | None = None) -> go.Figure:
    """Chapter 6's Fig. 10 as a trade-off: per model, the structure kept (SSIM to the input)
    against the edit achieved (top: the share judged as the target; bottom: the log-error
    margin), one line per method, each point sized by its strength (larger:
    stronger; the strength shows on hover).

    Args:
        curves: ``{(model, method): (SSIMs, shares, margins)}`` over ``strengths``
            (:func:`lib.findings.edit_rows`).
    """
    names = list(dict.fromkeys(k[0] for k in curves))
    fig = _panels(2, len(names), [*names, *[""] * len(names)], vertical_spacing=0.1)
    strengths = [float(s) for s in strengths]
    size = [6 + 10 * s / max(strengths) for s in strengths]  # a larger marker: a stronger edit
    text = [f"strength {s:g}" for s in strengths]
    for j, name in enumerate(names):
        for (n, method), (ss, rate, margin) in curves.items():
            if n != name:
                continue
            for row, y in ((1, rate), (2, margin)):
                fig.add_trace(go.Scatter(x=ss, y=y, mode="lines+markers", text=text,
                                         marker_size=size, name=method,
                                         line_color=EDIT_COLORS.get(method),
                                         showlegend=(j == 0 and row == 1)), row=row, col=j + 1)
    _shared_title(fig, "x", "structure kept: SSIM to the input", row=2, cols=len(names))
    fig.update_yaxes(title_text="share judged as the target", row=1, col=1)
    fig.update_yaxes(title_text="margin log(err<sub>src</sub> / err<sub>tgt</sub>)", row=2, col=1)
    fig.update_layout(height=660, title=title)
    return fig
