import numpy as np
import pytest
import torch

from lib.correlation import (offset_profile, pairing_stats, pixel_cross_correlation,
                             progressive_averages)
from lib.metrics import pearson


def _noise(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_progressive_averages_are_running_means():
    x = _noise(10, 3, 4, 4)
    avg = progressive_averages(x, [1, 3, 10])
    assert avg.shape == (3, 3, 4, 4)
    assert torch.allclose(avg[0], x[0]) and torch.allclose(avg[1], x[:3].mean(0), atol=1e-6)
    assert torch.allclose(avg[2], x.mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="counts"):
        progressive_averages(x, [0, 11])


def test_pairing_stats_known_correlation_and_significance():
    N, sigma = 300, 2.0
    noise = _noise(N, 3, 8, 8, seed=1)
    images = 0.5 * (noise + sigma * _noise(N, 3, 8, 8, seed=2)) - 0.3  # r = 1 / sqrt(1 + sigma^2)
    other = _noise(N, 3, 8, 8, seed=3)
    s = pairing_stats(noise, images, independent=other, n_perm=200, generator=0)
    expected = 1 / np.sqrt(1 + sigma**2)
    assert abs(s.paired_r.mean() - expected) < 0.02
    assert np.allclose(s.paired_r, pearson(noise, images))  # the Gram matrix's diagonal
    assert abs(s.repaired_r.mean()) < 0.02 and abs(s.independent_r.mean()) < 0.02
    assert s.p_value == pytest.approx(1 / 201) and s.z_score > 20
    assert s.paired_l2.mean() < s.repaired_l2.mean()
    direct = np.sqrt(((noise - images) ** 2).reshape(N, -1).mean(1).numpy())
    assert np.allclose(s.paired_l2, direct)
    assert s.summary()["r paired"] == round(float(s.paired_r.mean()), 3)


def test_pairing_stats_under_the_null_is_not_significant():
    N = 200
    s = pairing_stats(_noise(N, 1, 8, 8, seed=4), _noise(N, 1, 8, 8, seed=5), n_perm=500, generator=1)
    assert s.p_value > 0.01 and abs(s.z_score) < 3
    assert np.isnan(s.independent_r).all() and s.summary()["r independent"] is None
    with pytest.raises(ValueError, match="pair up"):
        pairing_stats(_noise(5, 1, 4, 4), _noise(4, 1, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        pairing_stats(_noise(5, 1, 4, 4), torch.full((5, 1, 4, 4), float("nan")))


def test_the_displayed_re_pairing_never_keeps_an_image_with_its_own_noise():
    noise = _noise(50, 1, 4, 4, seed=8)
    s = pairing_stats(noise, noise, n_perm=10, generator=2)  # image i equals noise i
    assert np.allclose(s.paired_r, 1.0) and s.repaired_r.max() < 0.9


def test_the_p_value_is_calibrated_under_the_null():
    rejections = 0
    for seed in range(200):
        a, b = _noise(12, 1, 3, 3, seed=1000 + seed), _noise(12, 1, 3, 3, seed=5000 + seed)
        rejections += pairing_stats(a, b, n_perm=99, generator=seed).p_value <= 0.05
    assert 2 <= rejections <= 22  # 200 tests at level 0.05: 10 expected, sd 3.1


def test_cross_correlation_of_an_identity_map_is_the_identity():
    N, C, H, W = 2000, 3, 6, 6
    noise = _noise(N, C, H, W, seed=6)
    cross = pixel_cross_correlation(noise, 2 * noise + 1)
    assert cross.shape == (H * W, H * W)
    assert np.allclose(np.diag(cross), 1.0)
    off = cross[~np.eye(H * W, dtype=bool)]
    assert np.abs(off).max() < 5 / np.sqrt(N)
    prof = offset_profile(cross, H, W)
    assert prof.at(0, 0) == pytest.approx(1.0) and abs(prof.at(1, 0)) < 0.05
    assert prof.radius[0] == 0 and prof.radial[0] == pytest.approx(1.0)


def test_offset_profile_finds_a_shift():
    N, C, H, W = 1000, 2, 5, 7
    noise = _noise(N, C, H, W, seed=7)
    image = torch.roll(noise, shifts=(1, 2), dims=(2, 3))  # image(y, x) = noise(y - 1, x - 2)
    prof = offset_profile(pixel_cross_correlation(noise, image), H, W)
    assert prof.mean.shape == (2 * H - 1, 2 * W - 1)
    assert prof.at(1, 2) == pytest.approx(1.0)  # every noise pixel reappears one down, two right
    assert prof.at(1 - H, 2 - W) == pytest.approx(1.0)  # the wrapped-around pairs
    assert abs(prof.at(0, 0)) < 0.05 and abs(prof.at(-1, -2)) < 0.05
    # the ring at distance 2 holds (0, +-2), (+-2, 0), (+-1, +-2), (+-2, +-1); only (1, 2) correlates,
    # and the radial mean weighs each offset by its number of pixel pairs
    ring = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if round(np.hypot(dy, dx)) == 2]
    count = {o: prof.count[o[0] + H - 1, o[1] + W - 1] for o in ring}
    expected = count[(1, 2)] / sum(count.values())
    assert prof.radial[list(prof.radius).index(2)] == pytest.approx(expected, abs=0.02)
    assert prof.count[H - 1, W - 1] == H * W  # offset (0, 0): every pixel
    with pytest.raises(ValueError, match="outside"):
        prof.at(H, 0)
    with pytest.raises(ValueError, match="cross must be"):
        offset_profile(np.zeros((5, 5)), H, W)


def test_set_average_correlation_sees_a_shared_component_and_nothing_else():
    from lib.correlation import set_average_correlation

    g = torch.Generator().manual_seed(0)
    shape = (1, 3, 8, 8)
    shared, control = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    layout = torch.randn(shape, generator=g)  # what every image of the model has in common
    fresh = layout + torch.randn(400, *shape[1:], generator=g)
    kept = layout + 0.5 * shared + torch.randn(400, *shape[1:], generator=g)  # keeps the component
    seed = layout + 0.5 * shared + torch.randn(shape, generator=g) * 0.1
    c = set_average_correlation(kept, fresh, seed, shared, control)
    # averages of 400 images leave noise of 1/sqrt(200) beside a component of size 0.5: r ~ 0.9
    assert c.shared > 0.85 and c.seed_image > 0.85 and abs(c.control) < 0.3
    lost = layout + torch.randn(400, *shape[1:], generator=g)  # the component did not survive
    c0 = set_average_correlation(lost, fresh, seed, shared, control)
    assert abs(c0.shared) < 0.3 and abs(c0.control) < 0.3 and abs(c0.seed_image) < 0.3
    with pytest.raises(ValueError, match="one shape"):
        set_average_correlation(kept, fresh[:, :, :4], seed, shared, control)


def test_offset_profile_summaries_known_answers():
    H = W = 5
    cross = np.zeros((H * W, H * W))
    y, x = np.divmod(np.arange(H * W), W)
    d = np.hypot(y[None, :] - y[:, None], x[None, :] - x[:, None])
    cross[d == 0], cross[d == 1] = 0.8, 0.2  # the same pixel, then the four neighbours
    far_value = 0.01
    cross[d >= 3.5] = far_value
    prof = offset_profile(cross, H, W)
    assert prof.at(0, 0) == pytest.approx(0.8) and prof.neighbours() == pytest.approx(0.2)
    assert prof.peak() == (0, 0) and prof.far(4) == pytest.approx(far_value)
    assert prof.ring(0) == pytest.approx(0.8)
    shifted = np.roll(cross.reshape(H * W, H, W), 1, axis=2).reshape(H * W, H * W)  # peak at dx = 1
    assert offset_profile(shifted, H, W).peak()[1] == 1
    with pytest.raises(ValueError, match="no offset at distance"):
        prof.ring(99)
    assert np.isnan(prof.far(99))
