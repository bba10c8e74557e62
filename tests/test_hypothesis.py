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
    with pytest.raises(ValueError, match="unknown split"):
        region_pairs("x", "valid", 8, 4, 8)
