"""The chapters' prose numbers (lib.findings), the figures the chapters moved into lib.plotting,
and the helpers they call: each checked against a direct computation or a closed form."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lib import findings, plotting
from lib.correlation import offset_profile, pairing_stats, pixel_cross_correlation
from lib.editing import class_preference
from lib.fixed_point import (fixed_point_starts, gaussian_fixed_point, relative_distance,
                             rounding_sensitivity)
from lib.models import EMBEDDED, GaussianModel, model_dir
from lib.prose import Words
from lib.sampling import gaussian_ddim_gain

NAN = float("nan")


def _gaussian(eigvals, seed=0, shape=(3, 2, 2)):
    rng = np.random.default_rng(seed)
    D = int(np.prod(shape))
    U, _ = np.linalg.qr(rng.standard_normal((D, D)))
    return GaussianModel(np.zeros(D), U @ np.diag(eigvals) @ U.T, shape)


def test_per_model_pads_missing_models_with_nan_and_a_dash():
    out = findings.per_model(["a", "b"], lambda n: {"x": len(n) + 0.5, "w": Words(n * 2)})
    assert out["m0_name"] == Words("a") and out["m1_w"] == Words("bb") and out["m0_x"] == 1.5
    assert out["m2_name"] == Words("-") and out["m2_w"] == Words("-") and np.isnan(out["m2_x"])
    assert len(out) == 9 and set(findings.per_model(["a"], lambda n: {}, slots=1)) == {"m0_name"}
    with pytest.raises(ValueError, match="at least one"):
        findings.per_model([], lambda n: {})


def test_gaussian_gains_match_the_closed_form_direction_by_direction():
    lam = np.geomspace(1e-4, 40.0, 12)
    model = _gaussian(lam)
    gains = findings.gaussian_gains(model, 25, "leading")
    got = np.sort(model.eigvals.double().numpy())
    g, abar = gaussian_ddim_gain(got, model.alphas_cumprod, 25, "leading")
    mid = (got > 1e-3) & (got < 1 / abar)
    assert gains["n_mid"] == mid.sum() and 0 < mid.sum() < 12
    assert gains["lam_cap"] == pytest.approx(1 / abar)
    assert gains["gain_top"] == pytest.approx(g[-1] / np.sqrt(got[-1]))
    assert gains["gain_lo"] == pytest.approx((g[mid] / np.sqrt(got[mid])).min())
    assert gains["lam_top"] == pytest.approx(40.0, rel=1e-9)
    with pytest.raises(ValueError, match="no eigenvalue"):
        findings.gaussian_gains(_gaussian(np.full(12, 1e-5)), 25, "leading")


def _pairing(seed, strength):
    g = torch.Generator().manual_seed(seed)
    noise, fresh = torch.randn(40, 3, 4, 4, generator=g), torch.randn(40, 3, 4, 4, generator=g)
    image = strength * noise + torch.randn(40, 3, 4, 4, generator=g)
    image_fresh = strength * fresh + torch.randn(40, 3, 4, 4, generator=g)
    return noise, fresh, image, image_fresh


def test_correlation_numbers_summarise_each_models_statistics():
    stats, profiles, nulls, avg = {}, {}, {}, {}
    for name, strength in (("a", 2.0), ("gaussian", 4.0)):
        noise, fresh, image, image_fresh = _pairing(1, strength)
        stats[name, "set"] = pairing_stats(noise, image, independent=fresh, n_perm=99, generator=0)
        stats[name, "independent"] = pairing_stats(fresh, image_fresh, n_perm=99, generator=0)
        profiles[name] = offset_profile(pixel_cross_correlation(fresh, image_fresh), 4, 4)
        nulls[name] = offset_profile(pixel_cross_correlation(fresh.roll(1, 0), image_fresh), 4, 4)
        avg[name] = SimpleNamespace(shared=0.5, control=0.01, seed_image=0.3)
    gains = findings.gaussian_gains(_gaussian(np.geomspace(1e-2, 10, 12)), 25, "leading")
    out = findings.correlation_numbers(["a", "gaussian"], stats, avg, profiles, nulls, n_set=40,
                                       n_fresh=40, steps=25, factor=2, n_blocks=12, gains=gains)
    r = {n: stats[n, "independent"].summary()["r paired"] for n in ("a", "gaussian")}
    assert out["m0_r_paired"] == r["a"] and out["m1_name"] == Words("gaussian")
    assert np.isnan(out["m2_r_paired"]) and out["p_floor"] == 1 / 100
    assert out["p_at_floor"] == Words("all")  # a strong pairing beats all 99 permutations
    assert out["explained"] == pytest.approx(100 * profiles["a"].at(0, 0) ** 2)
    lo, hi = sorted([r["gaussian"] - r["a"], profiles["gaussian"].at(0, 0) - profiles["a"].at(0, 0)])
    assert str(out["gauss_stronger"]) in (f"{lo:.2f}-{hi:.2f}", f"{lo:.2f}")
    assert out["n_mid"] == Words(f"{gains['n_mid']:,}") and out["gain_top"] == gains["gain_top"]
    without = findings.correlation_numbers(["a"], {k: v for k, v in stats.items() if k[0] == "a"},
                                           avg, profiles, nulls, n_set=40, n_fresh=40, steps=25,
                                           factor=2, n_blocks=12)
    assert without["gauss_stronger"] == Words("-") and np.isnan(without["gain_top"])
    rows = findings.pairing_rows(stats)
    assert [row[:2] for row in rows] == [list(k) for k in stats]
    assert all(len(row) == len(findings.PAIRING_HEADER) for row in rows)


@pytest.fixture(scope="module")
def study():
    """Chapter 3's convergence study in miniature: three solvers from two starts on a 12-D
    Gaussian model (exact fixed point known), and a model where nothing converges."""
    runs, starts = {}, {}
    z0 = torch.randn(4, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for name, lam in (("easy", np.linspace(0.5, 2.0, 12)), ("gaussian", np.geomspace(1e-3, 2, 12))):
        model = _gaussian(lam)
        starts[name] = torch.randn(z0.shape, dtype=torch.float64,
                                   generator=torch.Generator().manual_seed(1))
        for solver, kwargs in (("Picard", dict(method="picard")),
                               ("Anderson (m = 5)", dict(method="anderson", safeguard="blowup")),
                               ("L-BFGS", dict(method="minimize"))):
            for start, r in fixed_point_starts(model, z0, 300, 40, {"zero": "zero",
                                               "random": starts[name]}, **kwargs).items():
                runs[name, solver, start] = r
    return runs, starts, z0


def test_fixed_point_numbers_read_the_runs(study):
    runs, starts, z0 = study
    sizes = {n: dict(lo=0.9, hi=1.1, zero=0.5, random=1.2, end=2.0) for n in ("easy", "gaussian")}
    gap = {("Picard", "zero"): 0.25}
    moved = {(n, s): v for n in ("easy", "gaussian")
             for s, v in (("Picard", 1e-7 if n == "easy" else 1e-6), ("Anderson (m = 5)", 1e-3))}
    out = findings.fixed_point_numbers(
        ["easy", "gaussian"], runs, starts, tol=1e-3, sizes=sizes,
        zca_corr={"easy": (0.1, 0.2, 0.3), "gaussian": (0.4, 0.5, 0.6)},
        recon_err={"easy": (0.01, 0.5), "gaussian": (0.02, 0.6)}, gauss_gap=gap, moved=moved)
    easy = {k: r for k, r in runs.items() if k[0] == "easy"}
    assert out["m0_converged"] == sum(int(r.reached(1e-3).sum()) for r in easy.values()) > 0
    assert out["m0_lowest"] == min(float(np.median(r.lowest)) for r in easy.values())
    end = runs["easy", "Picard", "random"].noise
    assert out["m0_picard_ends_agree"] == pytest.approx(float(np.median(
        [np.corrcoef(a.ravel(), b.ravel())[0, 1]
         for a, b in zip(end.numpy(), runs["easy", "Picard", "zero"].noise.numpy())])))
    assert (out["m1_fig4_pca"], out["m1_recon_random"], out["m0_size_end"]) == (0.6, 0.6, 2.0)
    assert np.isnan(out["m2_lowest"]) and out["m2_lowest_by"] == Words("-")
    assert (out["moved_picard_lo"], out["moved_picard_hi"]) == (1e-7, 1e-6)
    best = min((float(np.median(r.residuals[-1])), s, i) for (n, s, i), r in runs.items()
               if n == "gaussian")
    assert out["gauss_best_residual"] == best[0]
    assert out["gauss_best_by"] == Words(f"{best[1]} from a {best[2]} start")
    rows = findings.solver_rows(runs, 1e-3)
    assert len(rows) == len(runs) and rows[0][7] == f"{int(runs[next(iter(runs))].reached(1e-3).sum())}/4"
    starts_table = findings.start_rows(runs, starts)
    assert len(starts_table) == len(runs) // 2 and {r[0] for r in starts_table} == {"easy", "gaussian"}


def test_relative_distance_and_the_rounding_sensitivity(study):
    runs, _, z0 = study
    exact = torch.tensor([[3.0, 4.0, float("inf")], [0.0, 2.0, float("nan")]])
    assert np.allclose(relative_distance(torch.tensor([[0.0, 4.0, 1.0], [0.0, 1.0, 1.0]]), exact),
                       [0.6, 0.5])
    with pytest.raises(ValueError, match="shape"):
        relative_distance(torch.zeros(2, 2), exact)
    model = _gaussian(np.linspace(0.5, 2.0, 12))
    exact = gaussian_fixed_point(model, z0, 300)
    assert np.median(relative_distance(runs["easy", "Picard", "zero"].noise, exact)) < 1e-2
    first = runs["easy", "Picard", "zero"].noise
    shift = rounding_sensitivity(model, z0, 300, 40, first, init="zero", method="picard")
    assert 0 < shift < 1e-4  # a contraction keeps a 1e-6 perturbation small, but it is there


def test_input_sizes_of_a_known_start():
    model = _gaussian(np.linspace(0.5, 2.0, 12))
    z0 = torch.zeros(3, 3, 2, 2)
    sizes = findings.input_sizes(model, z0, torch.zeros_like(z0), 980)
    s = float(np.sqrt(1 - float(model.alphas_cumprod[980])))
    assert sizes["zero"] == 0.0 and sizes["end"] == 0.0  # a zero image and a zero noise
    assert sizes["lo"] < s < sizes["hi"] and abs(sizes["random"] - s) < 0.6 * s


def test_annealing_numbers_from_a_table_and_searches():
    history = lambda acc: SimpleNamespace(acceptance=np.asarray(acc))  # noqa: E731
    runs = {"baseline": SimpleNamespace(history=history([0.5] * 200), seconds=2.0),
            "forward": SimpleNamespace(history=history([0.9] * 100 + [0.1] * 100), seconds=5.0),
            "backward": SimpleNamespace(history=history([0.8] * 200), seconds=3.0)}
    rows = [["random", 1.0, 0.1, 0.05, 0.1, 9.0, 1.0, 0.5, 1.0, None, None]]
    rows += [[n, 0.5, 0.6, 0.3, 0.2, 12.0, 0.99, 1e-5, 1.0, float(r.history.acceptance[:100].mean()),
              float(r.history.acceptance[-100:].mean())] for n, r in runs.items()]
    out = findings.annealing_numbers(rows, runs, np.array([0.2, 0.4, 0.9]))
    assert out["preview_median"] == 0.4 and out["n_preview"] == 3
    assert np.isnan(out["random_acc_first"]) and out["forward_acc_last"] == pytest.approx(0.1)
    assert out["random_ks_text"] == Words("= 0.5") and out["forward_ks_text"] == Words("< 0.001")
    assert out["acc_first"] == Words("0.5-0.9") and out["acc_last_others"] == Words("0.50-0.80")
    assert out["seconds_forward"] == 5.0 and out["seconds_others"] == Words("2.0-3.0")


def test_variation_and_edit_rows_and_the_applications_numbers():
    g = torch.Generator().manual_seed(0)
    targets = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    tiled = targets.repeat_interleave(2, 0)
    near = tiled + 0.05 * torch.randn(tiled.shape, generator=g)
    far = torch.rand(tiled.shape, generator=g) * 2 - 1
    images = {(s, m): (near if s in ("annealed", f"inversion by {m}") else far)
              for s in ("annealed", "random", "inversion by a", "inversion by b") for m in "ab"}
    sets = ["annealed", "random", "inversion by a", "inversion by b"]
    rows, per_target, variation = findings.variation_rows(images, sets, ["a", "b"], tiled, 2)
    assert len(rows) == 8 and per_target["annealed", "a"].shape == (2,)
    assert variation["annealed", "a"]["ssim"] > 0.8 > variation["random", "a"]["ssim"]
    strengths = [0.5, 1.0]
    errs = np.array([[1.0, 2.0], [2.0, 1.0]])  # image 0 reads as "cat", image 1 as "dog"
    prefs = {(m, k): [class_preference(errs, ("cat", "dog"), "cat", "dog")] * 2
             for m in "ab" for k in ("sdedit", "sdedit-annealed", "ddim-inversion")}
    edited = {k: torch.stack([near[:2], far[:2]]) for k in prefs}
    erows, curves, table = findings.edit_rows(edited, prefs, near[:2], strengths, {"a": 25, "b": 4},
                                              ["a", "b"], ("sdedit", "sdedit-annealed",
                                                           "ddim-inversion"))
    assert len(erows) == 12 and table["b", "sdedit", 0.5]["effective"] == 0.5
    assert table["a", "sdedit", 0.5]["effective"] == 13 / 25  # 12.5 steps round up
    assert curves["a", "sdedit"][1] == [0.5, 0.5] and table["a", "sdedit", 0.5]["ssim"] > 0.8
    out = findings.applications_numbers(["a", "b"], per_target, variation, table, [0.5, 1.0],
                                        strengths)
    assert out["m0_ssim_annealed"] > out["m0_ssim_random"] and out["m1_higher"] == 2
    assert (out["s1"], out["s2"]) == (1.0, 0.5) and out["judge"] == Words("50%-100%")
    assert out["plain_s2_share"] == Words("50") and "m2_name" not in out


def test_appendix_numbers_from_the_committed_cards():
    cards = {n: json.loads((model_dir(n) / "card.json").read_text()) for n in EMBEDDED}
    out = findings.appendix_numbers(cards)
    minutes = [c["train_seconds"] / 60 for c in cards.values()]
    assert str(out["train_minutes"]) in (f"{min(minutes):.0f}-{max(minutes):.0f}", f"{min(minutes):.0f}")
    assert all(name in str(out["slopes"]) for name in cards)


def test_the_moved_figures_draw_every_model():
    noise, fresh, image, image_fresh = _pairing(3, 2.0)
    st = {n: pairing_stats(noise, image, independent=fresh, n_perm=9, generator=0) for n in "ab"}
    fig = plotting.pairing_figure(st, title="t")
    assert len(fig.data) == 2 * 2 * 3 and fig.layout.annotations[1].text.startswith("b (p = ")
    cross = {n: pixel_cross_correlation(fresh, image_fresh) for n in "ab"}
    prof = {n: offset_profile(c, 4, 4) for n, c in cross.items()}
    fig = plotting.cross_correlation_figure(cross, prof, prof, 4, offsets=2)
    assert len(fig.data) == 2 * 4 and fig.layout.height == 300 * 2 + 60
    fig = plotting.labelled_rows([("row one", torch.zeros(3, 3, 4, 4)), ("row two", torch.zeros(3, 3, 4, 4))],
                                 cols=3)
    assert [a.text for a in fig.layout.annotations] == ["row one", "row two"]
    assert all(a.xanchor == "right" and a.x == 0 for a in fig.layout.annotations)  # left of the rows
    curves = {("a", "sdedit"): ([0.9, 0.5], [0.0, 1.0], [0.1, 0.2]),
              ("b", "sdedit"): ([0.8, 0.4], [0.5, 1.0], [0.1, 0.3])}
    fig = plotting.edit_tradeoff_figure(curves, [0.5, 1.0])
    assert len(fig.data) == 4 and list(fig.data[0].text) == ["strength 0.5", "strength 1"]
    assert list(fig.data[0].marker.size) == [11.0, 16.0]  # a larger marker: a larger strength


def test_residual_and_annealing_traces_figures(study):
    runs = study[0]
    fig = plotting.residual_figure(runs, 1e-3)
    assert len(fig.data) == len(runs) and fig.layout.annotations[0].text == "easy"
    assert {d.line.dash for d in fig.data} == {"solid", "dot"}
    h = SimpleNamespace(best_loss=np.ones((51, 2, 1)), loss=np.ones((51, 2, 1)),
                        acceptance=np.full(50, 0.5), temperature=np.linspace(1e-3, 0, 50))
    fig = plotting.annealing_traces({"forward": SimpleNamespace(history=h)}, window=5)
    assert len(fig.data) == 3 and len(fig.data[1].y) == 46
