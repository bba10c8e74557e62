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

__all__ = ["PROMPTS", "random_labels", "progressive_averages", "PairingStats", "pairing_stats",
           "pixel_cross_correlation", "OffsetProfile", "offset_profile"]

#: Prompts drawn at random for the Stable Diffusion models (the paper: "random prompts").
PROMPTS = [f"a photo of {s}" for s in (
    "a cat", "a dog", "a rabbit", "a horse", "a red car", "a bicycle", "a sailing boat",
    "an airplane in the sky", "a mountain lake", "a city street at night", "a bowl of fruit",
    "a cup of coffee", "a bunch of flowers", "a forest path", "a beach at sunset", "a snowy village",
    "an old castle", "a lighthouse", "a tiger", "an owl", "a parrot", "a butterfly on a leaf",
    "a pizza", "a wooden chair", "a living room", "a library", "a robot", "an astronaut",
    "a portrait of a woman", "a portrait of an old man", "a child playing", "a waterfall")]


def random_labels(model, n: int, generator: torch.Generator | None = None) -> list | None:
    """One random condition per sample: a class name for the embedded UNets, a prompt of
    :data:`PROMPTS` for Stable Diffusion, ``None`` (unconditional) for a model without either.

    Returns:
        a list of ``n`` labels for :func:`lib.sampling.sample_batched`, or ``None``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    choices = getattr(model, "classes", None)
    if choices is None and getattr(model, "tokenizers", None):
        choices = PROMPTS
    if not choices:
        return None
    idx = torch.randint(0, len(choices), (n,), generator=generator)
    return [choices[int(i)] for i in idx]


def _check4(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x).detach().cpu().double()
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return x


def _as_rows(x, name: str) -> np.ndarray:
    x = _check4(x, name)
    return x.reshape(len(x), -1).numpy()  # (N, D)


def progressive_averages(x, counts) -> torch.Tensor:
    """Means of the first ``k`` samples for each ``k`` in ``counts`` (Fig. 2a's columns).

    Shapes:
        x ``(N, C, H, W)``; returns ``(len(counts), C, H, W)``.
    """
    x = _check4(x, "x")
    counts = [int(k) for k in counts]
    if not counts or min(counts) < 1 or max(counts) > len(x):
        raise ValueError(f"counts must lie in [1, {len(x)}], got {counts}")
    running = torch.cumsum(x, 0)
    return torch.stack([running[k - 1] / k for k in counts]).float()


def _standardize_rows(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    return a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-300)


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point (uniform, by rejection)."""
    while True:
        p = rng.permutation(n)
        if not (p == np.arange(n)).any():
            return p


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
    if not isinstance(n_perm, int) or n_perm < 1:
        raise ValueError(f"n_perm must be a positive integer, got {n_perm!r}")
    rng = np.random.default_rng(generator)
    N, D = A.shape
    G = _standardize_rows(B) @ _standardize_rows(A).T  # (N, N): r(image i, noise j)
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
        ind_r = (_standardize_rows(B) * _standardize_rows(C)).sum(1)
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

    def standardize(x):
        x = x.reshape(N, C, H * W)
        x = x - x.mean(0)
        return x / x.norm(dim=0).clamp_min(1e-300)

    sa, sb = standardize(a), standardize(b)
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

    def at(self, dy: int, dx: int) -> float:
        """The mean at offset ``(dy, dx)``; each must lie within +-(side - 1)."""
        h, w = len(self.dy) // 2, len(self.dx) // 2
        if not (-h <= dy <= h and -w <= dx <= w):
            raise ValueError(f"offset ({dy}, {dx}) outside +-({h}, {w})")
        return float(self.mean[dy + h, dx + w])


def offset_profile(cross: np.ndarray, height: int, width: int) -> OffsetProfile:
    """Average a :func:`pixel_cross_correlation` matrix over pixel pairs with the same offset."""
    cross = np.asarray(cross)
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
    r = np.rint(np.hypot(*np.meshgrid(oy, ox, indexing="ij"))).astype(int).ravel()
    radius = np.unique(r)
    radial = np.bincount(r, weights=total)[radius] / np.bincount(r, weights=count)[radius]
    return OffsetProfile(dy=oy, dx=ox, mean=mean, count=count.reshape(mean.shape), radius=radius,
                         radial=radial)
