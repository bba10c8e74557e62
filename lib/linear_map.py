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

The diagonal gain alone cannot tell a whitening from ZCA's magnitude (PCA's is about 0). The
second half of the module, :func:`decide`, estimates each whole column ``W u_i`` instead: its
norm says whether the map whitens (every whitening: ``||W u_i|| lambda_i^1/2 = 1``), its
alignment with ``u_i`` whether it is ZCA; linearity is a kernel predictor against a linear one,
held out. Each point is an equivalence test with margins stated in :data:`MARGINS`, with
intervals that resample clusters of pairs (photographs or disjoint regions), and
:func:`calibrate` runs it on planted maps whose answers are known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import scipy.linalg
import scipy.optimize
import scipy.stats

from lib import checks
from lib.whitening import covariance_eigh, whitening_matrices

__all__ = ["EigenGains", "DecadeFit", "eigen_gains", "ShapeScores", "shape_scores",
           "LinearFitMetrics", "fit_linear_map", "RidgeFit", "fit_linear_map_ridge_cv",
           "linear_fit_metrics", "matrix_norms", "EigenbasisView", "eigenbasis_view",
           "MapComparison", "compare_maps", "MARGINS", "LAM_MIN", "MIN_DIRECTIONS", "Estimate", "cluster_weights",
           "ColumnStats", "column_stats", "direction_bins", "Point", "Decision", "Linearity",
           "linearity", "decide", "exponent_difference", "eigen_map", "planted_maps",
           "planted_pairs", "gaussian_images", "calibrate"]


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
            top ``k`` directions; offdiag_low, offdiag_high: its interval (the estimate plus or
            minus the normal quantile times the bootstrap standard deviation).
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
    X, _ = checks.samples(X, "X")
    Z, _ = checks.samples(Z, "Z")
    if X.shape != Z.shape:
        raise ValueError(f"X and Z must hold the same number of pairs of the same size, got "
                         f"{X.shape} and {Z.shape} (flattened)")
    if len(X) < 3:
        raise ValueError(f"need at least 3 pairs, got {len(X)}")
    D = X.shape[1]
    mx = X.mean(0) if mean_x is None else checks.array(mean_x, "mean_x").reshape(D)
    mz = Z.mean(0) if mean_z is None else checks.array(mean_z, "mean_z").reshape(D)
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
    lam, U = checks.eig(eig, D)
    level = checks.fraction(level, "level", one=False)
    n_boot = checks.count(n_boot, "n_boot", lo=0)
    rng = checks.rng(generator)
    order = np.argsort(lam)[::-1]
    lam, U = lam[order], U[:, order]
    k = min(D, max(1, N // 4), 256) if k is None else checks.count(k, "k")
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
    alpha = (1 - level) / 2
    if n_boot:
        counts = rng.multinomial(N, np.full(N, 1.0 / N), size=n_boot).astype(np.float64)
        boot = gains(counts)
        low, high = np.nanquantile(boot, [alpha, 1 - alpha], axis=0)
        # a normal interval around the estimate: resampling with replacement repeats pairs,
        # which the debiasing counts as independent, so the replicates' centre is biased up
        spread = float(np.nanstd(offdiag(counts), ddof=1))
        z = float(scipy.stats.norm.ppf(1 - alpha))
        s_lo, s_hi = share - z * spread, share + z * spread
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
    W = checks.array(W, "W")
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


@dataclass(frozen=True)
class LinearFitMetrics:
    """Goodness of a linear fit ``Z ~ X @ W.T`` (paper Sec. 4.2).

    Attributes:
        mse, r2: as the paper reports them.
        r2_scaled, pearson: the map's shape alone (:func:`shape_scores`): R^2 of the best
            multiple ``c X W^T``, and the correlation of ``X W^T`` with ``Z``.
    """

    mse: float
    r2: float
    r2_scaled: float = float("nan")
    pearson: float = float("nan")

    def __getitem__(self, key: str) -> float:  # also usable as {"mse": ..., "r2": ...}
        return getattr(self, key)


def fit_linear_map(X, Z, *, center: bool = True, ridge: float = 0.0) -> np.ndarray:
    """Least-squares linear map between paired data (paper Eq. 9): ``argmin_W ||X W^T - Z||^2``.

    Solved with LAPACK's least-squares solver on the (centred) data, not with an explicit
    inverse of ``X^T X``. With ``ridge > 0`` it solves the ridge problem
    ``||X W^T - Z||^2 + ridge ||W||^2`` by a Cholesky solve of the normal equations.

    Args:
        X: images ``(N, D)`` (or ``(N, C, H, W)``).
        Z: their paired noises ``(N, D')``.
        center: subtract the column means of X and Z first, as the paper does.
        ridge: Tikhonov regularisation (>= 0).

    Returns:
        ``W`` ``(D', D)`` with ``Z ~ X @ W.T`` (float64).
    """
    X, Z = checks.paired_samples(X, Z)
    N, D = X.shape
    ridge = checks.number(ridge, "ridge", lo=0)
    center = checks.flag(center, "center")
    rank = N - 1 if center else N  # centring removes one degree of freedom
    if rank < D and ridge == 0:
        raise ValueError(f"N={N} pairs {'(rank N - 1 after centring) ' if center else ''}"
                         f"is too few for D={D} unknowns per row; use more pairs or ridge > 0")
    if center:
        X = X - X.mean(axis=0)
        Z = Z - Z.mean(axis=0)
    if ridge > 0:
        A = X.T @ X + ridge * np.eye(D)
        Wt = scipy.linalg.solve(A, X.T @ Z, assume_a="pos")
    else:
        Wt, *_ = scipy.linalg.lstsq(X, Z, lapack_driver="gelsy", check_finite=False)
    return Wt.T


@dataclass
class RidgeFit:
    """A ridge-regularised linear map with its ridge chosen on validation pairs.

    Attributes:
        W: the map ``(D', D)``, refitted on all pairs with the chosen ridge.
        ridge: the chosen ridge (one of ``ridges``).
        ridges, val_r2: the candidates and their R^2 on the validation pairs.
    """

    W: np.ndarray
    ridge: float
    ridges: np.ndarray
    val_r2: np.ndarray


def _ridge_solve(U: np.ndarray, sv: np.ndarray, Vt: np.ndarray, Z: np.ndarray,
                 ridge: float) -> np.ndarray:
    """``(X^T X + ridge I)^-1 X^T Z = V diag(s / (s^2 + ridge)) U^T Z`` from ``X = U S V^T``."""
    return Vt.T @ ((sv / (sv**2 + ridge))[:, None] * (U.T @ Z))


def fit_linear_map_ridge_cv(X, Z, ridges=None, *, val_fraction: float = 0.125) -> RidgeFit:
    """Eq. (9) with a ridge, the ridge picked by R^2 on the last ``val_fraction`` of the pairs.

    With N pairs barely above D the plain least-squares fit of Eq. (9) fits noise (its in-sample
    R^2 is about ``D / N`` even for unrelated data); a ridge trades that variance for a little
    bias. One thin SVD of ``X`` serves every candidate ridge (``min(N, D)`` singular values,
    so a few hundred pairs at ``D = 3072`` cost a fraction of a second).

    Args:
        X: images ``(N, D)``; Z: noises ``(N, D')`` (both centred here, as for Eq. 9).
        ridges: candidate ridges (> 0); default: 13 values from 1e-6 to 1e2 times the mean
            eigenvalue of ``X^T X`` over its ``min(N, D)`` non-trivial ones.
        val_fraction: share of the pairs (the last ones) held out to choose the ridge.

    Returns:
        a :class:`RidgeFit`.
    """
    X, Z = checks.paired_samples(X, Z)
    val_fraction = checks.fraction(val_fraction, "val_fraction", one=False)
    X = X - X.mean(axis=0)
    Z = Z - Z.mean(axis=0)
    n_val = max(1, int(round(len(X) * val_fraction)))
    Xf, Zf, Xv, Zv = X[:-n_val], Z[:-n_val], X[-n_val:], Z[-n_val:]
    U, sv, Vt = np.linalg.svd(Xf, full_matrices=False)
    scale = float(np.sum(sv**2) / X.shape[1])  # the mean eigenvalue of X^T X
    ridges = (scale * np.geomspace(1e-6, 1e2, 13) if ridges is None
              else np.array(checks.numbers(ridges, "ridges", empty=False)))
    if np.any(ridges <= 0):
        raise ValueError(f"ridges must be positive, got {ridges.min():g}")
    UtZ, Xv_v = U.T @ Zf, Xv @ Vt.T  # once for every ridge
    var = float(np.var(Zv - Zf.mean(axis=0)))
    val_r2 = np.array([1 - np.mean((Xv_v @ ((sv / (sv**2 + r))[:, None] * UtZ) - Zv) ** 2) / var
                       for r in ridges])
    best = float(ridges[int(np.argmax(val_r2))])
    W = _ridge_solve(*np.linalg.svd(X, full_matrices=False), Z, best).T
    return RidgeFit(W, best, ridges, val_r2)


def linear_fit_metrics(X, Z, W, *, center: bool = True, mean_x=None,
                       mean_z=None) -> LinearFitMetrics:
    """MSE, R^2, best-scaled R^2 and Pearson correlation of ``Z ~ X @ W.T`` (paper Sec. 4.2).

    ``MSE = ||X W^T - Z||^2 / (N D)`` and ``R^2 = 1 - MSE / Var(Z)``, with ``Var(Z)`` the
    variance of all entries of Z; the scale-free two are :func:`shape_scores`'.

    Args:
        X: ``(N, D)``; Z: ``(N, D)``; W: ``(D, D)``.
        center: centre X and Z first, by ``mean_x`` and ``mean_z`` (default: their own column
            means; pass the fitting pairs' means when scoring held-out pairs).
    """
    X, Z = checks.paired_samples(X, Z)
    W = checks.array(W, "W")
    if W.shape != (Z.shape[1], X.shape[1]):
        raise ValueError(f"W must have shape {(Z.shape[1], X.shape[1])}, got {W.shape}")
    if center:
        X, Z = _centred_pairs(X, Z, mean_x, mean_z)
    resid = X @ W.T - Z
    mse = float(np.mean(resid**2))
    zz = float(np.var(Z))
    try:
        shape = shape_scores(X, Z, W, mean_x=np.zeros(X.shape[1]), mean_z=np.zeros(Z.shape[1]))
        r2s, r = shape.r2_scaled, shape.pearson
    except ValueError:  # X W^T constant (the zero map): nothing to scale
        r2s, r = 1.0 - float(np.mean(Z**2)) / zz, float("nan")
    return LinearFitMetrics(mse=mse, r2=1.0 - mse / zz, r2_scaled=r2s, pearson=r)


def matrix_norms(W) -> tuple[float, float]:
    """Spectral (2-) norm and Frobenius norm of a matrix (the paper's norms table, Sec. 4.2).

    Above 512 rows and columns the 2-norm is the square root of the largest eigenvalue of
    ``W^T W``, computed alone (about twice as fast as a full SVD on 3072 x 3072).
    """
    W = checks.array(W, "W")
    if W.ndim != 2:
        raise ValueError(f"W must be a matrix, got shape {W.shape}")
    if min(W.shape) > 512:
        # largest eigenvalue of W^T W only (LAPACK's syevr on a subset), not a full SVD; Lanczos
        # (scipy's svds) is no faster here: a whitening's top singular values are clustered
        G = W.T @ W if W.shape[0] >= W.shape[1] else W @ W.T
        top = scipy.linalg.eigvalsh(G, subset_by_index=[len(G) - 1, len(G) - 1])
        two = float(np.sqrt(max(top[0], 0.0)))
    else:
        two = float(np.linalg.norm(W, 2))
    return two, float(np.linalg.norm(W, "fro"))


@dataclass
class EigenbasisView:
    """A linear map seen in the eigenbasis of a covariance ``Sigma = U diag(lam) U^T``.

    Attributes:
        lam: eigenvalues, descending ``(D,)``.
        diag: the diagonal of ``U^T W U`` ``(D,)`` (for ZCA: ``lam^-1/2``).
        diagonal_share: ``||diag||^2 / ||U^T W U||_F^2``, 1 for a map that acts on each
            eigendirection separately (zero-phase, like ZCA), small for one that mixes them.
    """

    lam: np.ndarray
    diag: np.ndarray
    diagonal_share: float


def eigenbasis_view(W, cov=None, *, eig: tuple | None = None) -> EigenbasisView:
    """Express ``W`` (``(D, D)``, acting as ``z = W x``) in the eigenbasis of ``cov``.

    Args:
        W: the map.
        cov: the covariance ``(D, D)``; or
        eig: its eigendecomposition ``(lam, U)`` as returned by :func:`covariance_eigh`
            (to view several maps without decomposing ``cov`` again).
    """
    W = checks.array(W, "W")
    if (cov is None) == (eig is None):
        raise ValueError("give exactly one of cov and eig")
    lam, U = checks.eig(eig) if eig is not None else covariance_eigh(cov)
    if W.shape != (len(lam), len(lam)):
        raise ValueError(f"W must have shape {(len(lam), len(lam))}, got {W.shape}")
    M = U.T @ W @ U
    diag = np.diag(M).copy()
    return EigenbasisView(lam, diag, float(np.sum(diag**2) / np.sum(M**2)))


@dataclass
class MapComparison:
    """How well one linear map predicts the fixed-point noises from the images (Fig. 5, norms).

    Attributes:
        method: ``diff`` (the least-squares ``W_Diff`` of Eq. 9) or a whitening kind.
        in_sample: MSE / R^2 on the pairs the maps were fitted on (as the paper reports).
        held_out: MSE / R^2 on held-out pairs (None when none were given).
        norm2, fro: spectral and Frobenius norms of ``W``.
        diff_norm2, diff_fro: the same norms of ``W - W_Diff`` (the paper's norms table).
    """

    method: str
    in_sample: LinearFitMetrics
    held_out: LinearFitMetrics | None
    norm2: float
    fro: float
    diff_norm2: float
    diff_fro: float


def compare_maps(X, Z, X_test=None, Z_test=None, *, maps: dict, W_diff=None,
                 extra: dict | None = None,
                 norm2: bool = True) -> tuple[np.ndarray, list[MapComparison]]:
    """Score ``W_Diff`` and whitening matrices as predictors of the noises (Fig. 5, norms table).

    Args:
        X, Z: fitting pairs, images and fixed-point noises ``(N, D)``.
        X_test, Z_test: optional held-out pairs ``(M, D)``, centred with the *fitting* pairs'
            means (a map is applied to new images as it was fitted).
        maps: whitening matrices ``{name: W}`` (e.g. the five kinds of chapter 1, fitted on
            other images, or on the pair images as the paper does).
        W_diff: the reference map the norms are measured against; default: Eq. (9) fitted here
            by plain least squares (needs more pairs than ``D``).
        extra: other maps fitted to the same pairs, ``{name: W}``, compared right after
            ``W_Diff``; their names must start with ``diff``.
        norm2: compute the 2-norms (a few seconds per map at D = 3072); False leaves them NaN
            and computes the Frobenius norms only.

    Returns:
        ``W_Diff`` ``(D, D)`` and one :class:`MapComparison` per method, ``diff`` first.
    """
    X, Z = checks.paired_samples(X, Z)
    if W_diff is None:
        W_diff = fit_linear_map(X, Z)
    if any(k.startswith("diff") for k in maps):
        raise ValueError("maps must hold whitening matrices only; 'diff' is fitted here")
    extra = extra or {}
    if any(not k.startswith("diff") or k == "diff" for k in extra):
        raise ValueError("extra maps must be named 'diff-...' (fits to the pairs)")
    maps = {"diff": W_diff, **extra, **maps}
    if (X_test is None) != (Z_test is None):
        given, missing = ("X_test", "Z_test") if Z_test is None else ("Z_test", "X_test")
        raise ValueError(f"{given} was given without {missing}: held-out scores need both "
                         "halves of the held-out pairs (or neither)")
    held = X_test is not None
    if held:
        X_test, Z_test = checks.paired_samples(X_test, Z_test, ("X_test", "Z_test"))
        if X_test.shape[1] != X.shape[1] or Z_test.shape[1] != Z.shape[1]:
            raise ValueError(f"the held-out pairs X_test, Z_test must have the fitting pairs' "
                             f"dimensions ({X.shape[1]}, {Z.shape[1]}), got "
                             f"({X_test.shape[1]}, {Z_test.shape[1]})")
    mx, mz = X.mean(axis=0), Z.mean(axis=0)

    def norms(W):
        return matrix_norms(W) if norm2 else (float("nan"), float(np.linalg.norm(W)))

    rows = []
    for method, W in maps.items():
        rows.append(MapComparison(
            method, linear_fit_metrics(X, Z, W),
            linear_fit_metrics(X_test, Z_test, W, mean_x=mx, mean_z=mz) if held else None,
            *norms(W), *norms(W - W_diff)))
    return W_diff, rows


# ---------------------------------------------------------------------------------------------
# Hypothesis 1 decided direction by direction, with intervals that resample clusters of pairs
# (photographs or disjoint regions of them) and margins stated before any network was measured.
#
# A whitening W (W^T W = Sigma^-1) sends each eigenvector u_i of Sigma to a column c_i = W u_i
# of norm lambda_i^-1/2, whatever its rotation; ZCA alone keeps c_i along u_i. So, per
# direction:
#   level      ||c_i|| lambda_i^1/2      1 for every whitening (ZCA, PCA, Cholesky, ...)
#   alignment  u_i^T c_i / ||c_i||       1 for ZCA, near 0 for PCA
# The column is estimated by regressing every output coordinate on the input's coordinate
# along u_i; with N < D its squared norm carries the estimation noise of D coefficients, which
# keeping only products of distinct clusters removes (no N > D needed).

#: the equivalence margins of :func:`decide`, fixed before any network's pairs were measured:
#: the law's exponent within 0.1 of 1/2, every level within 0.2 of 1, every alignment above
#: 1 - 0.2, and a nonlinear predictor gaining at most 0.05 of held-out R^2 over the linear one
MARGINS = {"exponent": 0.1, "level": 0.2, "alignment": 0.2, "nonlinear": 0.05}
#: :func:`decide`'s bins: every direction with eigenvalue above LAM_MIN counts (below it the
#: book's pairs pin no column down), in decades of at least MIN_DIRECTIONS directions
LAM_MIN, MIN_DIRECTIONS = 0.02, 10


@dataclass(frozen=True)
class Estimate:
    """A number with its interval (bootstrap standard error around the estimate)."""

    value: float
    low: float
    high: float

    def within(self, lo: float, hi: float) -> bool:
        """The whole interval lies in ``[lo, hi]`` (an equivalence test)."""
        return bool(lo <= self.low and self.high <= hi)


def cluster_weights(clusters, n_boot: int, generator=0) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap weights that resample whole clusters of pairs.

    Args:
        clusters: a label per pair ``(N,)`` (pairs with one label are resampled together);
            None: every pair is its own cluster.
        n_boot: replicates.
        generator: numpy generator or seed. The same labels, ``n_boot`` and seed give the same
            replicates, so two settings measured on the same images are resampled alike (a
            paired bootstrap).

    Returns:
        pair weights ``(n_boot, N)`` and cluster counts ``(n_boot, C)`` (each replicate draws
        ``C`` clusters with replacement; a pair's weight is its cluster's count).
    """
    labels = _labels(clusters)
    if labels.ndim != 1 or len(labels) < 2:
        raise ValueError(f"clusters must be one label per pair (at least 2), got shape "
                         f"{labels.shape}")
    _, index = np.unique(labels, return_inverse=True)
    C = int(index.max()) + 1
    if C < 2:
        raise ValueError("all pairs are in one cluster: there is nothing to resample; give "
                         "photographs or disjoint regions as clusters, or None")
    rng = checks.rng(generator)
    counts = rng.multinomial(C, np.full(C, 1.0 / C), size=checks.count(n_boot, "n_boot"))
    return counts[:, index].astype(np.float64), counts.astype(np.float64)


def _cluster_labels(clusters, n: int) -> np.ndarray:
    if clusters is None:
        return np.arange(n)
    labels = _labels(clusters)
    if labels.shape != (n,):
        raise ValueError(f"clusters must hold one label per pair, shape ({n},), got "
                         f"{labels.shape}")
    return labels


def _labels(clusters) -> np.ndarray:
    """Cluster labels as an array: numbers or strings (photo names), not objects, NaN or
    complex numbers."""
    if isinstance(clusters, (str, bytes, dict)) or not hasattr(clusters, "__len__"):
        raise ValueError(f"clusters must be a label per pair, got {clusters!r}"[:120])
    labels = np.asarray(clusters)
    if labels.dtype.kind not in "iufUS" or (labels.dtype.kind == "f"
                                            and not np.isfinite(labels).all()):
        raise ValueError(f"clusters must be finite numbers or strings, one per pair, got "
                         f"dtype {labels.dtype}")
    return labels


def _sorted_eig(eig, D: int, lam_min: float) -> tuple[np.ndarray, np.ndarray]:
    lam, U = checks.eig(eig, D)
    order = np.argsort(lam)[::-1]
    keep = order[lam[order] > lam_min]
    if len(keep) < 3:
        raise ValueError(f"fewer than 3 eigenvalues above lam_min = {lam_min}; lower it")
    return lam[keep], U[:, keep]


@dataclass(frozen=True)
class ColumnStats:
    """Per eigen-direction: the diagonal gain and the debiased squared column norm of a map.

    Attributes:
        lam: eigenvalues above ``lam_min``, descending ``(k,)``.
        var: the pairs' own variance along each ``u_i`` ``(k,)``. For a map that whitens the
            pairs' distribution the regression column has ``||c_i||^2 var_i = 1`` along each
            eigenvector of the pairs' covariance (and ``>= 1`` along other unit vectors), so
            the level is measured with it rather than with ``lam``, whose small values a
            finite sample underestimates.
        gain: ``u_i^T c_i``, the diagonal gain ``(k,)``.
        col2: ``||c_i||^2`` with the estimation noise removed ``(k,)`` (may dip below 0 where a
            direction carries no signal).
        boot_var, boot_gain, boot_col2: the same for each bootstrap replicate ``(n_boot, k)``.
        counts: the replicates' cluster counts ``(n_boot, C)`` (for paired comparisons).
        labels: the cluster label of each pair, in the pairs' order ``(N,)``.
        n_pairs, n_clusters: what was resampled.
    """

    lam: np.ndarray
    var: np.ndarray
    gain: np.ndarray
    col2: np.ndarray
    boot_var: np.ndarray
    boot_gain: np.ndarray
    boot_col2: np.ndarray
    counts: np.ndarray
    labels: np.ndarray
    n_pairs: int
    n_clusters: int


def column_stats(X, Z, eig, *, lam_min: float = LAM_MIN, clusters=None, n_boot: int = 200,
                 generator=0) -> ColumnStats:
    """Estimate each column ``c_i = W u_i`` of the map ``X -> Z`` from its pairs.

    Each output coordinate is regressed on the input's coordinate along ``u_i`` alone (the
    eigen-coordinates are uncorrelated, so the slope ``b_i = sum_c a_c / sum_n P_ni^2`` with
    ``a_c = sum_{n in c} P_ni z_n`` estimates ``c_i`` when the pairs share ``Sigma``'s
    eigenvectors). ``||b_i||^2`` exceeds ``||c_i||^2`` by the estimate's variance, summed over
    ``D`` coordinates, which is several times the signal at ``N < D``; keeping only the
    products ``a_c . a_c'`` of *distinct* clusters removes it (a U-statistic: each such
    product has mean ``S_c S_c' ||c_i||^2`` when the clusters are independent, whatever the
    noise's variance or tails). Clusters that share something (regions of one photograph,
    the common mean subtracted from every pair, about ``D / N^2``) leave an upward bias.
    Everything runs on the pairs' ``N x N`` Gram matrix, so ``D`` costs little.

    Args:
        X: images ``(N, D)`` (or ``(N, C, H, W)``); Z: their noises, same shape.
        eig: ``(lam, U)`` of a covariance estimated from other images than the pairs.
        lam_min: directions with ``lambda`` at or below it are left out.
        clusters: a label per pair (photograph or region); None: pairs are independent.
        n_boot: cluster-bootstrap replicates; generator: their seed.

    Returns:
        a :class:`ColumnStats`.

    Shapes:
        ``P = X~ U`` ``(N, k)``; ``G = Z~ Z~^T`` ``(N, N)``; per replicate ``G (w P)`` ``(N, k)``.
    """
    Xc, Zc = _centred_pairs(X, Z, None, None)
    N, D = Xc.shape
    lam, U = _sorted_eig(eig, D, lam_min)
    given = _cluster_labels(clusters, N)
    order = np.argsort(given, kind="stable")  # pairs of a cluster next to each other
    Xc, Zc, labels = Xc[order], Zc[order], given[order]
    _, starts, index = np.unique(labels, return_index=True, return_inverse=True)
    C = len(starts)
    if C < 2:
        raise ValueError("all pairs are in one cluster; give at least two clusters")
    P, Qd = Xc @ U, Zc @ U  # (N, k) the image's and the noise's eigen-coordinates
    G = Zc @ Zc.T  # (N, N)
    H = np.zeros((C, P.shape[1]))  # ||a_c||^2 = ||sum_{n in c} P_ni z_n||^2 per cluster, direction
    bounds = list(starts) + [N]
    for c in range(C):
        sl = slice(bounds[c], bounds[c + 1])
        H[c] = np.sum(P[sl] * (G[sl, sl] @ P[sl]), axis=0)
    S2 = np.add.reduceat(P * P, starts, axis=0)  # (C, k)

    def estimate(w: np.ndarray, wc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        WP = w[:, None] * P
        pp = np.sum(P * WP, axis=0)  # (k,) sum_n w_n P_ni^2
        total = np.sum(WP * (G @ WP), axis=0)  # ||sum_c w_c a_c||^2, a_c = sum_{n in c} P_ni z_n
        # keep only the products of distinct clusters: E[a_c . a_c'] = S2_c S2_c' ||c_i||^2
        with np.errstate(divide="ignore", invalid="ignore"):  # a replicate of one cluster
            col2 = (total - wc**2 @ H) / (pp**2 - wc**2 @ S2**2)
        gain = np.sum(WP * Qd, axis=0) / pp
        return gain, col2, pp / float(w.sum())

    gain, col2, var = estimate(np.ones(N), np.ones(C))
    if n_boot:
        rng_counts = cluster_weights(np.arange(C), n_boot, generator)[1]
        boot = [estimate(wc[index], wc) for wc in rng_counts]
        boot_gain, boot_col2, boot_var = (np.array([b[j] for b in boot]) for j in range(3))
    else:
        rng_counts = np.empty((0, C))
        boot_gain = boot_col2 = boot_var = np.empty((0, len(lam)))
    return ColumnStats(lam, var, gain, col2, boot_var, boot_gain, boot_col2, rng_counts, given,
                       N, C)


def direction_bins(lam, *, min_directions: int = 5) -> list[np.ndarray]:
    """Decades of ``lambda`` (descending), each sparse one merged into the decade below.

    Every direction falls in one bin, the top ones included: a decade with fewer than
    ``min_directions`` directions joins the next lower one (the lowest joins the one above).

    Returns:
        index arrays into ``lam``, from the largest eigenvalues down.
    """
    lam = checks.eigenvalues(lam)
    if lam.ndim != 1:
        raise ValueError(f"lam must be a vector of eigenvalues, got shape {lam.shape}")
    min_directions = checks.count(min_directions, "min_directions")
    decade = np.floor(np.log10(lam))
    groups = [np.flatnonzero(decade == e) for e in sorted(set(decade), reverse=True)]
    bins: list[np.ndarray] = []
    carry = np.empty(0, dtype=int)
    for g in groups:
        g = np.concatenate([carry, g])
        if len(g) < min_directions:
            carry = g
            continue
        bins.append(g)
        carry = np.empty(0, dtype=int)
    if len(carry):
        if bins:
            bins[-1] = np.concatenate([bins[-1], carry])
        else:
            bins.append(carry)
    return bins


def _law(lam, gain, col2, bins) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per bin level and alignment, and the power law ``||c|| = s lambda^-p`` fitted on bins.

    ``lam`` is the variance along each direction (the pairs' own, :class:`ColumnStats`)."""
    ms = np.array([np.mean(col2[b]) for b in bins])  # mean ||c||^2 per bin
    level2 = np.array([np.mean(col2[b] * lam[b]) for b in bins])
    level = np.sqrt(np.clip(level2, 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        align = np.array([np.mean(gain[b] * np.sqrt(lam[b])) for b in bins]) / level
    ok = ms > 0  # a bin whose debiased norm is not positive carries no measurable column
    if ok.sum() < 2:
        return level, align, float("nan"), float("nan")
    logm = np.log(ms[ok])
    lb = [np.log(lam[b]) for b, k in zip(bins, ok) if k]

    def log_mean_exp(v: np.ndarray) -> float:
        top = v.max()
        return float(top + np.log(np.mean(np.exp(v - top))))

    def fit(p: float) -> tuple[float, float]:
        model = np.array([log_mean_exp(-2 * p * x) for x in lb])  # log of the bin's mean lambda^-2p
        c = float(np.mean(logm - model))  # log s^2
        return float(np.sum((logm - model - c) ** 2)), c

    best = scipy.optimize.minimize_scalar(lambda p: fit(p)[0], bounds=(-2.0, 4.0),
                                          method="bounded", options={"xatol": 1e-5})
    p = float(best.x)
    return level, align, p, float(np.exp(fit(p)[1] / 2))


@dataclass(frozen=True)
class Point:
    """One point of Hypothesis 1 as :func:`decide` decided it.

    Attributes:
        holds: whether its equivalence test passed.
        estimates: the numbers behind it, ``{name: Estimate or [Estimate per bin]}``.
        margins: the test's margins ``{name: value}``.
    """

    holds: bool
    estimates: dict
    margins: dict


@dataclass(frozen=True)
class Decision:
    """Hypothesis 1 for one map: ``decision["linear" | "whitening" | "zca"]`` is a :class:`Point`.

    Attributes:
        points: the three points.
        columns: the per-direction statistics (:func:`column_stats`).
        bins: index arrays of the bins (:func:`direction_bins`); bin_edges: their ``lambda``
            ranges ``[(lo, hi)]``, the largest first.
        exponent_boot, scale_boot: the law's exponent ``p`` and scale ``s`` per replicate.
        level: coverage of the intervals (0.90: two one-sided tests at 5 %).
    """

    points: dict
    columns: ColumnStats
    bins: list
    bin_edges: list
    exponent_boot: np.ndarray
    scale_boot: np.ndarray
    level: float

    def __getitem__(self, key: str) -> Point:
        return self.points[key]

    def __iter__(self):
        return iter(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def keys(self):
        return self.points.keys()

    def items(self):
        return self.points.items()


def _critical(level: float, clusters: int) -> float:
    """Student's t quantile for a two-sided ``level`` interval from ``clusters`` clusters."""
    return float(scipy.stats.t.ppf(0.5 + level / 2, df=clusters - 1))


def _interval(value: float, boot: np.ndarray, z: float) -> Estimate:
    boot = np.asarray(boot, dtype=np.float64)
    boot = boot[np.isfinite(boot)]
    if not np.isfinite(value) or len(boot) < 2:
        return Estimate(float(value), float("nan"), float("nan"))
    sd = float(np.std(boot, ddof=1))
    return Estimate(float(value), float(value - z * sd), float(value + z * sd))


@dataclass(frozen=True)
class Linearity:
    """Held-out R^2 of a linear and a nonlinear predictor of the noise's top coordinates.

    Attributes:
        r2_linear, r2_nonlinear: held-out R^2 (variance-weighted over the ``k`` outputs).
        gain: ``r2_nonlinear - r2_linear``; its interval resamples the held-out clusters.
        k: the eigen-coordinates used as inputs and outputs.
        boot_gain: the gain per replicate.
    """

    r2_linear: Estimate
    r2_nonlinear: Estimate
    gain: Estimate
    k: int
    boot_gain: np.ndarray


def linearity(X, Z, X_test, Z_test, eig, *, k: int = 16, clusters=None, clusters_test=None,
              n_boot: int = 200, level: float = 0.90, generator=0) -> Linearity:
    """Is the map linear? A linear and a kernel predictor, held out, on the top directions.

    Both predict the noise's coordinates along the ``k`` leading eigenvectors from the image's
    (standardised by ``lambda^1/2``), where ``N`` pairs pin a map down at any ``D``: ordinary
    least squares, and least squares plus an RBF kernel ridge on its residuals, whose width
    and ridge are chosen by 5-fold cross-validation on the fitting pairs. A linear map leaves
    the kernel nothing to add; a nonlinear one it can learn shows as a held-out gain.

    Args:
        X, Z: fitting pairs ``(N, D)``; X_test, Z_test: held-out pairs ``(M, D)`` (centred with
            the fitting pairs' means).
        eig: ``(lam, U)`` of an independent covariance.
        k: leading directions (inputs and outputs).
        clusters: a label per fitting pair: the cross-validation folds keep clusters whole.
        clusters_test: a label per held-out pair, resampled together; None: independent.
        n_boot, level, generator: the cluster bootstrap of the held-out pairs.
    """
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import GridSearchCV, GroupKFold, KFold

    X, Z = checks.paired_samples(X, Z)
    X_test, Z_test = checks.paired_samples(X_test, Z_test, ("X_test", "Z_test"))
    D = X.shape[1]
    if X_test.shape[1] != D or Z_test.shape[1] != Z.shape[1]:
        raise ValueError(f"the held-out pairs must have the fitting pairs' sizes {D} and "
                         f"{Z.shape[1]}, got {X_test.shape[1]} and {Z_test.shape[1]}")
    k = checks.count(k, "k")
    if not 1 <= k < len(X) // 4:
        raise ValueError(f"k must lie in [1, N/4) = [1, {len(X) // 4}) for {len(X)} fitting "
                         f"pairs, got {k}")
    lam, U = _sorted_eig(eig, D, 0.0)
    lam, U = lam[:k], U[:, :k]
    mx, mz = X.mean(0), Z.mean(0)
    P, Y = (X - mx) @ U / np.sqrt(lam), (Z - mz) @ U  # (N, k)
    Pt, Yt = (X_test - mx) @ U / np.sqrt(lam), (Z_test - mz) @ U
    A = np.column_stack([np.ones(len(P)), P])
    coef, *_ = np.linalg.lstsq(A, Y, rcond=None)
    pred_lin = np.column_stack([np.ones(len(Pt)), Pt]) @ coef
    resid = Y - A @ coef
    search = GridSearchCV(KernelRidge(kernel="rbf"),
                          {"alpha": [1e-2, 1e-1, 1.0, 10.0],
                           "gamma": [0.1 / k, 0.3 / k, 1.0 / k, 3.0 / k]},
                          cv=KFold(5, shuffle=True, random_state=0) if clusters is None
                          else GroupKFold(5),
                          scoring="neg_mean_squared_error")
    search.fit(P, resid, **({} if clusters is None else
                            {"groups": _cluster_labels(clusters, len(P))}))
    pred_nl = pred_lin + search.best_estimator_.predict(Pt)
    total = np.sum((Yt - Y.mean(0)) ** 2, axis=1)  # (M,) per held-out pair
    e_lin = np.sum((Yt - pred_lin) ** 2, axis=1)
    e_nl = np.sum((Yt - pred_nl) ** 2, axis=1)
    labels = _cluster_labels(clusters_test, len(Yt))
    weights = cluster_weights(labels, n_boot, generator)[0] if n_boot else np.empty((0, len(Yt)))

    def r2(e, w):
        return 1 - (w @ e) / (w @ total)

    ones = np.ones(len(Yt))
    z = _critical(level, len(np.unique(labels)))
    b_lin, b_nl = r2(e_lin, weights), r2(e_nl, weights)
    return Linearity(_interval(r2(e_lin, ones), b_lin, z), _interval(r2(e_nl, ones), b_nl, z),
                     _interval(r2(e_nl, ones) - r2(e_lin, ones), b_nl - b_lin, z), k,
                     b_nl - b_lin)


def decide(X, Z, X_test, Z_test, eig, *, clusters=None, clusters_test=None,
           lam_min: float = LAM_MIN, min_directions: int = MIN_DIRECTIONS,
           k_linear: int | None = None, n_boot: int = 200, level: float = 0.90,
           margins: dict | None = None, generator=0) -> Decision:
    """Hypothesis 1 for one map, point by point, each an equivalence test with stated margins.

    * ``linear``: a kernel predictor gains less than ``margins["nonlinear"]`` of held-out R^2
      over the linear one (:func:`linearity`): the upper end of the gain's interval is below
      the margin.
    * ``whitening``: the columns have the norms of a whitening: the power law
      ``||c_i|| = s v_i^-p`` fitted over every bin has ``|p - 1/2| < margins["exponent"]``
      and every bin's level ``(mean ||c_i||^2 v_i)^1/2`` lies within ``margins["level"]``
      of 1 (whole intervals inside); ``v_i`` is the pairs' own variance along ``u_i``
      (:class:`ColumnStats`), about ``lambda_i`` for pairs from the covariance's distribution.
    * ``zca``: whitening, and every bin's alignment ``mean(g_i v_i^1/2) / level`` (1 when each
      column of a whitening lies along its ``u_i``) has its interval above
      ``1 - margins["alignment"]``.

    Intervals are the estimate plus or minus Student's ``t`` (``C - 1`` degrees of freedom,
    ``C`` clusters) times the bootstrap standard deviation.

    Bins are decades of ``lambda`` above ``lam_min`` with at least ``min_directions``
    directions (:func:`direction_bins`); the law gives each bin the same weight.

    Args:
        X, Z: fitting pairs ``(N, D)``; X_test, Z_test: held-out pairs, for linearity.
        eig: ``(lam, U)``, the eigendecomposition of the data covariance (from other images).
        clusters, clusters_test: a label per pair (photograph or disjoint region), resampled
            together; None: pairs are independent.
        n_boot: cluster-bootstrap replicates; level: interval coverage (0.90 makes each
            equivalence a pair of one-sided tests at 5 %).
        k_linear: the leading directions linearity is tested on (default 16, at most N / 5).
        margins: overrides of :data:`MARGINS`.
        generator: the bootstrap's seed; the same seed and clusters resample two settings on
            the same images alike (:func:`exponent_difference`).

    Returns:
        a :class:`Decision`, a mapping ``{"linear", "whitening", "zca"} -> Point``.
    """
    m = dict(MARGINS)
    if margins:
        unknown = set(margins) - set(MARGINS)
        if unknown:
            raise ValueError(f"unknown margins {sorted(unknown)}; known: {sorted(MARGINS)}")
        m.update(margins)
    for name, value in m.items():
        checks.number(value, f"margins[{name!r}]", lo=0.0)
    level = checks.fraction(level, "level", one=False)
    n_boot = checks.count(n_boot, "n_boot", 2)  # intervals need at least two replicates
    min_directions = checks.count(min_directions, "min_directions")
    lam_min = checks.number(lam_min, "lam_min", lo=0.0)
    # the two points resample apart
    seeds = np.random.SeedSequence(checks.seed(generator, "generator")).spawn(2)
    cols = column_stats(X, Z, eig, lam_min=lam_min, clusters=clusters, n_boot=n_boot,
                        generator=np.random.default_rng(seeds[0]))
    if cols.n_clusters < 3:
        raise ValueError(f"{cols.n_clusters} clusters give no interval; give at least 3")
    z = _critical(level, cols.n_clusters)
    bins = direction_bins(cols.lam, min_directions=min_directions)
    lev, ali, p, s = _law(cols.var, cols.gain, cols.col2, bins)
    boot = [_law(v, g, c, bins) for v, g, c in zip(cols.boot_var, cols.boot_gain,
                                                   cols.boot_col2)]
    lev_b = np.array([b[0] for b in boot])
    ali_b = np.array([b[1] for b in boot])
    p_b = np.array([b[2] for b in boot])
    s_b = np.array([b[3] for b in boot])
    levels = [_interval(lev[j], lev_b[:, j], z) for j in range(len(bins))]
    aligns = [_interval(ali[j], ali_b[:, j], z) for j in range(len(bins))]
    exponent = _interval(p, p_b, z)
    white = exponent.within(0.5 - m["exponent"], 0.5 + m["exponent"]) and all(
        e.within(1 - m["level"], 1 + m["level"]) for e in levels)
    aligned = all(np.isfinite(e.low) and e.low >= 1 - m["alignment"] for e in aligns)
    if k_linear is None:  # 16 directions, or fewer where the pairs are few
        k_linear = max(1, min(16, cols.n_pairs // 5))
    lin = linearity(X, Z, X_test, Z_test, eig, k=k_linear, clusters=clusters,
                    clusters_test=clusters_test, n_boot=n_boot, level=level,
                    generator=np.random.default_rng(seeds[1]))
    points = {
        "linear": Point(bool(np.isfinite(lin.gain.high) and lin.gain.high < m["nonlinear"]),
                        {"r2_linear": lin.r2_linear, "r2_nonlinear": lin.r2_nonlinear,
                         "nonlinear_gain": lin.gain},
                        {"nonlinear": m["nonlinear"]}),
        "whitening": Point(bool(white), {"exponent": exponent, "scale": _interval(s, s_b, z),
                                         "level": levels},
                           {"exponent": m["exponent"], "level": m["level"]}),
        "zca": Point(bool(white and aligned), {"alignment": aligns},
                     {"alignment": m["alignment"]}),
    }
    edges = [(float(cols.lam[b].min()), float(cols.lam[b].max())) for b in bins]
    return Decision(points, cols, bins, edges, p_b, s_b, level)


def exponent_difference(a: Decision, b: Decision) -> Estimate:
    """``p(a) - p(b)`` with a paired interval: both measured on the same images and clusters.

    The two decisions must come from :func:`decide` with the same clusters, ``n_boot`` and
    seed, so that each replicate resamples the same clusters in both.
    """
    if a.columns.counts.shape != b.columns.counts.shape or not np.array_equal(
            a.columns.counts, b.columns.counts) or not np.array_equal(a.columns.labels,
                                                                      b.columns.labels):
        raise ValueError("the two decisions were not resampled alike: decide both on the same "
                         "images with the same clusters, n_boot and generator")
    if a.level != b.level:
        raise ValueError(f"the two decisions have different levels ({a.level}, {b.level})")
    z = _critical(a.level, a.columns.n_clusters)
    pa, pb = a["whitening"].estimates["exponent"].value, b["whitening"].estimates["exponent"].value
    return _interval(pa - pb, a.exponent_boot - b.exponent_boot, z)


# ---------------------------------------------------------------------------------------------
# Calibration: every point of :func:`decide` on planted maps with known answers, at the
# chapter's spectrum, basis, N and D, with noise matched to the networks' unexplained part.

def eigen_map(eig, gains) -> np.ndarray:
    """``U diag(g) U^T``: the map that scales each eigenvector ``u_i`` by ``g_i`` ``(D, D)``."""
    lam, U = checks.eig(eig)
    g = checks.array(gains, "gains")
    if g.shape != lam.shape or U.shape != (len(lam), len(lam)):
        raise ValueError(f"gains must hold one value per eigenvalue, shape {lam.shape}, got "
                         f"{g.shape}")
    return (U * g) @ U.T


def planted_maps(eig, *, eps: float = 0.03, scaled: float = 0.6, extra: dict | None = None
                 ) -> dict[str, np.ndarray]:
    """The maps whose answers are known, on one covariance ``Sigma = U diag(lam) U^T``.

    ``zca`` (exact, ``Sigma^-1/2``), ``zca, ridge eps``, ``pca``, ``cholesky``, ``Sigma^-1``,
    ``identity`` and ``scaled x zca``; ``extra`` adds ``{name: gains per eigen-direction}``
    (e.g. the Gaussian model's Picard or DDIM-inversion gains) as :func:`eigen_map`.

    Returns:
        ``{name: W}`` with ``Z = X W^T``, each ``(D, D)``.
    """

    lam, U = checks.eig(eig)
    eps = checks.number(eps, "eps", lo=0.0)
    cov = (U * lam) @ U.T
    white = whitening_matrices(cov, ("zca", "pca", "cholesky"))
    maps = {"zca": white["zca"], f"zca, ridge {eps:g}": eigen_map(eig, (lam + eps) ** -0.5),
            "pca": white["pca"], "cholesky": white["cholesky"],
            "Sigma^-1": eigen_map(eig, 1 / lam), "identity": np.eye(len(lam)),
            f"{scaled:g} x zca": scaled * white["zca"]}
    for name, g in (extra or {}).items():
        maps[name] = eigen_map(eig, g)
    return maps


def planted_pairs(X, W, *, noise: float = 0.0, nonlinear: float = 0.0, eig=None,
                  n_nonlinear: int = 8, generator=0) -> np.ndarray:
    """Noises for images ``X`` from a planted map: ``Z = X W^T + f(X) + noise``.

    Args:
        X: images ``(N, D)``; W: the map ``(D, D)``.
        noise: the share of ``Z``'s variance that is independent Gaussian noise, in [0, 1)
            (e.g. the networks' unexplained share, ``1 - R^2``).
        nonlinear: the standard deviation, per direction, of a nonlinear part along the
            ``n_nonlinear`` leading eigenvectors (needs ``eig``): ``|p_j|`` of the image's
            standardised coordinate ``p_j``, centred and scaled; 1 matches a whitening's unit
            variance there.
        generator: seed of the noise.

    Returns:
        ``Z`` ``(N, D)`` (float64).
    """
    X, _ = checks.samples(X, "X")
    W = checks.array(W, "W")
    if W.shape != (X.shape[1], X.shape[1]):
        raise ValueError(f"W must have shape {(X.shape[1],) * 2}, got {W.shape}")
    noise = checks.fraction(noise, "noise", zero=True, one=False)
    nonlinear = checks.number(nonlinear, "nonlinear", lo=0.0)
    Xc = X - X.mean(0)
    Z = Xc @ W.T
    if nonlinear:
        if eig is None:
            raise ValueError("a nonlinear part needs eig = (lam, U) for its directions")
        lam, U = _sorted_eig(eig, X.shape[1], 0.0)
        k = checks.count(n_nonlinear, "n_nonlinear")
        F = np.abs(Xc @ U[:, :k] / np.sqrt(lam[:k]))
        F = (F - F.mean(0)) / F.std(0)
        Z = Z + nonlinear * F @ U[:, :k].T
    if noise:
        rms = float(np.sqrt(np.mean(Z**2)))
        rng = checks.rng(generator)
        Z = Z + np.sqrt(noise / (1 - noise)) * rms * rng.standard_normal(Z.shape)
    return Z


def gaussian_images(eig, n: int, *, generator=0) -> np.ndarray:
    """``n`` draws of ``N(0, U diag(lam) U^T)`` ``(n, D)``: images whose covariance is exactly
    the one the planted maps are built on, so that ``Sigma^-1/2`` is exactly their ZCA."""
    lam, U = checks.eig(eig)
    lam = checks.eigenvalues(lam, "eig's eigenvalues", zero=True)
    rng = checks.rng(generator)
    return (rng.standard_normal((checks.count(n, "n"), len(lam))) * np.sqrt(lam)) @ U.T


def calibrate(eig, maps: dict, *, n: int, n_test: int, noise: float = 0.0,
              nonlinear: dict | None = None, generator=0, **kwargs) -> dict[str, Decision]:
    """Run :func:`decide` on planted maps at a given ``N`` (the calibration table).

    The images are Gaussian with the covariance of ``eig`` (:func:`gaussian_images`), the
    noises :func:`planted_pairs`'.

    Args:
        eig: ``(lam, U)``, the chapter's spectrum and basis (``D`` from it).
        maps: ``{name: W}`` (e.g. :func:`planted_maps`).
        n, n_test: fitting and held-out pairs.
        noise: the noise's share of the variance (matched to the networks').
        nonlinear: ``{name: (W, amplitude)}``, maps with a nonlinear part added.
        generator: seed (an int) of the images, the noises and the bootstrap.
        **kwargs: passed to :func:`decide`.
    """
    n, n_test = checks.count(n, "n"), checks.count(n_test, "n_test")
    # independent streams
    images, noises = np.random.SeedSequence(checks.seed(generator, "generator")).spawn(2)
    X = gaussian_images(eig, n + n_test, generator=np.random.default_rng(images))
    out = {}
    jobs = [(name, W, 0.0) for name, W in maps.items()]
    jobs += [(name, W, amp) for name, (W, amp) in (nonlinear or {}).items()]
    for name, W, amp in jobs:
        Z = planted_pairs(X, W, noise=noise, nonlinear=amp, eig=eig,
                          generator=np.random.default_rng(noises))
        out[name] = decide(X[:n], Z[:n], X[n:], Z[n:], eig, generator=generator, **kwargs)
    return out
