"""Whitening matrices (paper Eq. 5; Kessy, Lewin & Strimmer 2018) and linear fits (Eq. 9).

Conventions (as in the paper): data matrices are ``(N, D)`` with one sample per row and a
matrix acts on rows, ``Z = X @ W.T``. A whitening matrix ``W`` satisfies
``W.T @ W = inv(Sigma)``, so that ``cov(X @ W.T) = I``. The five kinds:

* ``zca``:       ``W = U Lambda^-1/2 U^T``               (Sigma = U Lambda U^T)
* ``pca``:       ``W = Lambda^-1/2 U^T``
* ``cholesky``:  ``W = L^T`` with ``L L^T = inv(Sigma)``, L lower-triangular, so W is upper-
  triangular. The paper's Eq. (5) writes ``Sigma = L L^T``, a slip: its prose (and Kessy et al.)
  use the Cholesky factor of the *inverse* covariance. With ``Sigma = L L^T``, ``L^T`` would not
  whiten.
* ``zca-cor``:   ``W = G Theta^-1/2 G^T V^-1/2``          (P = V^-1/2 Sigma V^-1/2 = G Theta G^T)
* ``pca-cor``:   ``W = Theta^-1/2 G^T V^-1/2``

Eigenvalues are sorted in decreasing order and the sign of each eigenvector is fixed so that
its own coordinate is positive (``U[i, i] > 0``), which makes the cross-covariance between the
whitened and the original variables positive on its diagonal (Kessy et al., Sec. 3.4).

Everything is computed in float64. ``eps`` adds ``eps * I`` to the covariance (a ridge) before
any decomposition; it is kept on the :class:`Whitener` and shown in its ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

__all__ = [
    "KINDS",
    "whitening_matrix",
    "Whitener",
    "fit_linear_map",
    "linear_fit_metrics",
    "covariance",
    "matrix_norms",
    "EigenbasisView",
    "eigenbasis_view",
    "covariance_eigh",
    "MapComparison",
    "compare_maps",
    "Verdict",
    "hypothesis_verdict",
    "RidgeFit",
    "fit_linear_map_ridge_cv",
]

KINDS = ("zca", "zca-cor", "pca", "pca-cor", "cholesky")


def _as_float64(a, name: str) -> np.ndarray:
    """float64 numpy copy of a numpy array or torch tensor, with a NaN/inf check."""
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf values; clean or drop those samples first")
    return a


def _as_matrix(X, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flatten ``(N, ...)`` data to ``(N, D)``; return it with the original per-sample shape."""
    X = _as_float64(X, name)
    if X.ndim < 2:
        raise ValueError(f"{name} must have shape (N, D) or (N, C, H, W), got {X.shape}")
    return X.reshape(X.shape[0], -1), X.shape[1:]  # (N, D)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown whitening kind {kind!r}; choose one of {KINDS}")


def _check_positive_definite(lam: np.ndarray, what: str) -> None:
    """Refuse (numerically) singular matrices: eigenvalues below D * machine-eps * largest."""
    floor = lam.size * np.finfo(np.float64).eps * max(float(np.max(lam)), 0.0)
    if np.min(lam) <= floor:
        raise np.linalg.LinAlgError(
            f"the {what} is singular or nearly so (smallest eigenvalue {np.min(lam):.3e}, "
            f"largest {np.max(lam):.3e}); pass eps > 0 to add a ridge eps * I, or use more "
            "samples than dimensions and no duplicated features")


def _sorted_eigh(S: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition with decreasing eigenvalues and the sign convention U[i, i] > 0."""
    lam, U = np.linalg.eigh(S)
    lam, U = lam[::-1], U[:, ::-1]
    _check_positive_definite(lam, what)
    signs = np.where(np.diag(U) < 0, -1.0, 1.0)
    return lam, U * signs


def covariance(X) -> np.ndarray:
    """Unbiased sample covariance (1 / (N - 1)) of the rows of ``X``.

    Shapes:
        X ``(N, D)`` or ``(N, C, H, W)``; returns ``(D, D)``.
    """
    X, _ = _as_matrix(X, "X")
    if X.shape[0] < 2:
        raise ValueError("need at least two samples to estimate a covariance")
    Xc = X - X.mean(axis=0)
    return Xc.T @ Xc / (X.shape[0] - 1)


def whitening_matrix(cov, kind: str = "zca", eps: float = 0.0) -> np.ndarray:
    """The whitening matrix of one kind for a covariance matrix.

    Args:
        cov: symmetric positive (semi-)definite covariance ``Sigma``.
        kind: one of ``zca``, ``zca-cor``, ``pca``, ``pca-cor``, ``cholesky``.
        eps: ridge added to the diagonal of ``Sigma`` before decomposing (>= 0).

    Returns:
        ``W`` with ``W.T @ W = inv(Sigma + eps I)`` (float64).

    Shapes:
        cov ``(D, D)``; returns ``(D, D)``.
    """
    _check_kind(kind)
    S = _as_float64(cov, "cov")
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"cov must be a square (D, D) matrix, got shape {S.shape}")
    if not np.allclose(S, S.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(S).max())):
        raise ValueError("cov must be symmetric")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    D = S.shape[0]
    S = (S + S.T) / 2 + eps * np.eye(D)

    if kind in ("zca", "pca"):
        lam, U = _sorted_eigh(S, "covariance")
        W_pca = U.T / np.sqrt(lam)[:, None]  # Lambda^-1/2 U^T
        return U @ W_pca if kind == "zca" else W_pca
    if kind in ("zca-cor", "pca-cor"):
        v = np.diag(S)
        if v.min() <= 0:
            raise np.linalg.LinAlgError(
                "a variance is zero, so the correlation matrix is undefined; pass eps > 0")
        v_isqrt = 1.0 / np.sqrt(v)
        P = S * v_isqrt[:, None] * v_isqrt[None, :]  # V^-1/2 Sigma V^-1/2
        theta, G = _sorted_eigh(P, "correlation matrix")
        W_pca_cor = (G.T / np.sqrt(theta)[:, None]) * v_isqrt[None, :]  # Theta^-1/2 G^T V^-1/2
        return G @ W_pca_cor if kind == "zca-cor" else W_pca_cor
    # cholesky: W = L^T with L L^T = inv(Sigma)
    _check_positive_definite(np.linalg.eigvalsh(S), "covariance")
    try:
        c = scipy.linalg.cho_factor(S, lower=True)
    except np.linalg.LinAlgError as err:
        raise np.linalg.LinAlgError(
            "the covariance is not positive definite; pass eps > 0 to add a ridge") from err
    S_inv = scipy.linalg.cho_solve(c, np.eye(D))
    L = np.linalg.cholesky((S_inv + S_inv.T) / 2)
    return L.T


class Whitener:
    """Fit a whitening transform on data, then whiten and de-whiten.

    Example:
        >>> w = Whitener("zca").fit(X_train)          # X_train (N, D) or (N, C, H, W)
        >>> Z = w.transform(X_test)                    # (X - mu) @ W.T
        >>> X_back = w.inverse_transform(Z)            # Z @ inv(W).T + mu

    Attributes (after ``fit``):
        matrix: ``W`` ``(D, D)``; mean_: ``mu`` ``(D,)``; cov_: ``Sigma`` ``(D, D)`` (without
        the ridge); eps: the ridge used; n_samples_: N.
    """

    def __init__(self, kind: str = "zca", eps: float = 0.0):
        _check_kind(kind)
        if not (np.isfinite(eps) and eps >= 0):
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        self.kind = kind
        self.eps = float(eps)
        self.matrix: np.ndarray | None = None
        self.mean_: np.ndarray | None = None
        self.cov_: np.ndarray | None = None
        self.n_samples_: int | None = None
        self._lu = None

    def __repr__(self) -> str:
        state = "unfitted" if self.matrix is None else f"D={self.matrix.shape[0]}, N={self.n_samples_}"
        return f"Whitener(kind={self.kind!r}, eps={self.eps:g}, {state})"

    def fit(self, X) -> "Whitener":
        """Estimate ``mu`` and ``Sigma`` from the rows of ``X`` and build ``W``.

        Raises:
            ValueError: NaNs, fewer samples than dimensions without a ridge.
        """
        X, _ = _as_matrix(X, "X")
        N, D = X.shape
        if N <= D and self.eps == 0:
            raise ValueError(
                f"N={N} samples is not more than D={D} dimensions, so the sample covariance is "
                "singular; use more samples or pass eps > 0 (a ridge eps * I)")
        self.mean_ = X.mean(axis=0)
        self.cov_ = covariance(X)
        self.matrix = whitening_matrix(self.cov_, self.kind, self.eps)
        self.n_samples_ = N
        self._lu = None
        return self

    def _check_fitted(self, X) -> tuple[np.ndarray, tuple[int, ...]]:
        if self.matrix is None:
            raise RuntimeError("this Whitener is not fitted yet; call .fit(X) first")
        X, shape = _as_matrix(X, "input")
        if X.shape[1] != self.matrix.shape[0]:
            raise ValueError(
                f"input has D={X.shape[1]} features per sample, the Whitener was fitted on "
                f"D={self.matrix.shape[0]}")
        return X, shape

    def transform(self, X) -> np.ndarray:
        """Whiten: ``(X - mu) @ W.T``, in the input's per-sample shape (float64)."""
        X, shape = self._check_fitted(X)
        return ((X - self.mean_) @ self.matrix.T).reshape((-1, *shape))

    def inverse_transform(self, Z) -> np.ndarray:
        """De-whiten: ``Z @ inv(W).T + mu`` (a linear solve, no explicit inverse)."""
        Z, shape = self._check_fitted(Z)
        if self._lu is None:
            self._lu = scipy.linalg.lu_factor(self.matrix)
        X = scipy.linalg.lu_solve(self._lu, Z.T).T + self.mean_  # W x = z for each row
        return X.reshape((-1, *shape))


@dataclass(frozen=True)
class LinearFitMetrics:
    """Goodness of a linear fit ``Z ~ X @ W.T`` (paper Sec. 4.2)."""

    mse: float
    r2: float

    def __getitem__(self, key: str) -> float:  # also usable as {"mse": ..., "r2": ...}
        return getattr(self, key)


def _paired(X, Z) -> tuple[np.ndarray, np.ndarray]:
    X, _ = _as_matrix(X, "X")
    Z, _ = _as_matrix(Z, "Z")
    if X.shape[0] != Z.shape[0]:
        raise ValueError(f"X and Z must have the same number of rows, got {X.shape[0]} and {Z.shape[0]}")
    return X, Z


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
    X, Z = _paired(X, Z)
    N, D = X.shape
    if ridge < 0 or not np.isfinite(ridge):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
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


def _ridge_solve(evals: np.ndarray, evecs: np.ndarray, XtZ: np.ndarray, ridge: float) -> np.ndarray:
    """``(X^T X + ridge I)^-1 X^T Z`` from the eigendecomposition of ``X^T X``."""
    return evecs @ ((evecs.T @ XtZ) / (evals + ridge)[:, None])


def fit_linear_map_ridge_cv(X, Z, ridges=None, *, val_fraction: float = 0.125) -> RidgeFit:
    """Eq. (9) with a ridge, the ridge picked by R^2 on the last ``val_fraction`` of the pairs.

    With N pairs barely above D the plain least-squares fit of Eq. (9) fits noise (its in-sample
    R^2 is about ``D / N`` even for unrelated data); a ridge trades that variance for a little
    bias. One eigendecomposition of ``X^T X`` serves every candidate ridge.

    Args:
        X: images ``(N, D)``; Z: noises ``(N, D')`` (both centred here, as for Eq. 9).
        ridges: candidate ridges (> 0); default: 13 values from 1e-6 to 1e2 times the mean
            eigenvalue of ``X^T X``.
        val_fraction: share of the pairs (the last ones) held out to choose the ridge.

    Returns:
        a :class:`RidgeFit`.
    """
    X, Z = _paired(X, Z)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    X = X - X.mean(axis=0)
    Z = Z - Z.mean(axis=0)
    n_val = max(1, int(round(len(X) * val_fraction)))
    Xf, Zf, Xv, Zv = X[:-n_val], Z[:-n_val], X[-n_val:], Z[-n_val:]
    evals, evecs = np.linalg.eigh(Xf.T @ Xf)
    evals = evals.clip(0)
    scale = evals.mean()
    ridges = scale * np.geomspace(1e-6, 1e2, 13) if ridges is None else np.asarray(ridges, float)
    if np.any(ridges <= 0):
        raise ValueError("ridges must be positive")
    P = evecs.T @ (Xf.T @ Zf)  # X^T Z in the eigenbasis, once for every ridge
    Xv_e = Xv @ evecs
    var = float(np.var(Zv - Zf.mean(axis=0)))
    val_r2 = np.array([1 - np.mean((Xv_e @ (P / (evals + r)[:, None]) - Zv) ** 2) / var
                       for r in ridges])
    best = float(ridges[int(np.argmax(val_r2))])
    evals, evecs = np.linalg.eigh(X.T @ X)
    W = _ridge_solve(evals.clip(0), evecs, X.T @ Z, best).T
    return RidgeFit(W, best, ridges, val_r2)


def linear_fit_metrics(X, Z, W, *, center: bool = True) -> LinearFitMetrics:
    """MSE and R^2 of ``Z ~ X @ W.T`` (paper Sec. 4.2).

    ``MSE = ||X W^T - Z||^2 / (N D)`` and ``R^2 = 1 - MSE / Var(Z)``, with ``Var(Z)`` the
    variance of all entries of Z.

    Args:
        X: ``(N, D)``; Z: ``(N, D')``; W: ``(D', D)``.
        center: centre X and Z by their own column means first (as for :func:`fit_linear_map`).
    """
    X, Z = _paired(X, Z)
    W = _as_float64(W, "W")
    if W.shape != (Z.shape[1], X.shape[1]):
        raise ValueError(f"W must have shape {(Z.shape[1], X.shape[1])}, got {W.shape}")
    if center:
        X = X - X.mean(axis=0)
        Z = Z - Z.mean(axis=0)
    resid = X @ W.T - Z
    mse = float(np.mean(resid**2))
    return LinearFitMetrics(mse=mse, r2=1.0 - mse / float(np.var(Z)))


def whiteness_error(Z) -> float:
    """How far the sample covariance of ``Z`` is from the identity: ``||cov(Z) - I||_F / sqrt(D)``.

    0 for perfectly white data; for N truly white samples it is about ``sqrt(D / N)`` (sampling
    noise), and 1 for data whose covariance misses I by a unit eigenvalue everywhere.

    Shapes:
        Z ``(N, D)`` or ``(N, C, H, W)``.
    """
    C = covariance(Z)
    return float(np.linalg.norm(C - np.eye(C.shape[0])) / np.sqrt(C.shape[0]))


def cross_correlation(X, Z) -> np.ndarray:
    """Per-dimension Pearson correlation ``corr(z_i, x_i)`` between data and its transform.

    ZCA-cor whitening maximises the sum of these (Kessy et al. 2018); ZCA maximises the sum of
    cross-covariances.

    Shapes:
        X, Z ``(N, D)`` (or ``(N, C, H, W)``); returns ``(D,)``.
    """
    X, Z = _paired(X, Z)
    if X.shape != Z.shape:
        raise ValueError(f"X and Z must have the same shape, got {X.shape} and {Z.shape}")
    Xc, Zc = X - X.mean(axis=0), Z - Z.mean(axis=0)
    return (Xc * Zc).sum(axis=0) / np.sqrt((Xc**2).sum(axis=0) * (Zc**2).sum(axis=0))


def radial_profile(image: np.ndarray, center: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean of a 2-D array over rings of integer radius around a centre pixel.

    Used to show the centre-surround shape of ZCA filters.

    Returns:
        radii ``(R,)`` and the mean value on each ring ``(R,)``.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    yy, xx = np.indices(image.shape)
    r = np.rint(np.hypot(yy - center[0], xx - center[1])).astype(int)
    sums = np.bincount(r.ravel(), weights=image.ravel())
    counts = np.bincount(r.ravel())
    keep = counts > 0
    return np.flatnonzero(keep), sums[keep] / counts[keep]


def heldout_whiteness_vs_eps(cov_fit, cov_test, eps_values) -> np.ndarray:
    """Whiteness error on held-out data of whitening fitted with each ridge ``eps``.

    ``whiteness_error`` is the same for every kind of whitening (they differ by a rotation
    ``Q``, and ``||Q A Q^T - I||_F = ||A - I||_F``), so one eigen-decomposition of the fitted
    covariance serves all kinds and all ``eps``: with ``Sigma_fit = U Lambda U^T`` and
    ``M = U^T Sigma_test U``, the whitened held-out covariance is, up to rotation,
    ``S M S`` with ``S = (Lambda + eps)^-1/2``.

    Args:
        cov_fit: covariance the whitening is fitted on ``(D, D)``.
        cov_test: covariance of the held-out data ``(D, D)``.
        eps_values: ridges to try (each >= 0).

    Returns:
        ``||cov(Z_test) - I||_F / sqrt(D)`` for each eps ``(len(eps_values),)``.
    """
    S_fit = _as_float64(cov_fit, "cov_fit")
    S_test = _as_float64(cov_test, "cov_test")
    if S_fit.shape != S_test.shape or S_fit.ndim != 2 or S_fit.shape[0] != S_fit.shape[1]:
        raise ValueError(f"need two square matrices of one shape, got {S_fit.shape} and {S_test.shape}")
    lam, U = np.linalg.eigh((S_fit + S_fit.T) / 2)
    M = U.T @ S_test @ U
    D = lam.size
    out = []
    for eps in eps_values:
        shifted = lam + eps
        if eps < 0 or shifted.min() <= 0:
            raise ValueError(f"eps={eps} leaves a non-positive eigenvalue; use a larger eps")
        s = 1.0 / np.sqrt(shifted)
        out.append(np.linalg.norm(s[:, None] * M * s[None, :] - np.eye(D)) / np.sqrt(D))
    return np.array(out)


def matrix_norms(W) -> tuple[float, float]:
    """Spectral (2-) norm and Frobenius norm of a matrix (the paper's norms table, Sec. 4.2).

    Above 512 rows and columns the 2-norm is the square root of the largest eigenvalue of
    ``W^T W``, computed alone (about twice as fast as a full SVD on 3072 x 3072).
    """
    W = _as_float64(W, "W")
    if W.ndim != 2:
        raise ValueError(f"W must be a matrix, got shape {W.shape}")
    if not np.all(np.isfinite(W)):
        raise ValueError("W contains NaN or inf values")
    if min(W.shape) > 512:
        # largest eigenvalue of W^T W only (LAPACK's syevr on a subset), not a full SVD
        G = W.T @ W if W.shape[0] >= W.shape[1] else W @ W.T
        top = scipy.linalg.eigvalsh(G, subset_by_index=[len(G) - 1, len(G) - 1])
        two = float(np.sqrt(max(top[0], 0.0)))
    else:
        two = float(np.linalg.norm(W, 2))
    return two, float(np.linalg.norm(W, "fro"))


def covariance_eigh(cov) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns, sign-fixed) of a covariance."""
    return _sorted_eigh(_as_float64(cov, "cov"), "cov")


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
    W = _as_float64(W, "W")
    if (cov is None) == (eig is None):
        raise ValueError("give exactly one of cov and eig")
    lam, U = eig if eig is not None else covariance_eigh(cov)
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


def compare_maps(X, Z, X_test=None, Z_test=None, *, kinds=KINDS, eps: float = 0.0,
                 ridge: float = 0.0, maps: dict | None = None,
                 extra: dict | None = None) -> tuple[np.ndarray, list[MapComparison]]:
    """Fit ``W_Diff`` (Eq. 9) and compare it with every whitening matrix of ``X`` (Sec. 4.2).

    The whitening matrices come from the covariance of ``X`` alone; ``W_Diff`` from the pairs.

    Args:
        X, Z: fitting pairs, images and fixed-point noises ``(N, D)``.
        X_test, Z_test: optional held-out pairs ``(M, D)``.
        kinds: whitening kinds to compare.
        eps: ridge on the covariance for the whitening matrices.
        ridge: ridge for the least-squares fit of ``W_Diff``.
        maps: precomputed whitening matrices ``{kind: W}`` of the same ``X`` (to compare
            several models on the same images without recomputing them); ``kinds`` and
            ``eps`` are then ignored.
        extra: other maps fitted to the same pairs, ``{name: W}``, compared right after
            ``W_Diff`` (e.g. ``{"diff-ridge": fit_linear_map_ridge_cv(X, Z).W}``); their names
            must start with ``diff``, the names :func:`hypothesis_verdict` reads as fits.

    Returns:
        ``W_Diff`` ``(D, D)`` and one :class:`MapComparison` per method, ``diff`` first.
    """
    X, Z = _paired(X, Z)
    W_diff = fit_linear_map(X, Z, ridge=ridge)
    if maps is None:
        cov = covariance(X)
        maps = {k: whitening_matrix(cov, k, eps) for k in kinds}
    if any(k.startswith("diff") for k in maps):
        raise ValueError("maps must hold whitening matrices only; 'diff' is fitted here")
    extra = extra or {}
    if any(not k.startswith("diff") or k == "diff" for k in extra):
        raise ValueError("extra maps must be named 'diff-...' (fits to the pairs)")
    maps = {"diff": W_diff, **extra, **maps}
    held = X_test is not None and Z_test is not None
    if held:
        X_test, Z_test = _paired(X_test, Z_test)
    rows = []
    for method, W in maps.items():
        rows.append(MapComparison(
            method, linear_fit_metrics(X, Z, W),
            linear_fit_metrics(X_test, Z_test, W) if held else None,
            *matrix_norms(W), *matrix_norms(W - W_diff)))
    return W_diff, rows


@dataclass
class Verdict:
    """One of the paper's three points (Sec. 4.1) decided on numbers.

    Attributes:
        point: ``linearity``, ``whitening`` or ``closest to ZCA``.
        holds: whether the numbers pass the stated test.
        evidence: the numbers and the test, in words.
    """

    point: str
    holds: bool
    evidence: str


def hypothesis_verdict(rows: list[MapComparison], Z_diff, *, r2_min: float = 0.8,
                       whiteness_margin: float = 0.25, variance_tol: float = 0.25,
                       tie: float = 0.01) -> list[Verdict]:
    """Decide the paper's three points for one model from :func:`compare_maps`' rows.

    * linearity: a linear map explains the noises, R^2 >= ``r2_min`` (held-out when available,
      since an in-sample least-squares fit with D unknowns per row on N pairs scores about
      ``D / N`` even on unrelated data), for ``W_Diff`` or, when present, its ridge version;
    * whitening: ``Z_diff = X W_Diff^T`` is white as far as N samples can tell: its whiteness
      error (:func:`whiteness_error`) is at most ``sqrt(D / N) + whiteness_margin`` (``sqrt(D/N)``
      is what exactly white samples score) and its mean variance is within ``variance_tol`` of 1
      (which the zero map, scoring 1 on whiteness error, fails);
    * closest to ZCA: among the whitening kinds, ZCA has the best R^2 and the smallest
      ``||W - W_Diff||_F`` (a kind within ``tie``, relatively, of ZCA counts as a tie: ZCA and
      ZCA-cor nearly coincide when pixel variances are equal), and explains something
      (R^2 > 0: better than predicting zero).

    The thresholds are this book's, not the paper's (which gives none); they are printed with
    the verdict.

    Args:
        rows: from :func:`compare_maps`.
        Z_diff: the images mapped by ``W_Diff`` ``(N, D)``.

    Returns:
        three :class:`Verdict`.
    """
    by = {r.method: r for r in rows}
    if "diff" not in by or "zca" not in by:
        raise ValueError("rows must include 'diff' and 'zca' (from compare_maps)")
    diff = by["diff"]
    where = "held-out" if diff.held_out is not None else "in-sample"

    def r2(row: MapComparison) -> float:
        return (row.held_out if row.held_out is not None else row.in_sample).r2

    whitenings = [r for r in rows if not r.method.startswith("diff")]
    best_r2 = max(whitenings, key=r2)
    best_norm = min(whitenings, key=lambda r: r.diff_fro)
    linear = max((r for r in rows if r.method.startswith("diff")), key=r2)
    ridge_note = (f"; ridge fit {r2(by['diff-ridge']):.3f} {where}" if "diff-ridge" in by else "")
    Z_diff, _ = _as_matrix(Z_diff, "Z_diff")
    white = whiteness_error(Z_diff)
    variance = float(np.mean(np.var(Z_diff, axis=0, ddof=1)))
    floor = float(np.sqrt(Z_diff.shape[1] / Z_diff.shape[0]))
    zca = by["zca"]
    zca_first_r2 = r2(zca) >= r2(best_r2) - tie * abs(r2(best_r2))
    zca_first_norm = zca.diff_fro <= best_norm.diff_fro * (1 + tie)
    return [
        Verdict("linearity", r2(linear) >= r2_min,
                f"R^2 of W_Diff {r2(diff):.3f} {where} (in-sample {diff.in_sample.r2:.3f}){ridge_note}; "
                f"test: best >= {r2_min}"),
        Verdict("whitening", white <= floor + whiteness_margin and abs(variance - 1) <= variance_tol,
                f"||cov(X W_Diff^T) - I||_F / sqrt(D) = {white:.3f}, mean variance {variance:.3f}; "
                f"test: <= sqrt(D/N) + {whiteness_margin} = {floor + whiteness_margin:.3f} (white "
                f"samples score sqrt(D/N), the zero map 1) and variance within {variance_tol} of 1"),
        Verdict("closest to ZCA", zca_first_r2 and zca_first_norm and r2(by["zca"]) > 0,
                f"best whitening by {where} R^2: {best_r2.method} ({r2(best_r2):.3f}; ZCA "
                f"{r2(by['zca']):.3f}); smallest ||W - W_Diff||_F: {best_norm.method} "
                f"({best_norm.diff_fro:.4g}; ZCA {by['zca'].diff_fro:.4g}); test: ZCA first (ties within "
                f"{tie:.0%}) on both, with R^2 > 0"),
    ]
