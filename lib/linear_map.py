"""The first-step map measured direction by direction (paper Sec. 4, Hypothesis 1).

Eq. (9) fits a full ``(D, D)`` matrix ``W_Diff`` with ``Z ~ X W_Diff^T`` from noise/image pairs.
That needs ``N`` well above ``D`` pairs and, near ``N ~ D``, measures the estimator more than the
map. Whether the map is *ZCA-shaped* is a narrower question with a sharper test: ZCA acts on
each eigenvector ``u_i`` of the image covariance ``Sigma`` alone, scaling it by
``lambda_i^-1/2``. So project images and noises on the eigenvectors of a covariance estimated
*independently* of the pairs, and measure one gain per direction,

    g_i = (u_i^T X~^T Z~ u_i) / (u_i^T X~^T X~ u_i)        (X~, Z~: centred pairs),

the least-squares slope of the noise's coordinate on the image's coordinate along ``u_i``.
A few hundred pairs determine the gains of the top few hundred directions, whatever ``D`` is.
ZCA whitening gives ``g = lambda^-1/2`` (slope -1/2 on log-log axes), the exact fixed point of
the Gaussian-optimal denoiser ``(s/a) lambda^-1`` (slope -1), a flat gain slope 0; the bootstrap
over pairs says which of these the measured slopes can and cannot be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.whitening import _as_float64, _as_matrix

__all__ = ["EigenGains", "DecadeFit", "eigen_gains", "ShapeScores", "shape_scores"]


@dataclass(frozen=True)
class DecadeFit:
    """The gains in one decade of ``lambda``: count, log-log slope and level, with intervals.

    Attributes:
        lam_lo, lam_hi: the decade ``[lam_lo, lam_hi)``.
        n: directions in it (those with a positive gain enter the slope).
        slope, slope_low, slope_high: least-squares slope of ``log g`` against ``log lambda``.
        level, level_low, level_high: ``median(g lambda^1/2)`` (1 for ZCA in every decade).
    """

    lam_lo: float
    lam_hi: float
    n: int
    slope: float
    slope_low: float
    slope_high: float
    level: float
    level_low: float
    level_high: float


@dataclass(frozen=True)
class EigenGains:
    """Per-direction gains of a map with bootstrap intervals (see :func:`eigen_gains`).

    Attributes:
        lam: eigenvalues, descending ``(D,)``.
        gain: gain per direction ``(D,)``; low, high: its bootstrap interval.
        boot: the bootstrap replicates ``(n_boot, D)``.
        offdiag_share: share of the map's energy off the diagonal in the eigenbasis, over the
            top ``k`` directions; offdiag_low, offdiag_high: its bootstrap interval.
        k: directions the off-diagonal share is measured over.
        n_pairs: pairs used; level: the intervals' coverage.
    """

    lam: np.ndarray
    gain: np.ndarray
    low: np.ndarray
    high: np.ndarray
    boot: np.ndarray
    offdiag_share: float
    offdiag_low: float
    offdiag_high: float
    k: int
    n_pairs: int
    level: float

    def decades(self, *, min_directions: int = 5, lam_min: float = 0.0) -> list[DecadeFit]:
        """Slope and level per decade of ``lambda`` (above ``lam_min``), largest first.

        Decades with fewer than ``min_directions`` directions are left out.
        """
        lam = self.lam
        keep = lam > max(lam_min, 0.0)
        if not keep.any():
            return []
        top = int(np.floor(np.log10(lam[keep].max())))
        bottom = int(np.floor(np.log10(lam[keep].min())))
        alpha = (1 - self.level) / 2
        fits = []
        for e in range(top, bottom - 1, -1):
            lo, hi = 10.0 ** e, 10.0 ** (e + 1)
            idx = np.flatnonzero(keep & (lam >= lo) & (lam < hi))
            if len(idx) < min_directions:
                continue
            slope = _loglog_slope(lam[idx], self.gain[idx])
            level = float(np.median(self.gain[idx] * np.sqrt(lam[idx])))
            slopes = np.array([_loglog_slope(lam[idx], b[idx]) for b in self.boot])
            levels = np.median(self.boot[:, idx] * np.sqrt(lam[idx]), axis=1)
            s_lo, s_hi = np.nanquantile(slopes, [alpha, 1 - alpha]) if np.isfinite(slopes).any() \
                else (np.nan, np.nan)
            l_lo, l_hi = np.quantile(levels, [alpha, 1 - alpha])
            fits.append(DecadeFit(lo, hi, len(idx), slope, float(s_lo), float(s_hi), level,
                                  float(l_lo), float(l_hi)))
        return fits


def _loglog_slope(lam: np.ndarray, g: np.ndarray) -> float:
    """Least-squares slope of log g on log lambda over the positive gains (NaN if < 3)."""
    pos = g > 0
    if pos.sum() < 3:
        return float("nan")
    x, y = np.log(lam[pos]), np.log(g[pos])
    x = x - x.mean()
    denom = float(x @ x)
    return float(x @ (y - y.mean()) / denom) if denom > 0 else float("nan")


def _centred_pairs(X, Z, mean_x, mean_z) -> tuple[np.ndarray, np.ndarray]:
    """``(X - mean_x, Z - mean_z)`` as float64 ``(N, D)``; the means default to the pairs' own."""
    X, _ = _as_matrix(X, "X")
    Z, _ = _as_matrix(Z, "Z")
    if X.shape != Z.shape:
        raise ValueError(f"X and Z must hold the same number of pairs of the same size, got "
                         f"{X.shape} and {Z.shape} (flattened)")
    if len(X) < 3:
        raise ValueError(f"need at least 3 pairs, got {len(X)}")
    D = X.shape[1]
    mx = X.mean(0) if mean_x is None else _as_float64(mean_x, "mean_x").reshape(D)
    mz = Z.mean(0) if mean_z is None else _as_float64(mean_z, "mean_z").reshape(D)
    return X - mx, Z - mz


def eigen_gains(X, Z, eig, *, n_boot: int = 200, k: int | None = None, level: float = 0.95,
                mean_x=None, mean_z=None,
                generator: np.random.Generator | int | None = 0) -> EigenGains:
    """Gain of the map ``X -> Z`` along each eigenvector of an independent covariance.

    Args:
        X: images ``(N, D)`` (or ``(N, C, H, W)``); Z: their noises, same shape.
        eig: ``(lam, U)``, eigenvalues ``(D,)`` and eigenvectors ``(D, D)`` (columns) of a
            covariance estimated from other images than the pairs; any order.
        n_boot: bootstrap resamples of the pairs (0: no intervals).
        k: directions (largest ``lambda``) over which the off-diagonal share is measured;
            default ``min(D, N // 4, 256)``, so that the ``k x k`` map is well determined.
        level: coverage of the percentile intervals.
        mean_x, mean_z: means to centre with (default: the pairs' own means); pass the
            fitting pairs' means when scoring held-out pairs.
        generator: numpy generator or seed for the bootstrap.

    Returns:
        an :class:`EigenGains` in descending ``lambda``.

    Shapes:
        ``P = X~ U`` and ``Q = Z~ U`` are ``(N, D)``; ``g_i = sum_n P_ni Q_ni / sum_n P_ni^2``.
    """
    Xc, Zc = _centred_pairs(X, Z, mean_x, mean_z)
    N, D = Xc.shape
    lam, U = (np.asarray(a, dtype=np.float64) for a in eig)
    if lam.shape != (D,) or U.shape != (D, D):
        raise ValueError(f"eig must be (lam (D,), U (D, D)) with D = {D}, got "
                         f"{lam.shape} and {U.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    order = np.argsort(lam)[::-1]
    lam, U = lam[order], U[:, order]
    k = min(D, max(1, N // 4), 256) if k is None else int(k)
    if not 1 <= k <= D:
        raise ValueError(f"k must lie in [1, D = {D}], got {k}")
    P, Q = Xc @ U, Zc @ U  # (N, D) eigen-coordinates
    PQ, PP = P * Q, P * P  # (N, D)

    def gains(weights: np.ndarray) -> np.ndarray:  # weights (B, N) -> gains (B, D)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights @ PQ) / (weights @ PP)

    def offdiag(weights: np.ndarray) -> np.ndarray:  # (B, N) -> (B,): the k x k map's share
        """Energy share off the diagonal of M (Q_k ~ P_k M^T), less the estimation noise's.

        Noise inflates every squared entry of the least-squares M by its variance,
        sigma_j^2 [G^-1]_ii for entry (j, i) with G = P_k^T P_k, so both energies are debiased.
        """
        out = np.empty(len(weights))
        for b, w in enumerate(weights):
            Pk, Qk = P[:, :k] * np.sqrt(w)[:, None], Q[:, :k] * np.sqrt(w)[:, None]
            G_inv = np.linalg.pinv(Pk.T @ Pk)  # (k, k)
            M = (G_inv @ (Pk.T @ Qk)).T  # (k, k): row j maps P_k to Q_j
            dof = max(float(w.sum()) - k, 1.0)
            sigma2 = ((Qk - Pk @ M.T) ** 2).sum(0) / dof  # (k,) residual variance per output
            total = float((M ** 2).sum() - sigma2.sum() * np.trace(G_inv))
            diag = float((np.diag(M) ** 2 - sigma2 * np.diag(G_inv)).sum())
            out[b] = (total - diag) / total if total > 0 else np.nan
        return out

    ones = np.ones((1, N))
    gain = gains(ones)[0]
    share = float(offdiag(ones)[0])
    rng = np.random.default_rng(generator)
    alpha = (1 - level) / 2
    if n_boot:
        counts = rng.multinomial(N, np.full(N, 1.0 / N), size=n_boot).astype(np.float64)
        boot = gains(counts)
        low, high = np.nanquantile(boot, [alpha, 1 - alpha], axis=0)
        shares = offdiag(counts)
        s_lo, s_hi = np.nanquantile(shares, [alpha, 1 - alpha])
    else:
        boot = np.empty((0, D))
        low = high = np.full(D, np.nan)
        s_lo = s_hi = np.nan
    return EigenGains(lam=lam, gain=gain, low=low, high=high, boot=boot, offdiag_share=share,
                      offdiag_low=float(s_lo), offdiag_high=float(s_hi), k=k, n_pairs=N,
                      level=level)


@dataclass(frozen=True)
class ShapeScores:
    """How well a map's *shape* predicts the noises, whatever its overall scale.

    Attributes:
        scale: the best factor ``c`` for ``Z ~ c X W^T`` (least squares).
        r2_scaled: ``R^2`` of ``c X W^T`` (1 - MSE / Var(Z)); unlike the plain ``R^2`` it is not
            capped below 1 by a map of the right shape and the wrong size.
        pearson: correlation of all entries of ``X W^T`` with those of ``Z`` (scale-free, signed).
    """

    scale: float
    r2_scaled: float
    pearson: float


def shape_scores(X, Z, W, *, mean_x=None, mean_z=None) -> ShapeScores:
    """Scale-free scores of ``Z ~ X @ W.T`` (paper Sec. 4.2 with the scale factored out).

    Args:
        X: images ``(N, D)``; Z: noises ``(N, D)``; W: the map ``(D, D)``.
        mean_x, mean_z: the means to centre with (default: the pairs' own; pass the fitting
            pairs' means when scoring held-out pairs).
    """
    Xc, Zc = _centred_pairs(X, Z, mean_x, mean_z)
    D = Xc.shape[1]
    W = _as_float64(W, "W")
    if W.shape != (D, D):
        raise ValueError(f"W must have shape {(D, D)}, got {W.shape}")
    Y = Xc @ W.T  # (N, D)
    yy, yz, zz = float((Y * Y).sum()), float((Y * Zc).sum()), float((Zc * Zc).sum())
    if yy == 0 or zz == 0:
        raise ValueError("X W^T or Z is constant: the scores are undefined")
    c = yz / yy
    mse = float(((c * Y - Zc) ** 2).mean())
    Yf, Zf = Y.ravel() - Y.mean(), Zc.ravel() - Zc.mean()
    r = float(Yf @ Zf / np.sqrt((Yf @ Yf) * (Zf @ Zf)))
    return ShapeScores(scale=c, r2_scaled=1.0 - mse / float(np.var(Zc)), pearson=r)
