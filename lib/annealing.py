"""Model-free search for correlated noises by simulated annealing (paper Sec. 5, Alg. 1).

Chapter 4 found that the first step of a diffusion model acts, roughly, as a de-whitening: from a
noise ``z`` the model's first estimate of the image is close to ``W_ZCA^-1 z`` (plus the mean).
So a noise whose de-whitened version looks like a target image ``x`` should make any model draw
something like ``x``, and finding it needs no model at all: only ``W_ZCA``, fitted on data.

:func:`anneal` runs Algorithm 1 for many chains at once. Every proposal is the spherical
interpolation of Eq. (11), ``sin(pi alpha / 2) z + cos(pi alpha / 2) eps`` with fresh ``eps ~
N(0, I)``, so a chain that accepted every proposal would stay exactly ``N(0, I)``; the
Metropolis rule with a linearly falling temperature pulls it towards a low loss. The three
losses of Sec. 5 (Eq. 10) are

* ``baseline``: ``||z - x||^2``,
* ``forward``: ``||W^-1 z + mu - x||^2`` (the de-whitened noise against the image),
* ``backward``: ``||z - W (x - mu)||^2`` (the noise against the whitened image),

each divided by ``D`` (a per-element mean, so that one temperature scale serves any resolution;
the paper's sums are ``D`` times these). ``mu`` is the data mean the whitening was fitted with
(the paper's images are centred; ours are not, so the mean is put back explicitly).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import torch
from tqdm.auto import tqdm

from lib import checks
from lib.noise import slerp_weights
from lib.numerics import rounding_jitter
from lib.whitening import Whitener

__all__ = ["LOSSES", "DeWhitening", "AnnealHistory", "AnnealResult", "anneal", "anneal_loss",
           "dewhitening"]

#: The losses of Eq. (10).
LOSSES = ("baseline", "forward", "backward")

#: A de-whitening matrix whose condition number exceeds this is refused as non-invertible.
MAX_CONDITION = 1e12


@dataclass(frozen=True)
class DeWhitening:
    """A whitening ``W`` with its inverse (the de-whitening) and the data mean.

    Attributes:
        whiten: ``W`` ``(D, D)``; dewhiten: ``W^-1`` ``(D, D)``; mean: ``mu`` ``(D,)``
        (all float64 numpy arrays).
    """

    whiten: np.ndarray
    dewhiten: np.ndarray
    mean: np.ndarray

    @property
    def dim(self) -> int:
        return self.whiten.shape[0]


def _square_matrix(M, name: str) -> np.ndarray:
    M = checks.array(M, name)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be a square (D, D) matrix, got shape {M.shape}")
    return M


def _invert(M: np.ndarray, name: str) -> np.ndarray:
    """``M^-1`` from one LU factorisation, refused when LAPACK's estimate of the 1-norm condition
    number exceeds :data:`MAX_CONDITION` (an SVD for the exact 2-norm one would cost five times
    the inverse at D = 3,072; the two norms' condition numbers differ by at most a factor D)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)  # exactly singular: rcond 0
        lu, piv = scipy.linalg.lu_factor(M, check_finite=False)
    gecon, = scipy.linalg.get_lapack_funcs(("gecon",), (lu,))
    rcond, info = gecon(lu, np.linalg.norm(M, 1), norm="1")
    cond = 1.0 / rcond if rcond > 0 and info == 0 else np.inf
    if not np.isfinite(cond) or cond > MAX_CONDITION:
        raise ValueError(
            f"{name} is not invertible (condition number about {cond:.3g}); fit the whitening "
            "with a ridge (Whitener('zca', eps=1e-3)) or with more samples than dimensions")
    return scipy.linalg.lu_solve((lu, piv), np.eye(M.shape[0]), check_finite=False)


def dewhitening(source, mean=None, *, name: str = "source") -> DeWhitening:
    """The matrices the forward and backward losses need, from a whitening.

    Args:
        source: a fitted :class:`lib.whitening.Whitener` (its ``matrix`` ``W`` and ``mean_``), a
            :class:`DeWhitening` (returned as is), or a de-whitening matrix ``W^-1`` ``(D, D)``
            (what the name ``dewhiten`` in :func:`anneal` refers to).
        mean: ``mu`` ``(D,)`` for a bare matrix (default zeros); not allowed with a Whitener.

    Raises:
        ValueError: a non-square, non-finite or non-invertible matrix, a mean of the wrong
            size, an unfitted Whitener.
    """
    if isinstance(source, DeWhitening):
        return source
    if isinstance(source, Whitener):
        if source.matrix is None:
            raise ValueError("the Whitener is not fitted yet; call .fit(X) first")
        if mean is not None:
            raise ValueError("a Whitener carries its own mean; do not pass mean=")
        W = _square_matrix(source.matrix, "the whitening matrix")
        return DeWhitening(W, _invert(W, "the whitening matrix"), np.asarray(source.mean_, np.float64))
    A = _square_matrix(source, name)
    mu = np.zeros(A.shape[0]) if mean is None else checks.array(mean, "mean").reshape(-1)
    if mu.shape != (A.shape[0],):
        raise ValueError(f"mean must be a vector of length D={A.shape[0]}, got shape {mu.shape}")
    return DeWhitening(_invert(A, name), A, mu)


def _comparison(X, loss: str, dewhiten, dtype, device):
    """What a loss compares: ``(X', A^T)`` such that the loss of noises ``Z`` ``(M, D)`` is
    ``mean((Z @ A^T - X')^2)`` per row (``A^T = None``: ``Z`` itself).

    ``X`` ``(M, D)`` holds the targets. Forward: ``A = W^-1`` and ``X' = X - mu``; backward:
    ``X' = (X - mu) W^T``; baseline: ``X' = X``.
    """
    X = X.to(device, dtype)
    if loss == "baseline":
        return X, None
    if dewhiten is None:
        raise ValueError(f"the {loss} loss needs dewhiten= (a fitted ZCA Whitener or W^-1)")
    dw = dewhitening(dewhiten, name="dewhiten")
    if dw.dim != X.shape[1]:
        raise ValueError(f"the whitening is {dw.dim}-dimensional but the targets have "
                         f"D={X.shape[1]} values")
    mu = torch.as_tensor(dw.mean, dtype=dtype, device=device)
    if loss == "forward":
        return X - mu, torch.as_tensor(dw.dewhiten.T, dtype=dtype, device=device)  # rows: z @ W^-1.T
    return (X - mu) @ torch.as_tensor(dw.whiten.T, dtype=dtype, device=device), None  # W (x - mu)


def anneal_loss(z, target, loss: str = "forward", dewhiten=None) -> np.ndarray:
    """The per-element loss of Eq. (10) of noises against targets, in float64.

    Use it to score any noise on any of the three losses (e.g. the result of one loss on
    another's yardstick).

    Shapes:
        z ``(N, C, H, W)``; target ``(N, C, H, W)`` or ``(1, C, H, W)``; returns ``(N,)``.
    """
    checks.choice(loss, "loss", LOSSES)
    z = checks.batch(z, "z").detach().cpu().double()
    x = checks.batch(target, "target").detach().cpu().double()
    if z.shape[1:] != x.shape[1:] or len(x) not in (1, len(z)):
        raise ValueError(f"z {tuple(z.shape)} and target {tuple(x.shape)} must be (N, C, H, W) "
                         "with one target or one per noise")
    X, A_T = _comparison(x.reshape(len(x), -1), loss, dewhiten, torch.float64, "cpu")
    Z = z.reshape(len(z), -1)
    return (((Z if A_T is None else Z @ A_T) - X) ** 2).mean(1).numpy()


@dataclass
class AnnealHistory:
    """What one run of :func:`anneal` went through.

    Attributes:
        temperature: ``T_k`` for ``k = 1..N`` ``(N,)``.
        loss: the current loss of every chain, before the first step and after each
            ``(N + 1, B, n_chains)``.
        best_loss: the best loss so far, same shape.
        acceptance: the fraction of chains that moved at each step ``(N,)``.
        uphill_acceptance: the fraction of the worse proposals that were accepted ``(N,)``
            (NaN where no proposal was worse).
        snapshots: ``{k: best noise after step k}`` ``(B, n_chains, *shape)`` on the CPU, at the
            iterations asked for with ``record_at``.
    """

    temperature: np.ndarray
    loss: np.ndarray
    best_loss: np.ndarray
    acceptance: np.ndarray
    uphill_acceptance: np.ndarray
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class AnnealResult:
    """Result of :func:`anneal`.

    Attributes:
        best: the best noise of every chain ``(B, n_chains, *shape)``.
        best_loss: its loss ``(B, n_chains)``.
        current: the chains' final states, same shape as ``best``.
        loss: the loss's name; history: an :class:`AnnealHistory`; seconds: wall time.
    """

    best: torch.Tensor
    best_loss: torch.Tensor
    current: torch.Tensor
    loss: str
    history: AnnealHistory
    seconds: float

    def flat(self) -> torch.Tensor:
        """``best`` as ``(B * n_chains, *shape)``, target-major (chains of target 0 first)."""
        return self.best.reshape(-1, *self.best.shape[2:])


def _check_anneal(target, loss, n_iters, n_chains, t_init, t_final, record_at):
    """The checked arguments of :func:`anneal` (the target as a tensor, record_at sorted)."""
    checks.choice(loss, "loss", LOSSES)
    x = checks.batch(target, "target")
    n_iters = checks.count(n_iters, "n_iters")
    n_chains = checks.count(n_chains, "n_chains")
    t_init = checks.number(t_init, "t_init", lo=0.0)
    t_final = checks.number(t_final, "t_final", lo=0.0)
    record_at = sorted(set(checks.integers(record_at, "record_at")))
    if record_at and record_at[-1] > n_iters:
        raise ValueError(f"record_at entries must lie in [0, n_iters={n_iters}], got {record_at[-1]}")
    return x, n_iters, n_chains, t_init, t_final, record_at


def anneal(target, *, loss: str = "forward", dewhiten=None, n_iters: int = 1000,
           t_init: float = 1e-3, t_final: float = 0.0, alpha: float = 0.9, n_chains: int = 1,
           init=None, generator: torch.Generator | None = None, device=None,
           record_at=(), progress: bool = False) -> AnnealResult:
    """Simulated annealing for noises correlated with target images (Alg. 1), many chains at once.

    Every chain runs Algorithm 1: at step ``k = 1..N`` the temperature is ``T_k = T_init +
    (T_final - T_init) k / N``; the proposal is Eq. (11) with fresh ``eps ~ N(0, I)``; a better
    proposal is accepted, a worse one with probability ``exp(-(L_new - L_cur) / T_k)`` (never at
    ``T_k = 0``); the best noise seen is kept. All chains of all targets advance together: the
    forward loss costs one ``(M, D) x (D, D)`` product per step for all ``M = B * n_chains``
    chains (it uses ``W^-1 z_new = sin W^-1 z_cur + cos W^-1 eps``).

    Args:
        target: images (or latents) ``(B, C, H, W)`` to correlate with, in the space the
            whitening was fitted in.
        loss: one of :data:`LOSSES`.
        dewhiten: what :func:`dewhitening` accepts (a fitted ZCA ``Whitener``, a
            :class:`DeWhitening` or the matrix ``W^-1``); needed for ``forward`` and ``backward``.
        n_iters: ``N``.
        t_init, t_final: the temperatures at the start and the end (>= 0), on the scale of the
            per-element losses.
        alpha: the step of Eq. (11) in [0, 1] (1 keeps the noise, 0 draws a new one).
        n_chains: independent chains per target (each with its own start and proposals).
        init: starting noises ``(B, n_chains, C, H, W)`` (default: fresh ``N(0, I)``).
        generator: a ``torch.Generator`` for the starts, the proposals and the acceptance draws;
            the same generator state gives the same result.
        device: where to compute (default: the target's device; pass ``"cuda"`` for a GPU).
        record_at: iterations ``k`` (0..N) at which to keep a copy of the best noises.
        progress: show a progress bar.

    Returns:
        an :class:`AnnealResult`, its tensors in float32 on the CPU (wherever it computed).

    Shapes:
        target ``(B, C, H, W)``; ``best`` ``(B, n_chains, C, H, W)``.
    """
    import time

    x, n_iters, n_chains, t_init, t_final, record_at = _check_anneal(
        target, loss, n_iters, n_chains, t_init, t_final, record_at)
    s, c = slerp_weights(alpha)  # Eq. (11); checks alpha
    device = checks.device(device) or x.device
    B, shape = x.shape[0], tuple(x.shape[1:])
    D, M = int(np.prod(shape)), B * n_chains
    dtype = torch.float32

    X, A_T = _comparison(x.reshape(B, D).repeat_interleave(n_chains, dim=0), loss, dewhiten,
                         dtype, device)  # (M, D), chain-major per target
    gen_device = generator.device if generator is not None else torch.device("cpu")

    def draw(sample, *size):  # torch.randn / torch.rand from the generator, moved to the device
        return sample(size, generator=generator, device=gen_device, dtype=dtype).to(device)

    if init is None:
        z = draw(torch.randn, M, D)
    else:
        z0 = checks.tensor(init, "init")
        if tuple(z0.shape) != (B, n_chains, *shape):
            raise ValueError(f"init must have shape {(B, n_chains, *shape)}, got {tuple(z0.shape)}")
        z = z0.reshape(M, D).to(device, dtype).clone()

    def view(z_):  # what the loss compares with X (jitter: identity unless testing)
        return rounding_jitter(z_ @ A_T) if A_T is not None else z_

    def loss_of(v):
        return ((v - X) ** 2).mean(dim=1)

    start = time.perf_counter()
    v = view(z)
    L = loss_of(v)
    z_best, L_best = z.clone(), L.clone()
    temps = t_init + (t_final - t_init) * np.arange(1, n_iters + 1) / n_iters
    # the history stays on the device until the end: no host round trip per iteration
    hist_loss = torch.empty((n_iters + 1, M), dtype=dtype, device=device)
    hist_best = torch.empty((n_iters + 1, M), dtype=dtype, device=device)
    n_accept, n_worse, n_uphill = (torch.empty(n_iters, dtype=torch.long, device=device)
                                   for _ in range(3))
    hist_loss[0] = hist_best[0] = L
    snapshots = {}
    if 0 in record_at:
        snapshots[0] = z_best.cpu().reshape(B, n_chains, *shape).clone()
    for k in tqdm(range(1, n_iters + 1), desc=f"annealing ({loss})", disable=not progress):
        T = float(temps[k - 1])
        eps = draw(torch.randn, M, D)
        z_new = s * z + c * eps  # Eq. (11)
        v_new = s * v + c * view(eps)  # linear: one product per step
        L_new = loss_of(v_new)
        worse = L_new >= L
        # a worse proposal is taken with probability exp(-dL / T); at T = 0 never (u < 0 fails)
        p_up = torch.exp(-(L_new - L) / T) if T > 0 else torch.zeros_like(L)
        accept = (L_new < L) | (draw(torch.rand, M) < p_up)
        z = torch.where(accept[:, None], z_new, z)
        v = torch.where(accept[:, None], v_new, v)
        L = torch.where(accept, L_new, L)
        better = L_new < L_best
        z_best = torch.where(better[:, None], z_new, z_best)
        L_best = torch.where(better, L_new, L_best)
        hist_loss[k], hist_best[k] = L, L_best
        n_accept[k - 1], n_worse[k - 1], n_uphill[k - 1] = accept.sum(), worse.sum(), (accept & worse).sum()
        if k in record_at:
            snapshots[k] = z_best.cpu().reshape(B, n_chains, *shape).clone()
    seconds = time.perf_counter() - start
    n_worse = n_worse.cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        uphill = np.where(n_worse > 0, n_uphill.cpu().numpy() / n_worse, np.nan)
    history = AnnealHistory(temperature=temps,
                            loss=hist_loss.cpu().numpy().reshape(-1, B, n_chains),
                            best_loss=hist_best.cpu().numpy().reshape(-1, B, n_chains),
                            acceptance=n_accept.cpu().numpy() / M, uphill_acceptance=uphill,
                            snapshots=snapshots)
    return AnnealResult(best=z_best.reshape(B, n_chains, *shape).cpu(),
                        best_loss=L_best.reshape(B, n_chains).cpu(),
                        current=z.reshape(B, n_chains, *shape).cpu(),
                        loss=loss, history=history, seconds=seconds)
