import numpy as np
import pytest
import torch

from lib.fixed_point import gaussian_picard_gain
from lib.hypothesis import (PairSet, decide_pairs, fixed_point_maps, inversion_map, reference_maps,
                            region_pairs)
from lib.models import GaussianModel
from lib.sampling import gaussian_ddim_inversion_gain


@pytest.fixture(scope="module")
def small_gaussian():
    """A Gaussian model on 8 x 8 crops (D = 192), and its eigendecomposition."""
    from lib.data import photo_crops

    X = photo_crops(4000, 8, split="train", seed=0).reshape(4000, -1).astype(np.float64)
    mean = X.mean(0)
    lam, U = np.linalg.eigh(np.cov(X, rowvar=False))
    lam, U = lam[::-1].copy(), U[:, ::-1].copy()
    model = GaussianModel.from_eigh(torch.as_tensor(mean).reshape(3, 8, 8), lam, U, (3, 8, 8),
                                    device="cpu", dtype=torch.float64)
    return model, (lam, U), mean


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LIB_CACHE_DIR", str(tmp_path / "cache"))


def test_region_pairs_hold_out_disjoint_regions():
    pairs = region_pairs("in distribution", "train", 60, 20, 8, seed=3)
    assert pairs.images.shape == (80, 3, 8, 8) and pairs.n_fit == 60
    fit, test = set(pairs.clusters[:60]), set(pairs.clusters[60:])
    assert not fit & test and all(c % 5 == 0 for c in test) and all(c % 5 for c in fit)
    head = pairs.head(40)
    assert head.n_fit == 30 and len(head.images) == 40
    assert torch.equal(head.images[:30], pairs.images[:30])
    assert torch.equal(head.images[30:], pairs.images[60:70])
    with pytest.raises(ValueError, match="fewer than"):
        pairs.head(81)


def test_fixed_point_maps_of_the_gaussian_model_are_its_closed_form(small_gaussian):
    model, eig, mean = small_gaussian
    pairs = region_pairs("in distribution", "train", 40, 10, 8, seed=1)
    maps = fixed_point_maps(model, pairs, 980, [3, 1, 7])
    assert sorted(maps) == [1, 3, 7]
    lam, U = eig
    abar = float(model.alphas_cumprod[980])
    X = pairs.X
    for k, fp in maps.items():
        W = (U * gaussian_picard_gain(np.clip(lam, 1e-12, None), abar, k)) @ U.T
        expected = (X - mean) @ W.T
        assert np.allclose(fp.Z, expected, rtol=1e-5, atol=1e-6), k  # float32 images
    again = fixed_point_maps(model, pairs, 980, [7])  # the cached run, reused
    assert np.array_equal(again[7].Z, maps[7].Z)


def test_inversion_map_of_the_gaussian_model_is_its_closed_form(small_gaussian):
    model, eig, mean = small_gaussian
    pairs = region_pairs("test photographs", "test", 30, 10, 8, seed=2)
    Z = inversion_map(model, pairs, 10)
    lam, U = eig
    keep = lam > 1e-3  # the closed form's gain along well-conditioned directions
    g = gaussian_ddim_inversion_gain(lam[keep], model.alphas_cumprod, 10)
    P, Q = (pairs.X - pairs.X.mean(0)) @ U[:, keep], (Z - Z.mean(0)) @ U[:, keep]
    measured = np.sum(P * Q, axis=0) / np.sum(P * P, axis=0)
    assert np.allclose(measured, g, rtol=1e-4)


def test_decide_pairs_splits_by_the_set_and_checks_sizes():
    eig = (np.geomspace(10, 0.1, 12), np.eye(12))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 12)) * np.sqrt(eig[0])
    pairs = PairSet("planted", torch.as_tensor(X.reshape(120, 3, 2, 2)),
                    np.repeat(np.arange(40), 3), 90)
    Z = X * eig[0] ** -0.5 + 0.05 * rng.standard_normal(X.shape)
    d = decide_pairs(pairs, Z, eig, lam_min=0.0, min_directions=3, k_linear=4, n_boot=50)
    assert d.columns.n_pairs == 90 and d.columns.n_clusters == 30
    assert d["whitening"].holds and d["zca"].holds
    with pytest.raises(ValueError, match="one noise per image"):
        decide_pairs(pairs, Z[:50], eig)


def test_reference_maps_hold_the_planted_maps_and_the_closed_forms(small_gaussian):
    model, (lam, U), _ = small_gaussian
    lam = np.clip(lam, 1e-6, None)
    maps = reference_maps((lam, U), model.alphas_cumprod, 980, [10, 20], 25, eps=0.03)
    assert {"zca", "pca", "cholesky", "Sigma^-1", "identity", "0.6 x zca", "zca, ridge 0.03",
            "Gaussian Picard, K = 10", "Gaussian Picard, K = 20",
            "Gaussian DDIM inversion, 25 steps"} == set(maps)
    g = gaussian_picard_gain(lam, float(model.alphas_cumprod[980]), 20)
    assert np.allclose(U.T @ maps["Gaussian Picard, K = 20"] @ U, np.diag(g), atol=1e-8)


def test_start_agreement_is_the_median_pearson_correlation_of_the_end_points():
    from lib.hypothesis import start_agreement

    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 40))
    assert start_agreement(A, 3 * A + 1) == pytest.approx(1.0)
    assert start_agreement(A, -A) == pytest.approx(-1.0)
    B = A.copy()
    B[:2] = -A[:2]  # two of five images disagree: the median is still full agreement
    assert start_agreement(A, B) == pytest.approx(1.0)
    assert abs(start_agreement(A, rng.standard_normal((5, 40)))) < 0.5
    with pytest.raises(ValueError, match="same images"):
        start_agreement(A, A[:3])
    bad = A.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="from_random"):
        start_agreement(A, bad)


def test_fixed_point_maps_and_region_pairs_name_bad_arguments(small_gaussian):
    model, _, _ = small_gaussian
    pairs = region_pairs("in distribution", "train", 8, 4, 8, seed=1)
    with pytest.raises(ValueError, match="at least one iteration count"):
        fixed_point_maps(model, pairs, 980, [])
    with pytest.raises(ValueError, match="K must be"):
        fixed_point_maps(model, pairs, 980, [2.5])
    with pytest.raises(ValueError, match="n_fit"):
        region_pairs("x", "train", 0, 4, 8)
    with pytest.raises(ValueError, match="holdout"):
        region_pairs("x", "train", 8, 4, 8, holdout=1)
    with pytest.raises(ValueError, match="split must be one of"):
        region_pairs("x", "valid", 8, 4, 8)


def test_sample_pairs_are_the_gaussian_models_ddim_samples_in_closed_form(small_gaussian):
    from lib.hypothesis import SAMPLES, sample_pairs
    from lib.sampling import gaussian_ddim_gain

    model, (lam, U), mean = small_gaussian
    pairs = sample_pairs(model, (3, 8, 8), 12, 4, 10, seed=5)
    assert pairs.name == SAMPLES and pairs.n_fit == 12 and pairs.images.shape == (16, 3, 8, 8)
    assert np.array_equal(pairs.clusters, np.arange(16))  # independent draws: one cluster each
    noise = torch.randn((16, 3, 8, 8), generator=torch.Generator().manual_seed(5)).double()
    g, abar_start = gaussian_ddim_gain(np.clip(lam, 0, None), model.alphas_cumprod, 10)
    a0 = float(model.alphas_cumprod[0]) ** 0.5
    m = U.T @ mean  # z_0 = a_0 mu + g (eps - a_T mu) along each eigenvector
    expected = a0 * m + g * (noise.reshape(16, -1).numpy() @ U - abar_start ** 0.5 * m)
    assert np.allclose(pairs.X @ U, expected, atol=2e-5)
    again = sample_pairs(model, (3, 8, 8), 12, 4, 10, seed=5)  # the cached samples
    assert torch.equal(again.images, pairs.images)
    assert not torch.equal(sample_pairs(model, (3, 8, 8), 12, 4, 10, seed=6).images, pairs.images)
    with pytest.raises(ValueError, match="shape"):
        sample_pairs(model, (3, 8), 12, 4, 10)
    with pytest.raises(ValueError, match="seed"):
        sample_pairs(model, (3, 8, 8), 12, 4, 10, seed=-1)


def test_chapter_maps_decide_each_models_own_set_up_to_k_fit(small_gaussian):
    from lib.hypothesis import SAMPLES, chapter_maps, sample_pairs

    model, _, _ = small_gaussian
    sets = {"in": region_pairs("in", "train", 12, 4, 8, seed=1)}
    own = {"g": sample_pairs(model, (3, 8, 8), 12, 4, 5)}
    maps, agreement = chapter_maps({"g": model}, sets, own=own, t_star=980, ks=(2, 4, 6), k_fit=4,
                                   t_values=(500,), n_t=8, n_agree=4, n_inv=8, inv_steps=5)
    assert {k for k in maps if k[1] == SAMPLES} == {("g", SAMPLES, 2), ("g", SAMPLES, 4)}
    assert {k for k in maps if k[1] == "in"} == {("g", "in", 2), ("g", "in", 4), ("g", "in", 6)}
    assert maps["g", SAMPLES, 4][0] is own["g"] and set(agreement) == {("g", 500), ("g", 980)}
    with pytest.raises(ValueError, match="unknown models"):
        chapter_maps({"g": model}, sets, own={"h": own["g"]}, t_star=980, ks=(2,), k_fit=2,
                     t_values=(), n_t=8, n_agree=4, n_inv=8, inv_steps=5)


def test_agreement_rows_give_the_gaussian_models_missing_share_in_closed_form(small_gaussian):
    from lib.hypothesis import agreement_rows

    model, (lam, _), _ = small_gaussian
    header, rows = agreement_rows({("a", 980): 0.5, ("g", 980): 0.9}, {"a": None, "g": model},
                                  [980], 20)
    assert header[:3] == ["t", "agreement a", "agreement g"] and len(header) == 4
    a2 = float(model.alphas_cumprod[980])
    c = (1 - a2) / (a2 * np.clip(lam, 1e-12, None) + 1 - a2)  # Picard's contraction per step
    assert rows[0][:3] == [980, 0.5, 0.9]
    assert rows[0][3] == pytest.approx(np.median(c ** 20), rel=1e-9)  # 1 - (1 - c^K)
    assert agreement_rows({("a", 980): 0.5}, {"a": None}, [980], 20) == (
        ["t", "agreement a"], [[980, 0.5]])


def _decision(marks: str, p: float = 0.5):
    from lib.linear_map import Estimate, Point

    e = Estimate(p, p - 0.1, p + 0.1)
    est = {"nonlinear_gain": e, "exponent": e, "level": [e], "alignment": [e]}
    return {point: Point(m == "✓", est, {}) for point, m in zip(("linear", "whitening", "zca"), marks)}


def test_calibration_rows_compare_each_map_with_its_expected_points():
    from lib.hypothesis import calibration_rows, marks

    assert marks(_decision("✓✗✓")) == "✓✗✓"
    cal = {"N = 300": {"zca": _decision("✓✓✓"), "identity": _decision("✓✓✗"),
                       "Gaussian DDIM inversion": _decision("✗✗✗")},
           "N = 75": {"zca": _decision("✓✗✗"), "identity": _decision("✓✗✗"),
                      "Gaussian DDIM inversion": _decision("✓✓✓")}}
    header, rows, wrong = calibration_rows(cal, {"zca": "✓✓✓"})
    assert header == ["planted map", "expected", "N = 300", "exponent p", "N = 75"]
    assert rows[0] == ["zca", "✓✓✓", "✓✓✓", "0.50 (0.40, 0.60)", "✓✗✗"]
    assert [r[1] for r in rows] == ["✓✓✓", "✓✗✗", "-"]  # the default; no answer for inversion
    assert wrong == {"N = 300": ["identity"], "N = 75": ["zca"]}


def test_setting_names_how_each_map_was_measured():
    from lib.hypothesis import setting

    kw = dict(first="in", k_fit=20, inv_steps=10, t_star=980,
              converged={("a", 980): True, ("a", 500): False})
    assert setting(("a", "in", 20), **kw) == ("in, K = 20", "yes")
    assert setting(("a", "in", 50), **kw) == ("in, K = 50", "-")
    assert setting(("a", "out", 20), **kw) == ("out, K = 20", "-")
    assert setting(("a", "t", 500), **kw) == ("t = 500, K = 20", "no")
    assert setting(("a", "inversion"), **kw) == ("DDIM inversion, 10 steps", "-")


def test_k_drift_and_gain_errors_on_the_gaussian_models_maps(small_gaussian):
    from lib.hypothesis import decide_maps, gaussian_gain_errors, k_drift

    model, eig, _ = small_gaussian
    pairs = region_pairs("in", "train", 60, 20, 8, seed=1)
    maps = {("g", "in", k): (pairs, fp.Z) for k, fp in fixed_point_maps(model, pairs, 980,
                                                                         [2, 5]).items()}
    maps["g", "out", 2] = maps["g", "in", 2]
    maps["g", "inversion"] = (pairs, inversion_map(model, pairs, 5))
    kw = dict(lam_min=0.0, min_directions=3, k_linear=4, n_boot=20)
    decisions = decide_maps(maps, {"g": eig}, **kw)
    drift = k_drift(decisions)
    assert set(drift) == {("g", "in")}  # "out" was decided at one K only
    k_lo, k_hi, d = drift["g", "in"]
    p = {k: decisions["g", "in", k]["whitening"].estimates["exponent"].value for k in (2, 5)}
    assert (k_lo, k_hi) == (2, 5) and d.value == pytest.approx(p[5] - p[2])
    errors = gaussian_gain_errors(decisions, "g", model.alphas_cumprod, t_star=980, inv_steps=5,
                                  first="in", lam_min=1e-3)
    assert set(errors) == {("g", "in", 2), ("g", "in", 5), ("g", "inversion")}
    assert max(errors.values()) < 1e-3  # the maps are exactly the closed forms
    off = decide_maps({("g", "in", 2): (pairs, 1.1 * maps["g", "in", 2][1])}, {"g": eig}, **kw)
    assert gaussian_gain_errors(off, "g", model.alphas_cumprod, t_star=980, inv_steps=5,
                                first="in", lam_min=1e-3)["g", "in", 2] == pytest.approx(0.1, rel=1e-3)


def test_reference_covariance_misses_the_cache_when_the_ridge_grid_changes(monkeypatch):
    from types import SimpleNamespace

    import lib.data
    from lib.hypothesis import reference_covariance

    def batches(n, size, *, split, seed, batch):  # seeded images, fast
        yield np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)

    monkeypatch.setattr(lib.data, "image_batches", batches)

    setup = SimpleNamespace(profile=SimpleNamespace(name="t", n_fit=300, n_test=100), size=4,
                            folder=None, latent=False, main=None)
    cov, (lam, U), errors = reference_covariance(setup, eps_grid=[1e-2, 1e-1])
    assert cov.shape == (48, 48) and len(errors) == 2 and np.allclose((U * lam) @ U.T, cov)
    _, _, fewer = reference_covariance(setup, eps_grid=[1e-2])  # a stale entry would give two errors
    assert len(fewer) == 1 and fewer[0] == pytest.approx(errors[0])
    _, _, changed = reference_covariance(setup, eps_grid=[1e-2, 1.0])
    assert changed[1] != pytest.approx(errors[1])
