import numpy as np
import pytest

from lib.plotting import image_slider
from lib.prose import format_table, significant


def test_image_slider_grid_and_visibility():
    frames = [[np.full((3, 4, 4), v) for v in (k / 10, -k / 10, 0.0, 0.5)] for k in range(3)]
    fig = image_slider(frames, ["a", "b", "c"], slider_prefix="k = ", cols=2)
    assert len(fig.data) == 12
    # step k shows exactly its own four images
    for k, step in enumerate(fig.layout.sliders[0].steps):
        vis = step.args[0]["visible"]
        assert vis == [k * 4 <= i < (k + 1) * 4 for i in range(12)]
    # four images on a 2 x 2 grid: four distinct axes, two rows of domains
    axes = {(t.xaxis, t.yaxis) for t in fig.data[:4]}
    assert len(axes) == 4
    assert [bool(t.visible) for t in fig.data[:4]] == [True] * 4 and not any(t.visible for t in fig.data[4:])
    one_row = image_slider(frames, ["a", "b", "c"], slider_prefix="k = ")
    assert {t.yaxis for t in one_row.data} == {"y", "y2", "y3", "y4"}
    with pytest.raises(ValueError, match="same number"):
        image_slider([frames[0], frames[1][:3]], ["a", "b"], slider_prefix="")


def test_format_table():
    text = format_table(["name", "r", "n"], [["forward", 0.12345, 8], ["baseline", -1.0, None]], digits=2)
    lines = text.splitlines()
    assert lines[0] == "    name |     r | n"
    assert lines[2] == " forward |  0.12 | 8"
    assert lines[3] == "baseline | -1.00 | -"
    assert len({len(line) for line in lines}) == 1
    assert "nan" in format_table(["x"], [[float("nan")]])
    with pytest.raises(ValueError, match="columns"):
        format_table(["a", "b"], [[1]])


@pytest.mark.parametrize("x, digits, floor, text", [
    (2552.4, 3, None, "2,550"), (24_210.0, 3, None, "24,200"), (1.5334, 3, None, "1.53"),
    (1.5336, 4, None, "1.534"), (-3.2, 3, None, "-3.20"), (0.012574, 3, None, "0.0126"),
    (0.0012, 2, None, "0.0012"), (0.00099, 2, None, "9.9e-04"), (9.87e-5, 2, None, "9.9e-05"), (999.6, 3, None, "1,000"),
    (4.1e-16, 4, 1e-9, "< 1e-09"), (1.108e-8, 4, 1e-9, "1.108e-08"), (0.0, 3, None, "0"),
    (float("nan"), 3, None, "nan"), (float("-inf"), 3, 1e-9, "-inf"),
])
def test_significant_digits(x, digits, floor, text):
    assert significant(x, digits, floor=floor) == text


def test_significant_rejects_no_digits():
    with pytest.raises(ValueError, match="digits"):
        significant(1.0, 0)


def _gains(lam, gain, spread=0.1):
    from lib.linear_map import EigenGains

    return EigenGains(lam=lam, gain=gain, low=gain * (1 - spread), high=gain * (1 + spread),
                      boot=np.empty((0, len(lam))), offdiag_share=0.0, offdiag_low=0.0,
                      offdiag_high=0.0, k=1, n_pairs=10, level=0.95)


def test_gains_figure_slider_shows_one_step_at_a_time_and_only_measured_directions():
    from lib.plotting import gains_figure

    lam = np.geomspace(10, 1e-3, 40)
    steps = {f"{k}": (_gains(lam, k * lam ** -0.5), {"ZCA": lam ** -0.5, "flat": np.ones(40)})
             for k in (1, 2, 3)}
    fig = gains_figure({"a": steps, "b": steps}, lam_min=0.01, slider_prefix="K = ")
    assert len(fig.data) == 2 * 3 * 3  # panels x steps x (measured + two curves)
    shown = [t for t in fig.data if t.visible]
    assert len(shown) == 2 * 3 and all(min(t.x) > 0.01 for t in fig.data)
    slider = fig.layout.sliders[0]
    assert [s.label for s in slider.steps] == ["1", "2", "3"]
    for k, step in enumerate(slider.steps):
        visible = step.args[0]["visible"]
        measured = [t for t, v in zip(fig.data, visible) if v and t.mode == "markers"]
        assert len(measured) == 2 and np.allclose(measured[0].y * measured[0].x ** 0.5, k + 1)
    # the error bars are the intervals, never reaching zero on a log axis
    bar = fig.data[0].error_y
    assert np.allclose(bar.array, 0.1 * fig.data[0].y) and np.all(np.asarray(bar.arrayminus) < fig.data[0].y)
    with pytest.raises(ValueError, match="same step labels"):
        gains_figure({"a": steps, "b": {"1": steps["1"]}}, lam_min=0.01)
    assert not gains_figure({"a": {"1": steps["1"]}}, lam_min=0.01).layout.sliders  # one step


def test_binned_gains_are_medians_per_quarter_decade():
    from lib.plotting import binned_gains

    lam = np.geomspace(1.0, 0.01, 81)  # 40 per decade: 10 per quarter decade
    x, y = binned_gains(_gains(lam, lam ** -0.5), lam_min=0.005)
    assert len(x) == 8 and np.all(np.diff(np.log10(x)) > 0.2)
    assert np.allclose(y, x ** -0.5, rtol=0.15)  # the median of a monotone law ~ the law at the bin centre


def test_words_paste_exactly_as_written():
    from IPython.core.formatters import PlainTextFormatter
    from myst_nb.core.variables import format_plain_text

    from lib.prose import Words

    for text in ("tiny-a", "0.80", "0.96-0.99", "8 of 8"):
        assert format_plain_text(PlainTextFormatter()(Words(text)), "") == text
    assert format_plain_text(PlainTextFormatter()("0.80"), "") == "0.80"  # a str too
    assert format_plain_text("0.80", "") == "0.8"  # what a bare number's text would lose
    assert str(Words("tiny-a")) == "tiny-a"


def test_format_table_digits_per_column():
    text = format_table(["psnr", "ssim"], [[32.01749, 0.87123]], digits={"psnr": 1})
    assert text.splitlines()[-1].split(" | ") == ["32.0", "0.871"]  # the others keep 3
    with pytest.raises(ValueError, match="not in the header"):
        format_table(["psnr"], [[1.0]], digits={"PSNR": 1})


def test_span_reads_a_range_or_one_number():
    from lib.prose import span

    assert str(span([0.961, 0.99, 0.97])) == "0.96-0.99"
    assert str(span([0.441, 0.444])) == "0.44"  # both ends round alike
    assert str(span([-0.012, 0.02])) == "-0.01 to 0.02"  # never a minus read as a dash
    assert str(span([180.4, 203.0], ".0f")) == "180-203"
    assert str(span([0.08, 0.1], ".0%")) == "8%-10%"
    assert str(span([float("nan"), 0.5])) == "0.50"
    assert str(span([])) == "-"


def test_grid_labels_are_wrapped_to_fit_and_rows_are_labelled_on_the_left():
    import numpy as np

    from lib.plotting import CHAR, NARROW, image_grid

    long = "a label much longer than one column of twelve could ever hold"
    fig = image_grid([np.zeros((3, 4, 4))] * 24, cols=12, titles=[long] + [""] * 23,
                     row_labels=["training crops", "held-out crops"])
    first = fig.layout.annotations[0].text
    lines = first.split("<br>")
    assert len(lines) > 1 and max(map(len, lines)) * CHAR * 12 <= NARROW  # wrapped to a column
    rows = [a for a in fig.layout.annotations if a.xanchor == "right"]
    assert [a.text for a in rows] == ["training crops", "held-out crops"]
    assert rows[0].y > rows[1].y  # beside their rows, top to bottom
    assert fig.layout.margin.l >= len("training crops") * CHAR  # room made on the left
    with pytest.raises(ValueError, match="one label per row"):
        image_grid([np.zeros((3, 4, 4))] * 4, cols=2, row_labels=["only one"])
    with pytest.raises(ValueError, match="not both"):
        image_grid([np.zeros((3, 4, 4))] * 4, cols=2, titles=["a"] * 4, col_labels=["b"] * 2)


def test_table_html_and_text_carry_the_same_rounded_cells():
    from lib.prose import Table, format_table

    rows = [["zca", 0.12345, 3, None], ["pca-cor", 10.5, 12, "1.2e-05"]]
    t = Table(["kind", "error", "n", "note"], rows, digits={"error": 2}, caption="a caption")
    assert repr(t) == "a caption\n" + format_table(["kind", "error", "n", "note"], rows, digits={"error": 2})
    assert t.cells == [["zca", "0.12", "3", "-"], ["pca-cor", "10.50", "12", "1.2e-05"]]
    html = t._repr_html_()
    assert html.count("<tr>") == 3 and "<caption>a caption</caption>" in html
    assert '<td class="num">10.50</td>' in html and '<td class="text">pca-cor</td>' in html
    assert '<th class="num">error</th>' in html and '<th class="text">kind</th>' in html


def test_map_scores_figure_draws_each_score_per_model_clipped_at_minus_one():
    from types import SimpleNamespace

    from lib.plotting import map_scores_figure

    def row(method, r2):
        return SimpleNamespace(method=method, held_out=SimpleNamespace(r2=r2, r2_scaled=0.5,
                                                                       pearson=0.7))

    fig = map_scores_figure({"a": [row("diff", 0.3), row("zca", -7.0)], "b": [row("diff", 0.1)]})
    assert len(fig.data) == 6  # three scores for each of two models
    assert [tr.name for tr in fig.data[:3]] == ["R² held out", "best-scaled R² held out",
                                                "Pearson held out"]
    assert list(fig.data[0].x) == [0.3, -1.0] and list(fig.data[0].y) == ["diff", "zca"]  # bars across
    assert [tr.showlegend for tr in fig.data] == [True] * 3 + [False] * 3


def test_mapped_covariance_figure_of_a_whitening_is_the_identity_at_variance_one():
    from lib.plotting import mapped_covariance_figure

    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 6))
    X = rng.standard_normal((4000, 6)) @ A.T
    lam, U = np.linalg.eigh(np.cov(X, rowvar=False))
    zca = (U * lam ** -0.5) @ U.T
    fig = mapped_covariance_figure(X, {"zca": zca, "twice": 2 * zca}, block=4)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["zca<br>mean variance 1", "twice<br>mean variance 4"]
    assert np.allclose(np.array(fig.data[0].z), np.eye(4), atol=1e-9)
    assert np.allclose(np.array(fig.data[1].z), np.eye(4), atol=1e-9)  # divided by its variance


def test_house_style_labels_log_axes_by_decades_and_straightens_short_ones():
    import plotly.graph_objects as go

    from lib.plotting import house_style

    wide = go.Figure(go.Scatter(x=[1, 2], y=[1e-3, 10.0])).update_yaxes(type="log")
    short = go.Figure(go.Scatter(x=[1, 2], y=[0.8, 1.1])).update_yaxes(type="log")
    assert house_style(wide).layout.yaxis.dtick == 1 and wide.layout.yaxis.type == "log"
    assert house_style(short).layout.yaxis.type == "linear"
    legend = go.Figure([go.Scatter(x=[1], y=[1], name="a"), go.Scatter(x=[1], y=[2], name="b")])
    house_style(legend)
    assert legend.layout.legend.yref == "container" and legend.layout.legend.orientation == "h"
    top = legend.layout.margin.t
    assert house_style(legend).layout.margin.t == top  # applied once
