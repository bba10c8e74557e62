"""The noise that denoises to a given image in one step from time t (paper Eqs. 6-7).

Eq. (6) asks for ``eps`` with ``eps_theta(sqrt(abar_t) z0 + sqrt(1 - abar_t) eps; t) = eps``: the
noise the model would predict is the noise that was added, so one step of Eq. (3) from
``z_t = a z0 + s eps`` lands exactly on ``z0``. Eq. (7) finds it by fixed-point (Picard)
iteration ``eps^{n+1} = f(eps^n)`` with ``f(eps) = eps_theta(a z0 + s eps; t)``; Anderson
acceleration mixes the last few iterates to reach the same point in fewer model calls (with a
restart: where a step made a sample's residual grow, its history is dropped and the next step
is a plain Picard step, which keeps Anderson from running away on a non-linear network).

For the Gaussian-optimal model (``lib.models.GaussianModel``) everything is closed form:
``eps* = (s / a) Sigma^-1 (z0 - mu)``, and Picard contracts the error along each eigenvector of
``Sigma`` (eigenvalue ``lambda``) by ``s^2 / (a^2 lambda + s^2)`` per iteration, which is close to
1 for the small eigenvalues when ``t`` is near ``T``: the plain iteration is slow exactly in the
fine-detail directions. The tests check both facts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from lib import checks
from lib.cache import cached
from lib.models import GaussianModel
from lib.numerics import jittered
from lib.schedule import forward_noise, noise_scales

__all__ = ["FixedPointResult", "SolverRun", "picard", "anderson", "lbfgs", "fixed_point_noise",
           "fixed_point_starts", "fixed_point_sweep",
           "one_step_reconstruction", "input_norm", "relative_distance", "rounding_sensitivity",
           "gaussian_picard_gain", "gaussian_fixed_point", "fixed_point_pairs",
           "cached_fixed_point_pairs", "METHODS", "INITS", "SAFEGUARDS"]

METHODS = ("picard", "anderson", "minimize")
INITS = ("random", "zero")
SAFEGUARDS = ("increase", "blowup")
#: Anderson's "blowup" safeguard restarts a sample whose residual exceeds this times its best.
BLOWUP = 10.0


@dataclass
class FixedPointResult:
    """What :func:`fixed_point_noise` found, and how the iteration went.

    Attributes:
        noise: the last iterate ``eps`` ``(B, C, H, W)``.
        residuals: relative residual ``||f(eps^n) - eps^n|| / sqrt(D)`` of every sample at every
            iterate, ``(n_iters + 1, B)`` (row 0 is the initial noise); ``sqrt(D)`` is the norm
            of a standard Gaussian noise, so 1 means an error as large as the noise itself.
        recon_error: one-step reconstruction error ``||z_{0|t} - z0|| / ||z0||`` of the last
            iterate, Eq. (3) from ``z_t = a z0 + s eps`` ``(B,)``.
        converged: samples whose residual reached ``tol`` (all False when ``tol`` is None).
        diverged: samples whose residual ended non-finite, above its initial value, or more
            than 10x above its minimum (a minimum above the 1e-8 round-off level).
        t, method, iterations: the timestep, the method and the number of iterations run.
        evaluations: the cost spent up to each row of ``residuals``, in network forward passes
            (a backward pass counts as two), ``(iterations + 1,)``.
        snapshots: ``{k: iterate k}`` for the iterations asked for with ``snapshots=`` (on the
            CPU; the last iterate is ``noise``).
    """

    noise: torch.Tensor
    residuals: np.ndarray
    recon_error: np.ndarray
    converged: np.ndarray
    diverged: np.ndarray
    t: int
    method: str
    iterations: int
    evaluations: np.ndarray | None = None
    snapshots: dict | None = None

    @property
    def lowest(self) -> np.ndarray:
        """Each sample's smallest residual over the run ``(B,)``; NaN for a sample whose run
        produced a non-finite residual (a run that blew up is not credited with its past)."""
        return self.residuals.min(0)

    def reached(self, tol: float) -> np.ndarray:
        """Samples whose residual fell below ``tol`` at some iterate ``(B,)`` (whether or not the
        run stopped there, unlike ``converged``), among runs that stayed finite."""
        return self.lowest < tol

    def summary(self) -> str:
        """One line for the reader: residuals, convergence, divergence."""
        r = self.residuals
        return (f"{self.method}, t = {self.t}, {self.iterations} iterations: median relative residual "
                f"{np.median(r[0]):.3g} -> {np.median(r[-1]):.3g}; converged {int(self.converged.sum())}"
                f"/{len(self.converged)}, diverged {int(self.diverged.sum())}/{len(self.diverged)}; "
                f"median one-step reconstruction error {np.median(self.recon_error):.3g}")


def input_norm(model, z0, noise, t: int) -> np.ndarray:
    """``||z_t|| / sqrt(D)`` of ``z_t = a z0 + s noise`` (Eq. 1) per sample: where an iterate
    puts the network's input, against the inputs it was trained on (``noise ~ N(0, I)``).

    Shapes:
        z0, noise ``(B, C, H, W)``; returns ``(B,)``.
    """
    z0 = checks.batch(z0, "z0")
    z_t = forward_noise(z0, noise, _timestep(model, t), model.alphas_cumprod)
    return (z_t.flatten(1).norm(dim=1) / np.sqrt(z0[0].numel())).cpu().numpy()


def relative_distance(noise, exact) -> np.ndarray:
    """``||noise - exact|| / ||exact||`` per sample, over the coordinates where ``exact`` is
    finite in every sample (:func:`gaussian_fixed_point` has none in a zero-variance direction).

    Shapes:
        noise, exact ``(B, C, H, W)`` or ``(B, D)``; returns ``(B,)``.
    """
    noise = checks.tensor(noise, "noise").detach().cpu().double().flatten(1)
    exact = checks.real_values(exact, "exact")  # infinite where the fixed point has no value
    exact = (exact if torch.is_tensor(exact) else torch.as_tensor(exact)).cpu().double().flatten(1)
    if noise.shape != exact.shape:
        raise ValueError(f"noise {tuple(noise.shape)} and exact {tuple(exact.shape)} differ in shape")
    finite = torch.isfinite(exact).all(dim=0)
    if not finite.any():
        raise ValueError("exact has no coordinate that is finite in every sample")
    return ((noise - exact)[:, finite].norm(dim=1) / exact[:, finite].norm(dim=1)).numpy()


def rounding_sensitivity(model, z0, t: int, iters: int, first, **kwargs) -> float:
    """How far an end point of :func:`fixed_point_noise` moves when every noise prediction is
    off by about 1e-6 of its size (:func:`lib.numerics.jittered`: a rounding difference such as
    another CPU's): the median of ``||again - first|| / ||first||`` over the batch.

    Args:
        model, z0, t, iters, **kwargs: the run, as given to :func:`fixed_point_noise`.
        first: that run's end points ``(B, C, H, W)``, computed without the perturbation.
    """
    with jittered():
        again = fixed_point_noise(model, z0, t, iters, **kwargs).noise
    first = checks.tensor(first, "first").to(again)
    return float(np.median((_norm(again - first) / _norm(first)).cpu().numpy()))


def _timestep(model, t) -> int:
    """``t`` checked against the model's schedule (:func:`lib.checks.timestep`)."""
    return checks.timestep(t, "t", steps=len(model.alphas_cumprod))


def _norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


def fixed_point_noise(model, z0, t: int, iters: int, *, init="random", method: str = "picard",
                      tol: float | None = None, cond=None, guidance_scale: float | None = None,
                      memory: int = 5, safeguard: str = "increase", relaxation: float = 1.0,
                      generator: torch.Generator | None = None, snapshots=(),
                      max_evaluations: int | None = None,
                      progress: bool = False) -> FixedPointResult:
    """Solve Eq. (6) for each image of a batch by the iteration of Eq. (7).

    Args:
        model: a :class:`lib.models.DiffusionModel`.
        z0: clean images (or latents) ``(B, C, H, W)`` in the model's space.
        t: the fixed timestep (the paper uses ``0.98 T``, t = 980).
        iters: maximum number of iterations (model evaluations beyond the first).
        init: ``"random"`` (Gaussian noise from ``generator``), ``"zero"``, or a tensor
            ``(B, C, H, W)``.
        method: ``"picard"`` (Eq. 7 as written), ``"anderson"`` (Anderson acceleration with
            ``memory`` past iterates) or ``"minimize"`` (L-BFGS with a strong-Wolfe line search
            on ``sum_b ||eps_theta(z_t(eps_b)) - eps_b||^2 / 2``, gradients by autograd through
            the network; one line search for the whole batch; ``memory`` is its history).
        tol: stop once every sample's relative residual is below this.
        cond, guidance_scale: passed to ``model.eps``.
        safeguard: when Anderson drops a sample's history (its next step is then Picard's):
            ``"increase"`` wherever the residual grew at all (the original rule; on a
            non-monotone problem it makes Anderson mostly Picard), ``"blowup"`` only where the
            residual exceeds 10 times the smallest it has had (a real blow-up).
        relaxation: ``beta`` in (0, 1] of damped Picard, ``eps <- (1 - beta) eps + beta f(eps)``
            (1: Eq. 7 as written); Picard only.
        snapshots: iteration counts ``k`` (0 to ``iters``) whose iterates are kept, so that one
            run gives the map after 10, 20, 50, ... iterations (``result.snapshots``).
        max_evaluations: stop once this many network evaluations are spent (a backward pass
            counts as two; see ``FixedPointResult.evaluations``), so that solvers of different
            cost per iteration can be compared at the same cost.

    Returns:
        a :class:`FixedPointResult`.
    """
    z0 = checks.batch(z0, "z0")
    iters, memory, relaxation, snapshots = _check_solver(method, iters, memory, safeguard,
                                                         relaxation, snapshots)
    checks.guidance(guidance_scale)
    if max_evaluations is not None:
        max_evaluations = checks.count(max_evaluations, "max_evaluations")
    t = _timestep(model, t)
    a, s = noise_scales(t, model.alphas_cumprod, dtype=z0.dtype)
    eps = _initial_noise(init, z0, generator)

    def f(e: torch.Tensor) -> torch.Tensor:  # Eq. (7): the model's noise at z_t(e)
        return model.eps(a * z0 + s * e, t, cond, guidance_scale).to(z0.dtype)

    def f_grad(e: torch.Tensor) -> torch.Tensor:  # the same, differentiable (L-BFGS)
        return model.eps_differentiable(a * z0 + s * e, t, cond, guidance_scale).to(z0.dtype)

    common = dict(tol=tol, max_evaluations=max_evaluations, snapshots=snapshots,
                  scale=float(np.sqrt(z0[0].numel())), progress=progress)
    if method == "picard":
        run = picard(f, eps, iters, relaxation=relaxation, **common)
    elif method == "anderson":
        run = anderson(f, eps, iters, memory=memory, safeguard=safeguard, **common)
    else:
        run = lbfgs(f, f_grad, eps, iters, memory=memory, **common)
    # z_{0|t} - z0 = s/a (eps - f): the one-step reconstruction error from the residual
    recon = (s / a * _norm(run.residual) / _norm(z0).clamp_min(1e-12)).cpu().numpy()
    res = run.residuals
    converged = np.isfinite(res[-1]) & (res[-1] < tol) if tol is not None \
        else np.zeros(res.shape[1], dtype=bool)
    return FixedPointResult(noise=run.noise, residuals=res, recon_error=recon,
                            converged=converged, diverged=_diverged(res), t=t, method=method,
                            iterations=len(res) - 1, evaluations=run.evaluations,
                            snapshots=run.snapshots)


@dataclass
class SolverRun:
    """What one of the solvers :func:`picard`, :func:`anderson` and :func:`lbfgs` returns.

    Attributes:
        noise: the last iterate ``eps``; residual: ``f(eps) - eps`` there.
        residuals: ``||f(eps^n) - eps^n|| / scale`` of every sample at every iterate
            ``(iterations + 1, B)``; evaluations: the network evaluations spent up to each.
        snapshots: ``{k: iterate k}`` (on the CPU) for the asked ``k``.
    """

    noise: torch.Tensor
    residual: torch.Tensor
    residuals: np.ndarray
    evaluations: np.ndarray
    snapshots: dict


class _Trace:
    """A solver's record: residuals and cost at each iterate, the snapshots asked for, and when
    to stop (every residual below ``tol``, or ``max_evaluations`` spent)."""

    def __init__(self, *, tol, max_evaluations, snapshots, scale: float):
        self.tol, self.max_evaluations, self.snapshots = tol, max_evaluations, snapshots
        self.scale, self.residuals, self.cost, self.kept = scale, [], [], {}

    def record(self, eps: torch.Tensor, g: torch.Tensor, spent: float) -> None:
        self.residuals.append((_norm(g) / self.scale).cpu().numpy())
        self.cost.append(spent)
        if len(self.residuals) - 1 in self.snapshots:
            self.kept[len(self.residuals) - 1] = eps.detach().cpu().clone()

    def done(self) -> bool:
        return (self.tol is not None and bool((self.residuals[-1] < self.tol).all())) or \
            (self.max_evaluations is not None and self.cost[-1] >= self.max_evaluations)

    def run(self, eps: torch.Tensor, g: torch.Tensor) -> SolverRun:
        return SolverRun(noise=eps, residual=g, residuals=np.stack(self.residuals),
                         evaluations=np.asarray(self.cost, dtype=float), snapshots=self.kept)


def picard(f, eps: torch.Tensor, iters: int, *, relaxation: float = 1.0, tol=None,
           max_evaluations=None, snapshots=(), scale: float = 1.0,
           progress: bool = False) -> SolverRun:
    """Eq. (7), damped by ``relaxation`` (beta): ``eps <- (1 - beta) eps + beta f(eps)``, one
    network evaluation per iteration, each sample on its own.

    Args:
        f: the map whose fixed point is sought (the model's noise at ``z_t(eps)``).
        eps: the start; iters: at most this many iterations.
        tol, max_evaluations, snapshots, progress: as for :func:`fixed_point_noise`;
        scale: the residuals are divided by it (``sqrt(D)``).
    """
    trace = _Trace(tol=tol, max_evaluations=max_evaluations, snapshots=snapshots, scale=scale)
    fx = f(eps)
    g = fx - eps  # residual of Eq. (6)
    trace.record(eps, g, 1.0)
    for _ in tqdm(range(iters), desc="fixed point (picard)", disable=not progress, leave=False):
        if trace.done():
            break
        eps = fx if relaxation == 1 else eps + relaxation * g
        fx = f(eps)
        g = fx - eps
        trace.record(eps, g, trace.cost[-1] + 1)
        if not torch.isfinite(eps).all():
            break
    return trace.run(eps, g)


def anderson(f, eps: torch.Tensor, iters: int, *, memory: int = 5, safeguard: str = "increase",
             tol=None, max_evaluations=None, snapshots=(), scale: float = 1.0,
             progress: bool = False) -> SolverRun:
    """Anderson acceleration (type II) of Eq. (7) with ``memory`` past iterates, one network
    evaluation per iteration, each sample on its own; where the residual grows
    (``safeguard="increase"``) or blows up (``"blowup"``: :data:`BLOWUP` times its best) a
    sample forgets its history, so that its next step is Picard's. Other arguments: as for
    :func:`picard`."""
    trace = _Trace(tol=tol, max_evaluations=max_evaluations, snapshots=snapshots, scale=scale)
    fx = f(eps)
    g = fx - eps
    trace.record(eps, g, 1.0)
    dX, dG = [], []  # differences of iterates and of residuals, each (B, D)
    best = _norm(g)  # smallest residual norm so far, per sample
    for _ in tqdm(range(iters), desc="fixed point (anderson)", disable=not progress, leave=False):
        if trace.done():
            break
        new = _anderson_step(eps, g, dX, dG) if dX else fx
        f_new = f(new)
        g_new = f_new - new
        best = _remember(dX, dG, new - eps, g_new - g, g_new, g, best, memory, safeguard)
        eps, fx, g = new, f_new, g_new
        trace.record(eps, g, trace.cost[-1] + 1)
        if not torch.isfinite(eps).all():
            break
    return trace.run(eps, g)


def lbfgs(f, f_grad, eps: torch.Tensor, iters: int, *, memory: int = 5, tol=None,
          max_evaluations=None, snapshots=(), scale: float = 1.0,
          progress: bool = False) -> SolverRun:
    """L-BFGS with a strong-Wolfe line search on ``sum_b ||f(eps_b) - eps_b||^2 / 2``, one line
    search for the whole batch, gradients by autograd through ``f_grad`` (``f`` with a graph);
    a forward and backward pass count as three evaluations. Other arguments: as for
    :func:`picard`."""
    trace = _Trace(tol=tol, max_evaluations=max_evaluations, snapshots=snapshots, scale=scale)
    e = eps.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([e], lr=1.0, max_iter=1, history_size=memory,
                            tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")
    spent, last = [0.0], {}

    def closure():
        r = f_grad(e) - e  # residual of Eq. (6), with the graph through the network
        loss = 0.5 * (r.double() ** 2).sum()
        (e.grad,) = torch.autograd.grad(loss, e)  # only d/d eps: no gradients for the weights
        spent[0] += 3.0  # one forward and one backward pass (about two forwards)
        last["e"], last["g"] = e.detach().clone(), r.detach()
        return loss

    with torch.no_grad():
        g = f(e.detach()) - e.detach()
    spent[0] += 1.0
    trace.record(e.detach(), g, spent[0])
    for _ in tqdm(range(iters), desc="fixed point (minimize)", disable=not progress, leave=False):
        if trace.done():
            break
        opt.step(closure)
        now = e.detach()
        if "e" in last and torch.equal(last["e"], now):
            g = last["g"]
        else:  # the line search ended elsewhere than its last evaluation
            with torch.no_grad():
                g = f(now) - now
            spent[0] += 1.0
        trace.record(now, g, spent[0])
        if not torch.isfinite(now).all():
            break
    return trace.run(e.detach(), g)


def _check_solver(method, iters, memory, safeguard, relaxation, snapshots):
    """The checked solver arguments ``(iters, memory, relaxation, snapshots)``."""
    checks.choice(method, "method", METHODS)
    iters = checks.count(iters, "iters", 0)
    memory = checks.count(memory, "memory")
    if safeguard not in SAFEGUARDS:
        raise ValueError(f"unknown safeguard {safeguard!r}; expected one of {SAFEGUARDS}")
    relaxation = checks.fraction(relaxation, "relaxation")
    if relaxation != 1 and method != "picard":
        raise ValueError("relaxation applies to method='picard' only")
    snapshots = sorted({int(k) for k in snapshots})
    if snapshots and not 0 <= snapshots[0] <= snapshots[-1] <= iters:
        raise ValueError(f"snapshots must lie in [0, iters = {iters}], got {snapshots}")
    return iters, memory, relaxation, snapshots


def _anderson_step(eps, g, dX: list, dG: list) -> torch.Tensor:
    """Anderson (type II): ``eps + g - (dX + dG) gamma`` with ``gamma = argmin ||g - dG gamma||``
    per sample, from the histories of iterate and residual differences (each ``(B, D)``)."""
    B = eps.shape[0]
    Xm, Gm = torch.stack(dX, -1).double(), torch.stack(dG, -1).double()  # (B, D, m)
    gv = g.reshape(B, -1, 1).double()
    gram = Gm.transpose(1, 2) @ Gm
    # a tiny ridge; a sample whose history was dropped has gram = 0 and gets gamma = 0
    ridge = (1e-10 * gram.diagonal(dim1=1, dim2=2).mean(-1)).clamp_min(1e-30)
    gram = gram + ridge.view(B, 1, 1) * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    gamma = torch.linalg.solve(gram, Gm.transpose(1, 2) @ gv)  # (B, m, 1)
    step = gv - (Xm + Gm) @ gamma
    return eps + step.reshape(eps.shape).to(eps.dtype)


def _remember(dX: list, dG: list, d_eps, d_g, g_new, g, best, memory: int, safeguard: str):
    """Add one step to Anderson's histories (at most ``memory``) and apply the safeguard: where
    the residual grew (or blew up), forget the history, so that the next step is Picard's.
    Returns the smallest residual norm so far, per sample."""
    B = g.shape[0]
    dX.append(d_eps.reshape(B, -1))
    dG.append(d_g.reshape(B, -1))
    if len(dX) > memory:
        dX.pop(0)
        dG.pop(0)
    worse = _norm(g_new) > (_norm(g) if safeguard == "increase" else BLOWUP * best)
    best = torch.minimum(best, _norm(g_new))
    if worse.any():
        for k in range(len(dX)):
            dX[k][worse] = 0
            dG[k][worse] = 0
    return best


def _initial_noise(init, z0: torch.Tensor, generator) -> torch.Tensor:
    """The start of the iteration: ``"random"``, ``"zero"`` or a tensor of ``z0``'s shape."""
    if isinstance(init, str):
        if init == "random":
            eps = torch.randn(z0.shape, generator=generator, dtype=z0.dtype)
        elif init == "zero":
            eps = torch.zeros_like(z0)
        else:
            raise ValueError(f"unknown init {init!r}; expected one of {INITS} or a tensor")
    else:
        eps = checks.batch(init, "init", floating=True).to(z0.dtype)
        if eps.shape != z0.shape:
            raise ValueError(f"init must have the shape of z0 {tuple(z0.shape)}, got {tuple(eps.shape)}")
    return eps.to(z0.device)


def _diverged(res: np.ndarray) -> np.ndarray:
    """Rising runs of a residual history ``(iterations + 1, B)``: ended non-finite, above the
    start, or :data:`BLOWUP` times above the minimum (unless that minimum is at the round-off
    level)."""
    low = np.nanmin(res, axis=0)
    return ~np.isfinite(res[-1]) | (res[-1] > res[0]) | ((res[-1] > BLOWUP * low) & (low > 1e-8))


def fixed_point_starts(model, z0, t: int, iters: int, inits: dict, **kwargs
                       ) -> dict[str, FixedPointResult]:
    """:func:`fixed_point_noise` of the same images from several starts, one result per start.

    Picard (damped or not) and Anderson treat every sample on its own, so without a tolerance
    (which stops the whole batch at once) all starts run as one batch, which is faster than
    one call per start on a CPU; the results are those of separate calls up to float rounding.
    L-BFGS shares one line search across its batch, so it runs each start on its own.

    Args:
        inits: ``{name: init}``, each what ``fixed_point_noise`` takes as ``init`` (a tensor of
            ``z0``'s shape, ``"zero"`` or ``"random"``; ``"random"`` draws from ``generator``).
        **kwargs: the other arguments of :func:`fixed_point_noise`.
    """
    if not inits:
        raise ValueError("inits must name at least one start")
    z0 = checks.batch(z0, "z0")
    method, cond, B = kwargs.get("method", "picard"), kwargs.get("cond"), z0.shape[0]
    stackable_cond = cond is None or (torch.is_tensor(cond) and cond.shape[:1] in ((1,), (B,)))
    if method == "minimize" or kwargs.get("tol") is not None or len(inits) == 1 \
            or not stackable_cond:
        return {name: fixed_point_noise(model, z0, t, iters, init=init, **kwargs)
                for name, init in inits.items()}
    starts = [_initial_noise(init, z0, kwargs.get("generator")) for init in inits.values()]
    k = len(starts)
    kwargs.pop("cond", None)
    if cond is not None and cond.shape[0] == B and B > 1:
        cond = torch.cat([cond] * k)
    both = fixed_point_noise(model, torch.cat([z0] * k), t, iters, init=torch.cat(starts),
                             cond=cond, **kwargs)
    out = {}
    for j, name in enumerate(inits):
        part = slice(j * B, (j + 1) * B)
        out[name] = dataclasses.replace(
            both, noise=both.noise[part], residuals=both.residuals[:, part],
            recon_error=both.recon_error[part], converged=both.converged[part],
            diverged=both.diverged[part], snapshots=None if both.snapshots is None else
            {i: v[part] for i, v in both.snapshots.items()})
    return out


def fixed_point_sweep(model, z0, ts, iters: int, **kwargs) -> dict[int, FixedPointResult]:
    """Run :func:`fixed_point_noise` on the same images at several timesteps (the paper's Fig. 3).

    Args:
        model, z0, iters: as for :func:`fixed_point_noise`.
        ts: the timesteps.
        **kwargs: passed to :func:`fixed_point_noise`. A ``generator`` is shared by all ``t``
            (each draws a different random start); pass an ``init`` tensor to start every ``t``
            from the same noise.

    Returns:
        ``{t: FixedPointResult}`` in the order of ``ts``.
    """
    return {t: fixed_point_noise(model, z0, t, iters, **kwargs)
            for t in (_timestep(model, t) for t in ts)}


def one_step_reconstruction(model, z0, noise, t: int, cond=None, guidance_scale=None) -> torch.Tensor:
    """``z_{0|t}`` of Eq. (3) from ``z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) noise``.

    Equals ``z0`` exactly when ``noise`` solves Eq. (6).

    Shapes:
        z0, noise and the result ``(B, C, H, W)``.
    """
    z0 = checks.batch(z0, "z0")
    noise = checks.batch(noise, "noise").to(z0)
    t = _timestep(model, t)
    if z0.shape != noise.shape:
        raise ValueError(f"z0 {tuple(z0.shape)} and noise {tuple(noise.shape)} differ in shape")
    a, s = noise_scales(t, model.alphas_cumprod, dtype=z0.dtype)
    z_t = a * z0 + s * noise  # Eq. (1)
    eps_hat = model.eps(z_t, t, cond, guidance_scale).to(z0.dtype)
    return (z_t - s * eps_hat) / a  # Eq. (3)


def gaussian_picard_gain(lam, abar: float, iters: int | None, relaxation: float = 1.0) -> np.ndarray:
    """The map image -> fixed-point noise of the Gaussian model, per eigendirection of ``Sigma``.

    Picard from ``eps^0 = 0`` gives ``eps^K = g_K(lambda) u^T (z0 - mu)`` along each eigenvector
    ``u`` with ``g_K = (1 - c^K) (s / a) / lambda``, ``c = s^2 / (a^2 lambda + s^2)``. The limit
    ``K -> inf`` is the exact fixed point ``(s / a) / lambda`` (a ``lambda^-1`` law, not ZCA's
    ``lambda^-1/2``); for ``K a^2 lambda << s^2`` the gain is about ``K a / s``, flat in
    ``lambda``. Damped Picard with relaxation ``beta`` contracts the error by
    ``1 - beta (1 - c)`` per step instead of ``c``.

    Args:
        lam: eigenvalues of ``Sigma`` (> 0).
        abar: ``abar_t`` of the timestep.
        iters: ``K``; None for the exact fixed point.
        relaxation: ``beta`` of damped Picard (1: plain Picard).

    Returns:
        the gains, shaped like ``lam``.
    """
    lam = checks.eigenvalues(lam)
    abar = checks.fraction(abar, "abar", one=False)
    a, s = np.sqrt(abar), np.sqrt(1 - abar)
    exact = (s / a) / lam
    if iters is None:
        return exact
    iters = checks.count(iters, "iters", lo=0)
    relaxation = checks.fraction(relaxation, "relaxation")
    c = 1 - relaxation * a**2 * lam / (a**2 * lam + s**2)  # 1 - beta (1 - s^2 / (a^2 lam + s^2))
    return (1 - c ** int(iters)) * exact


def gaussian_fixed_point(model, z0, t: int) -> torch.Tensor:
    """The exact solution of Eq. (6) for the Gaussian-optimal model (a
    :class:`lib.models.GaussianModel`): ``eps* = (s / a) U diag(1 / lambda) U^T (z0 - mu)``.

    It is what a converged iteration would return, so it tells how far a run's end point is
    from the fixed point, which its residual does not (directions with small ``lambda`` are
    both the slowest to converge and the largest part of ``eps*``).

    Returns:
        ``eps*`` ``(B, C, H, W)`` (float64 on the CPU); infinite along zero eigenvalues.
    """

    if not isinstance(model, GaussianModel):
        raise TypeError(f"the closed form exists for the Gaussian model only, got "
                        f"{type(model).__name__}")
    z0 = checks.batch(z0, "z0")
    a, s = noise_scales(_timestep(model, t), model.alphas_cumprod, dtype=torch.float64)
    x = z0.detach().cpu().double().reshape(len(z0), -1) - model.mean  # (B, D)
    inv = (s / a) / model.eigvals  # inf along zero eigenvalues
    eps = ((x @ model.eigvecs) * inv) @ model.eigvecs.T
    return eps.reshape(z0.shape)


@dataclass
class FixedPointPairs:
    """Image / fixed-point-noise pairs for the linear analysis of Sec. 4.

    Attributes:
        X: images ``(N, D)``; Z: their fixed-point noises ``(N, D)`` (float64, not centred).
        residuals: final relative residual per pair ``(N,)``.
        recon_error: one-step reconstruction error per pair ``(N,)``.
        diverged: pairs whose iteration diverged ``(N,)``.
        iterations: iterations of Eq. (7) behind ``Z``.
        snapshots: ``{k: FixedPointPairs}`` after ``k`` iterations of the same runs, for the
            ``snapshots`` asked for (empty otherwise).
    """

    X: np.ndarray
    Z: np.ndarray
    residuals: np.ndarray
    recon_error: np.ndarray
    diverged: np.ndarray
    iterations: int = 0
    snapshots: dict = field(default_factory=dict)


def fixed_point_pairs(model, images, t: int, iters: int, *, method: str = "anderson",
                      init="zero", batch_size: int = 256, cond=None, guidance_scale=None,
                      memory: int = 5, generator: torch.Generator | None = None,
                      snapshots=(), progress: bool = True, **kwargs) -> FixedPointPairs:
    """Solve Eq. (6) for many images in batches (the paper's N noise/image pairs, Sec. 4.1).

    Args:
        model: a :class:`lib.models.DiffusionModel`.
        images: ``(N, C, H, W)`` in the model's space.
        t, iters, method, init, cond, guidance_scale, memory, generator: as for
            :func:`fixed_point_noise`, applied batch by batch (a random start continues the
            generator from batch to batch; a tensor ``init`` gives each image its own start).
        batch_size: images per batch.
        snapshots: iteration counts below ``iters`` whose pairs are kept as well (one run gives
            the map after each of them: ``result.snapshots[k]``).
        **kwargs: passed to :func:`fixed_point_noise` (``relaxation``, ``safeguard``).

    Returns:
        a :class:`FixedPointPairs`.
    """
    batch_size = checks.count(batch_size, "batch_size")
    images = checks.batch(images, "images", layout="(N, C, H, W)")
    ks = sorted({int(k) for k in snapshots} - {iters})
    if isinstance(init, str):
        inits = [init] * len(range(0, len(images), batch_size))
    else:  # a start per image (e.g. the iterates of an earlier run, to continue it)
        init = checks.batch(init, "init", floating=True)
        if init.shape != images.shape:
            raise ValueError(f"init must have the shape of images {tuple(images.shape)}, got "
                             f"{tuple(init.shape)}")
        inits = list(init.split(batch_size))
    runs = []
    batches = zip(images.split(batch_size), inits)
    for batch, init in tqdm(batches, total=len(inits), desc=f"fixed points at t = {t}",
                            disable=not progress):
        r = fixed_point_noise(model, batch, t, iters, init=init, method=method, cond=cond,
                              guidance_scale=guidance_scale, memory=memory, generator=generator,
                              snapshots=ks, **kwargs)
        runs.append(r)
    X = images.detach().cpu().double().reshape(len(images), -1).numpy()
    abar = float(model.alphas_cumprod[_timestep(model, t)])
    x_norm = np.linalg.norm(X, axis=1).clip(1e-12)

    def pairs_at(k: int | None) -> FixedPointPairs:
        """The pairs after ``k`` iterations (None: the last iterate of each run)."""
        if k is None:
            Z = [r.noise.detach().cpu() for r in runs]
            res = [r.residuals for r in runs]
        else:
            missing = [i for i, r in enumerate(runs) if k not in r.snapshots]
            if missing:
                raise RuntimeError(f"iteration {k} was not reached (the run stopped at its "
                                   f"tolerance); lower the snapshot or drop tol")
            Z = [r.snapshots[k] for r in runs]
            res = [r.residuals[:k + 1] for r in runs]
        Z = torch.cat([z.double().reshape(len(z), -1) for z in Z]).numpy()
        res = np.concatenate(res, axis=1)  # (k + 1, N)
        recon = np.sqrt((1 - abar) / abar) * res[-1] * np.sqrt(X.shape[1]) / x_norm
        return FixedPointPairs(X, Z, res[-1], recon, _diverged(res),
                               len(res) - 1 if k is None else k)

    out = pairs_at(None)
    out.snapshots = {k: pairs_at(k) for k in ks}
    return out


def cached_fixed_point_pairs(model, images, t: int, iters: int, *, seed: int | None = None,
                             log=print, **kwargs) -> FixedPointPairs:
    """:func:`fixed_point_pairs` through the disk cache (:mod:`lib.cache`).

    The key holds the model's weights, the images, every argument and the numerics
    environment, so a result is reused only for the same work. A random start is drawn from
    ``torch.Generator().manual_seed(seed)`` (a generator object cannot be keyed).

    Args:
        model, images, t, iters: as for :func:`fixed_point_pairs`.
        seed: seed of the random start (needed with ``init="random"``).
        log: called with one line saying whether the pairs were reused or computed.
        **kwargs: passed to :func:`fixed_point_pairs` (``progress`` is not part of the key).
    """
    if kwargs.get("init") == "random" and seed is None:
        raise ValueError("init='random' needs a seed here, so that the result can be cached")
    if "generator" in kwargs:
        raise ValueError("pass seed=..., not a generator: the cache keys on the seed")
    return _seeded_pairs(model, checks.batch(images, "images"), _timestep(model, t),
                         checks.count(iters, "iters", 0), seed=seed, log=log,
                         **kwargs)


#: version of the code behind :func:`cached_fixed_point_pairs`' results (bump on any change)
PAIRS_VERSION = "1"


@cached(PAIRS_VERSION, name="fixed_point_pairs")
def _seeded_pairs(model, images, t: int, iters: int, *, seed: int | None, log=None,
                  progress: bool = True, **kwargs) -> FixedPointPairs:
    """:func:`fixed_point_pairs` with a random start drawn from ``seed``."""
    generator = None if seed is None else torch.Generator().manual_seed(checks.seed(seed))
    return fixed_point_pairs(model, images, t, iters, generator=generator, progress=progress,
                             **kwargs)

