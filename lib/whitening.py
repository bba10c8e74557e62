"""Whitening matrices (paper Eq. 5; Kessy, Lewin & Strimmer 2018) and how white data is.

The linear fits of Sec. 4 (Eq. 9) and the analysis of the first-step map are in
:mod:`lib.linear_map`.

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

import numpy as np
import scipy.linalg

from lib import checks
from lib.cache import cached
from lib.metrics import ring_average, standardize

__all__ = [
    "KINDS",
    "whitening_matrix",
    "whitening_matrices",
    "fit_whiteners",
    "Whitener",
    "covariance",
    "covariance_eigh",
    "whiteness_error",
    "cross_correlation",
    "radial_profile",
    "heldout_whiteness_vs_eps",
    "EPS_GRID",
    "best_ridge",
]

KINDS = ("zca", "zca-cor", "pca", "pca-cor", "cholesky")


def _check_kind(kind: str, name: str = "kind") -> None:
    checks.choice(kind, name, KINDS)


def _check_kinds(kinds) -> tuple[str, ...]:
    """``kinds`` as a tuple of known kinds: at least one, a string counts as one kind."""
    if not isinstance(kinds, str) and not hasattr(kinds, "__iter__"):
        raise ValueError(f"kinds must be whitening kinds of {KINDS}, got {kinds!r}")
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not kinds:
        raise ValueError(f"kinds needs at least one whitening kind of {KINDS}")
    for kind in kinds:
        _check_kind(kind, "each of kinds")
    return kinds


def _check_positive_definite(lam: np.ndarray, what: str) -> None:
    """Refuse (numerically) singular matrices: eigenvalues below D * machine-eps * largest."""
    floor = lam.size * np.finfo(np.float64).eps * max(float(np.max(lam)), 0.0)
    if np.min(lam) <= floor:
        raise np.linalg.LinAlgError(
            f"the {what} is singular or nearly so (smallest eigenvalue {np.min(lam):.3e}, "
            f"largest {np.max(lam):.3e}); pass eps > 0 to add a ridge eps * I, or use more "
            "samples than dimensions and no duplicated features")


# Large covariances and eigendecompositions go through the disk cache (lib.cache), keyed by
# the data's bytes: at D = 3,072 each takes seconds, and chapters 1, 5 and 6 and the gaussian
# model all use the same 20,000 training crops (chapters 3 and 4 another set).
@cached("1", name="eigh", min_values=1 << 20)
def _eigh(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh`` of a symmetric float64 matrix."""
    return np.linalg.eigh(S)


def _sorted_eigh(S: np.ndarray, what: str, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of ``S + shift I`` with decreasing eigenvalues and the sign convention
    U[i, i] > 0 (``S``'s own eigenvectors: one decomposition serves every ridge ``shift``)."""
    lam, U = _eigh(S)
    lam, U = lam[::-1] + shift, U[:, ::-1]
    _check_positive_definite(lam, what)
    signs = np.where(np.diag(U) < 0, -1.0, 1.0)
    return lam, U * signs


def covariance(X) -> np.ndarray:
    """Unbiased sample covariance (1 / (N - 1)) of the rows of ``X``.

    Shapes:
        X ``(N, D)`` or ``(N, C, H, W)``; returns ``(D, D)``.
    """
    X, _ = checks.samples(X, "X")
    if X.shape[0] < 2:
        raise ValueError("need at least two samples to estimate a covariance")
    return _covariance(X)


@cached("1", name="covariance", min_values=1 << 22)
def _covariance(X: np.ndarray) -> np.ndarray:
    Xc = X - X.mean(axis=0)
    # BLAS syrk: only one triangle of Xc^T Xc is computed (half the work of a product)
    upper = scipy.linalg.blas.dsyrk(1.0 / (X.shape[0] - 1), Xc.T)
    return np.triu(upper) + np.triu(upper, 1).T


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
    return whitening_matrices(cov, (kind,), eps)[kind]


def whitening_matrices(cov, kinds=KINDS, eps: float = 0.0) -> dict[str, np.ndarray]:
    """:func:`whitening_matrix` of several kinds, sharing the decompositions between them.

    ZCA and PCA need one eigen-decomposition of ``Sigma``, ZCA-cor and PCA-cor one of the
    correlation matrix; each is done once however many kinds use it (at D = 3,072 a
    decomposition takes seconds).

    Returns:
        ``{kind: W}`` in the order of ``kinds``.
    """
    kinds = _check_kinds(kinds)
    S = checks.array(cov, "cov")
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"cov must be a square (D, D) matrix, got shape {S.shape}")
    if not np.allclose(S, S.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(S).max())):
        raise ValueError("cov must be symmetric")
    eps = checks.number(eps, "eps", lo=0)
    D = S.shape[0]
    S = (S + S.T) / 2
    out: dict[str, np.ndarray] = {}
    if {"zca", "pca"} & set(kinds):  # _sorted_eigh also checks that Sigma is positive definite
        lam, U = _sorted_eigh(S, "covariance", shift=eps)  # Sigma + eps I = U (Lambda + eps) U^T
        out["pca"] = U.T / np.sqrt(lam)[:, None]  # Lambda^-1/2 U^T
        if "zca" in kinds:
            out["zca"] = U @ out["pca"]
    if not {"zca-cor", "pca-cor", "cholesky"} & set(kinds):
        return {kind: out[kind] for kind in kinds}
    S = S + eps * np.eye(D)  # the correlation and Cholesky kinds work on Sigma + eps I itself
    if {"zca-cor", "pca-cor"} & set(kinds):
        v = np.diag(S)
        if v.min() <= 0:
            raise np.linalg.LinAlgError(
                "a variance is zero, so the correlation matrix is undefined; pass eps > 0")
        v_isqrt = 1.0 / np.sqrt(v)
        P = S * v_isqrt[:, None] * v_isqrt[None, :]  # V^-1/2 Sigma V^-1/2
        theta, G = _sorted_eigh(P, "correlation matrix")
        W_pca_cor = (G.T / np.sqrt(theta)[:, None]) * v_isqrt[None, :]  # Theta^-1/2 G^T V^-1/2
        out["pca-cor"] = W_pca_cor
        if "zca-cor" in kinds:
            out["zca-cor"] = G @ W_pca_cor
    if "cholesky" in kinds:  # W = L^T with L L^T = inv(Sigma)
        if "pca" not in out:  # not checked by an eigendecomposition above
            _check_positive_definite(np.linalg.eigvalsh(S), "covariance")
        try:
            c = scipy.linalg.cho_factor(S, lower=True)
        except np.linalg.LinAlgError as err:
            raise np.linalg.LinAlgError(
                "the covariance is not positive definite; pass eps > 0 to add a ridge") from err
        S_inv = scipy.linalg.cho_solve(c, np.eye(D))
        out["cholesky"] = np.linalg.cholesky((S_inv + S_inv.T) / 2).T
    return {kind: out[kind] for kind in kinds}


def fit_whiteners(X, kinds=KINDS, eps: float = 0.0) -> dict[str, "Whitener"]:
    """``{kind: Whitener(kind, eps).fit(X)}``, with one covariance and shared decompositions."""
    X, _ = checks.samples(X, "X")
    kinds = _check_kinds(kinds)
    out = {kind: Whitener(kind, eps) for kind in kinds}
    first = out[kinds[0]]
    first._fit_moments(X)
    for kind, W in whitening_matrices(first.cov_, kinds, eps).items():
        w = out[kind]
        w.mean_, w.cov_, w.n_samples_, w.matrix = first.mean_, first.cov_, first.n_samples_, W
    return out


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
        self.kind = kind
        self.eps = checks.number(eps, "eps", lo=0)
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
        X, _ = checks.samples(X, "X")
        self._fit_moments(X)
        self.matrix = whitening_matrix(self.cov_, self.kind, self.eps)
        return self

    def _fit_moments(self, X: np.ndarray) -> None:
        N, D = X.shape
        if N <= D and self.eps == 0:
            raise ValueError(
                f"N={N} samples is not more than D={D} dimensions, so the sample covariance is "
                "singular; use more samples or pass eps > 0 (a ridge eps * I)")
        self.mean_ = X.mean(axis=0)
        self.cov_ = covariance(X)
        self.n_samples_ = N
        self._lu = None

    def _check_fitted(self, X) -> tuple[np.ndarray, tuple[int, ...]]:
        if self.matrix is None:
            raise RuntimeError("this Whitener is not fitted yet; call .fit(X) first")
        X, shape = checks.samples(X, "input")
        if X.shape[1] != self.matrix.shape[0]:
            raise ValueError(
                f"input has D={X.shape[1]} features per sample, the Whitener was fitted on "
                f"D={self.matrix.shape[0]}")
        return X, shape

    def cross_covariance(self, cov) -> np.ndarray:
        """``cov(z_i, x_i)`` per dimension for data of covariance ``cov`` (``(D, D)``): the
        diagonal of ``W Sigma``. ZCA maximises its sum (Kessy et al. 2018); for ZCA it is the
        diagonal of ``Sigma^1/2``."""
        if self.matrix is None:
            raise RuntimeError("this Whitener is not fitted yet; call .fit(X) first")
        cov = checks.array(cov, "cov")
        W = self.matrix
        if cov.shape != (W.shape[1], W.shape[1]):
            raise ValueError(f"cov must be ({W.shape[1]}, {W.shape[1]}), got {cov.shape}")
        return np.einsum("ij,ji->i", W, cov)

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


def whiteness_error(Z) -> float:
    """How far the sample covariance of ``Z`` is from the identity: ``||cov(Z) - I||_F / sqrt(D)``.

    0 for perfectly white data; for N truly white samples it is about ``sqrt(D / N)`` (sampling
    noise), and 1 for data whose covariance misses I by a unit eigenvalue everywhere.

    Shapes:
        Z ``(N, D)`` or ``(N, C, H, W)``.
    """
    Z, _ = checks.samples(Z, "Z")
    C = covariance(Z)
    return float(np.linalg.norm(C - np.eye(C.shape[0])) / np.sqrt(C.shape[0]))


def cross_correlation(X, Z) -> np.ndarray:
    """Per-dimension Pearson correlation ``corr(z_i, x_i)`` between data and its transform.

    ZCA-cor whitening maximises the sum of these (Kessy et al. 2018); ZCA maximises the sum of
    cross-covariances.

    Shapes:
        X, Z ``(N, D)`` (or ``(N, C, H, W)``); returns ``(D,)``.
    """
    X, Z = checks.paired_samples(X, Z)
    if X.shape != Z.shape:
        raise ValueError(f"X and Z must have the same shape, got {X.shape} and {Z.shape}")
    return (standardize(X, 0) * standardize(Z, 0)).sum(axis=0)


def radial_profile(image: np.ndarray, center: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean of a 2-D array over rings of integer radius around a centre pixel.

    Used to show the centre-surround shape of ZCA filters.

    Returns:
        radii ``(R,)`` and the mean value on each ring ``(R,)``.
    """
    image = checks.array(image, "image")
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be a non-empty 2-D array, got shape {image.shape}")
    if isinstance(center, (str, bytes)) or not hasattr(center, "__len__") or len(center) != 2:
        raise ValueError(f"center must be a (row, column) pair, got {center!r}")
    row, col = (checks.number(c, "center") for c in center)
    return ring_average(image, np.arange(image.shape[0]) - row, np.arange(image.shape[1]) - col)


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
    S_fit = checks.array(cov_fit, "cov_fit")
    S_test = checks.array(cov_test, "cov_test")
    if S_fit.shape != S_test.shape or S_fit.ndim != 2 or S_fit.shape[0] != S_fit.shape[1]:
        raise ValueError(f"cov_fit and cov_test must be square matrices of one shape, got "
                         f"{S_fit.shape} and {S_test.shape}")
    if isinstance(eps_values, (str, bytes)) or not hasattr(eps_values, "__iter__"):
        raise ValueError(f"eps_values must be a list of ridges >= 0, got {eps_values!r}")
    eps_values = [checks.number(eps, "each of eps_values", lo=0) for eps in eps_values]
    if not eps_values:
        raise ValueError("eps_values needs at least one ridge")
    lam, U = _eigh((S_fit + S_fit.T) / 2)
    M = U.T @ S_test @ U
    D = lam.size
    out = []
    for eps in eps_values:
        shifted = lam + eps
        if shifted.min() <= 0:
            raise ValueError(f"eps={eps} leaves a non-positive eigenvalue; use a larger eps")
        s = 1.0 / np.sqrt(shifted)
        out.append(np.linalg.norm(s[:, None] * M * s[None, :] - np.eye(D)) / np.sqrt(D))
    return np.array(out)


def covariance_eigh(cov) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns, sign-fixed) of a covariance."""
    S = checks.array(cov, "cov")
    if S.ndim != 2 or S.shape[0] != S.shape[1] or S.size == 0:
        raise ValueError(f"cov must be a square (D, D) matrix, got shape {S.shape}")
    return _sorted_eigh(S, "cov")


#: the ridges chapters 1, 3 and 4 choose a whitening's ridge from
EPS_GRID = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 1.0, 10.0)


def best_ridge(cov_fit, cov_test, eps_values=EPS_GRID) -> tuple[float, np.ndarray]:
    """The ridge whose whitening leaves held-out data whitest (chapter 1's choice).

    Args:
        cov_fit: covariance the whitening is fitted on ``(D, D)``.
        cov_test: covariance of held-out data ``(D, D)``.
        eps_values: candidate ridges.

    Returns:
        the ridge with the smallest :func:`heldout_whiteness_vs_eps`, and every candidate's error.
    """
    errors = heldout_whiteness_vs_eps(cov_fit, cov_test, eps_values)
    return float(eps_values[int(np.argmin(errors))]), errors
