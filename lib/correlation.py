"""How much of a DDIM noise survives in its image (Sec. 1, Fig. 2).

Deterministic DDIM maps each noise to one image. These functions measure the relation between
the two: progressive averages over noises that share a low-frequency component (Fig. 2a), the
distance and Pearson correlation of each noise with its own image against re-paired and
independent noises, with a permutation test (Fig. 2b), and the correlation between every noise
pixel and every image pixel over many samples, with its mean against the pixel offset (Fig. 2c).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lib import checks
from lib.metrics import pearson, ring_average, standardize

__all__ = ["progressive_averages", "SetAverageCorrelation", "set_average_correlation",
           "PairingStats", "pairing_stats",
           "pixel_cross_correlation", "OffsetProfile", "offset_profile"]


def _check4(x, name: str) -> torch.Tensor:
    return checks.batch(x, name, layout="(N, C, H, W)").detach().cpu().double()


def _as_rows(x, name: str) -> np.ndarray:
    x = _check4(x, name)
    return x.reshape(len(x), -1).numpy()  # (N, D)


def progressive_averages(x, counts) -> torch.Tensor:
    """Means of the first ``k`` samples for each ``k`` in ``counts`` (Fig. 2a's columns).

    Shapes:
        x ``(N, C, H, W)``; returns ``(len(counts), C, H, W)``.
    """
    x = _check4(x, "x")
    counts = checks.integers(counts, "counts", lo=1, empty=False)
    if max(counts) > len(x):
        raise ValueError(f"counts must lie in [1, {len(x)}], got {counts}")
    running = torch.cumsum(x, 0)
    return torch.stack([running[k - 1] / k for k in counts]).float()


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point (uniform, by rejection)."""
    while True:
        p = rng.permutation(n)
        if not (p == np.arange(n)).any():
            return p


@dataclass(frozen=True)
class SetAverageCorrelation:
    """Whether a shared noise component shows through the average of a set's images (Fig. 2a).

    Attributes:
        shared: Pearson r of (set images' average - independent images' average) with the
            shared component; the subtraction removes what every image of the model has in
            common, such as a typical layout.
        control: the same with an unrelated noise's component (about zero).
        seed_image: r of (set average - average of the first half of the independent images)
            with (the seed's own image - average of the second half), so that the two sides
            share no term.
    """

    shared: float
    control: float
    seed_image: float


def set_average_correlation(set_images, fresh_images, seed_image, shared,
                            control) -> SetAverageCorrelation:
    """How much of a shared component the average image of a set of noises keeps.

    Args:
        set_images: ``(N, C, H, W)`` images of noises that share ``shared``.
        fresh_images: ``(M, C, H, W)`` images of independent noises (M >= 2).
        seed_image: ``(1, C, H, W)`` the image of the seed noise the set shares ``shared`` with.
        shared, control: ``(1, C, H, W)`` the shared component and an unrelated one.
    """
    S, F = _check4(set_images, "set_images"), _check4(fresh_images, "fresh_images")
    seed = _check4(seed_image, "seed_image")
    ref, ctrl = _check4(shared, "shared"), _check4(control, "control")
    if len(F) < 2 or not (S.shape[1:] == F.shape[1:] == seed.shape[1:] == ref.shape[1:] == ctrl.shape[1:]):
        raise ValueError("need images of one shape and at least 2 independent images; got "
                         f"{tuple(S.shape)}, {tuple(F.shape)}, {tuple(seed.shape)}, "
                         f"{tuple(ref.shape)}, {tuple(ctrl.shape)}")
    half = len(F) // 2
    diff = S.mean(0, keepdim=True) - F.mean(0, keepdim=True)
    split = S.mean(0, keepdim=True) - F[:half].mean(0, keepdim=True)
    return SetAverageCorrelation(
        shared=float(pearson(diff, ref)[0]), control=float(pearson(diff, ctrl)[0]),
        seed_image=float(pearson(split, seed - F[half:].mean(0, keepdim=True))[0]))


@dataclass
class PairingStats:
    """Each noise with its own image, against other noises (Fig. 2b).

    Attributes:
        paired_r, repaired_r, independent_r: Pearson correlation over pixels of image ``i`` with
            its own noise, with the noise of another image of the set (a random derangement),
            and with an independent noise (``nan`` if none was given); each ``(N,)``.
        paired_l2, repaired_l2, independent_l2: the same pairs' RMS pixel distances.
        p_value: permutation test of "mean paired r is no larger than under random re-pairing":
            ``(1 + #{perm: mean r >= observed}) / (1 + n_perm)`` over uniform random
            permutations (exact for exchangeable pairs under the null).
        null_mean, null_std: mean and spread of the mean r under those permutations.
        n_perm: permutations drawn.
    """

    paired_r: np.ndarray
    repaired_r: np.ndarray
    independent_r: np.ndarray
    paired_l2: np.ndarray
    repaired_l2: np.ndarray
    independent_l2: np.ndarray
    p_value: float
    null_mean: float
    null_std: float
    n_perm: int

    @property
    def z_score(self) -> float:
        """How many null standard deviations the mean paired r lies above the null mean."""
        return float((self.paired_r.mean() - self.null_mean) / max(self.null_std, 1e-300))

    def summary(self) -> dict:
        """Rounded means for printing."""
        return {
            "r paired": round(float(self.paired_r.mean()), 3),
            "r re-paired": round(float(self.repaired_r.mean()), 3),
            "r independent": round(float(np.nanmean(self.independent_r)), 3)
            if np.isfinite(self.independent_r).any() else None,
            "L2 paired": round(float(self.paired_l2.mean()), 3),
            "L2 re-paired": round(float(self.repaired_l2.mean()), 3),
            "L2 independent": round(float(np.nanmean(self.independent_l2)), 3)
            if np.isfinite(self.independent_l2).any() else None,
        }


def pairing_stats(noises, images, *, independent=None, n_perm: int = 1000,
                  generator: np.random.Generator | int | None = 0) -> PairingStats:
    """Distance and correlation of each image with its own noise against other noises.

    One Gram matrix of the standardized rows holds the correlation of every image with every
    noise, so each of the ``n_perm`` re-pairings of the permutation test costs one gather.

    Args:
        noises, images: ``(N, C, H, W)`` pairs (image ``i`` made from noise ``i``), N >= 3.
        independent: optional ``(N, C, H, W)`` noises that made none of the images (the
            paper's "randomly sampled noises").
        n_perm: permutations for the p-value (its floor is ``1 / (1 + n_perm)``).
        generator: numpy generator or seed for the permutations.

    Returns:
        :class:`PairingStats`.
    """
    A, B = _as_rows(noises, "noises"), _as_rows(images, "images")
    if A.shape != B.shape or len(A) < 3:
        raise ValueError(f"noises {A.shape} and images {B.shape} must pair up, with at least 3")
    n_perm = checks.count(n_perm, "n_perm")
    rng = checks.rng(generator)
    N, D = A.shape
    G = standardize(B, 1) @ standardize(A, 1).T  # (N, N): r(image i, noise j)
    sq = (B**2).sum(1)[:, None] + (A**2).sum(1)[None, :] - 2 * B @ A.T
    L2 = np.sqrt(np.clip(sq, 0, None) / D)  # (N, N) RMS distances
    rows = np.arange(N)
    perm = _derangement(N, rng)
    # the null draws uniform permutations (the identity included), which makes the Monte Carlo
    # p-value exact; the displayed re-pairing above is a derangement (no image keeps its noise)
    null = np.array([G[rows, rng.permutation(N)].mean() for _ in range(n_perm)])
    observed = np.diag(G).mean()
    if independent is not None:
        C = _as_rows(independent, "independent")
        if C.shape != A.shape:
            raise ValueError(f"independent noises {C.shape} must have the shape of noises {A.shape}")
        ind_r = (standardize(B, 1) * standardize(C, 1)).sum(1)
        ind_l2 = np.sqrt(((B - C) ** 2).mean(1))
    else:
        ind_r = ind_l2 = np.full(N, np.nan)
    return PairingStats(
        paired_r=np.diag(G).copy(), repaired_r=G[rows, perm], independent_r=ind_r,
        paired_l2=np.diag(L2).copy(), repaired_l2=L2[rows, perm], independent_l2=ind_l2,
        p_value=float((1 + (null >= observed).sum()) / (1 + n_perm)),
        null_mean=float(null.mean()), null_std=float(null.std()), n_perm=n_perm)


def pixel_cross_correlation(noises, images) -> np.ndarray:
    """Correlation over samples between each noise pixel and each image pixel (Fig. 2c).

    Entry ``[i, j]`` is the Pearson correlation, across the N samples, of noise pixel ``i`` with
    image pixel ``j`` of the same channel, averaged over the C channels. A per-pixel (local)
    relation shows as a bright diagonal; independence as entries of size about ``1 / sqrt(N C)``.

    Shapes:
        noises, images ``(N, C, H, W)``; returns ``(H * W, H * W)`` (rows: noise pixels in
        raster order, columns: image pixels).
    """
    a, b = _check4(noises, "noises"), _check4(images, "images")
    if a.shape != b.shape or len(a) < 3:
        raise ValueError(f"noises {tuple(a.shape)} and images {tuple(b.shape)} must pair up, "
                         f"with at least 3")
    N, C, H, W = a.shape

    sa, sb = (torch.from_numpy(standardize(x.reshape(N, C, H * W).numpy(), 0)) for x in (a, b))
    return torch.einsum("nci,ncj->ij", sa, sb).div_(C).numpy()  # (HW, HW)


@dataclass
class OffsetProfile:
    """Mean cross-correlation against the offset from a noise pixel to an image pixel.

    Attributes:
        dy, dx: offsets ``(2H - 1,)`` and ``(2W - 1,)`` from ``-(H - 1)`` to ``H - 1``.
        mean: ``(2H - 1, 2W - 1)``; ``mean[dy, dx]`` averages entry ``[(y, x), (y + dy, x + dx)]``
            over every pixel where both lie in the image.
        count: ``(2H - 1, 2W - 1)`` pixel pairs behind each entry of ``mean``.
        radius, radial: the mean over all pixel pairs whose offset has that rounded Euclidean
            length (weighted by ``count``, so offsets backed by few pairs weigh little).
    """

    dy: np.ndarray
    dx: np.ndarray
    mean: np.ndarray
    count: np.ndarray
    radius: np.ndarray
    radial: np.ndarray

    def neighbours(self) -> float:
        """The mean of the four nearest offsets (up, down, left, right)."""
        return float(np.mean([self.at(0, 1), self.at(1, 0), self.at(0, -1), self.at(-1, 0)]))

    def ring(self, radius: int) -> float:
        """The radial mean at one rounded distance."""
        if radius not in self.radius:
            raise ValueError(f"no offset at distance {radius}; distances: {self.radius.tolist()}")
        return float(self.radial[self.radius == radius][0])

    def far(self, min_radius: int = 4) -> float:
        """The mean absolute radial mean at distances ``>= min_radius`` (NaN when none)."""
        far = self.radial[self.radius >= min_radius]
        return float(np.abs(far).mean()) if far.size else float("nan")

    def peak(self) -> tuple[int, int]:
        """The offset ``(dy, dx)`` with the largest mean."""
        i, j = np.unravel_index(np.argmax(self.mean), self.mean.shape)
        return int(self.dy[i]), int(self.dx[j])

    def at(self, dy: int, dx: int) -> float:
        """The mean at offset ``(dy, dx)``; each must lie within +-(side - 1)."""
        h, w = len(self.dy) // 2, len(self.dx) // 2
        if not (-h <= dy <= h and -w <= dx <= w):
            raise ValueError(f"offset ({dy}, {dx}) outside +-({h}, {w})")
        return float(self.mean[dy + h, dx + w])


def offset_profile(cross: np.ndarray, height: int, width: int) -> OffsetProfile:
    """Average a :func:`pixel_cross_correlation` matrix over pixel pairs with the same offset."""
    cross = checks.array(cross, "cross")
    height, width = checks.count(height, "height"), checks.count(width, "width")
    if cross.shape != (height * width, height * width):
        raise ValueError(f"cross must be ({height * width}, {height * width}) for {height}x{width}, "
                         f"got {cross.shape}")
    y, x = np.divmod(np.arange(height * width), width)
    dy = (y[None, :] - y[:, None]) + height - 1  # (HW, HW), shifted to >= 0
    dx = (x[None, :] - x[:, None]) + width - 1
    key = (dy * (2 * width - 1) + dx).ravel()
    size = (2 * height - 1) * (2 * width - 1)
    total = np.bincount(key, weights=cross.ravel(), minlength=size)
    count = np.bincount(key, minlength=size)
    mean = (total / count).reshape(2 * height - 1, 2 * width - 1)
    oy, ox = np.arange(-(height - 1), height), np.arange(-(width - 1), width)
    radius, radial = ring_average(total.reshape(mean.shape), oy, ox, counts=count.reshape(mean.shape))
    return OffsetProfile(dy=oy, dx=ox, mean=mean, count=count.reshape(mean.shape), radius=radius,
                         radial=radial)
