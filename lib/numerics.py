"""Rounding jitter: re-run the book as if on another CPU, to find outputs that depend on it.

Two x86 machines can give the same float32 computation slightly different last bits: their CPU
kernels (oneDNN convolutions, MKL products, ATen's vectorised loops) add in different orders.
Mostly this is harmless, but an expansive iteration (Eq. 7 at t = 0.98T) or a Metropolis accept
decision (Alg. 1) can grow such a difference until a printed digit changes, and then a
committed notebook that nbval checks fails on a machine that only differs in its CPU.

This module lets the book be re-executed with its floating point *deliberately* perturbed. When
the environment variable ``LIB_ROUNDING_JITTER`` holds a number ``k > 0``, :func:`rounding_jitter`
multiplies every element of a tensor by ``1 + k u n`` (``u`` the dtype's machine epsilon,
``n ~ N(0, 1)`` from a private generator that never touches the caller's random streams). The
library applies it where the book's results are computed: every model's noise prediction
(:meth:`lib.models.DiffusionModel.eps`) and the annealing's matrix product
(:func:`lib.annealing.anneal`). With the variable unset or ``0`` it returns its input unchanged
(the same object), so ordinary runs are bit for bit what they were.

``ENV`` is the environment the tests run the notebooks under (``conftest.py`` sets it for
nbval's kernels): the jitter, plus ATen's AVX2 code paths instead of the AVX-512 ones this
project's CPUs pick, so torch's own element-wise and reduction kernels differ too. A checked
output that survives both is stable across x86 CPUs. (oneDNN's AVX2 convolutions would perturb
the networks more realistically still, but make them 30-70 % slower on this 2-core AMD EPYC,
which the test suite cannot afford; the jitter on their output stands in for them.)
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["JITTER_ENV", "ENV", "jitter_ulps", "jittered", "rounding_jitter"]

#: The environment variable that switches the jitter on: its size in units of the dtype's eps.
JITTER_ENV = "LIB_ROUNDING_JITTER"

#: The perturbed environment of the notebook checks. 8 ulps of float32 is about 1e-6 relative,
#: 2-3 times the difference that switching oneDNN and ATen from AVX-512 to AVX2 kernels makes in
#: a tiny model's noise prediction (measured 3.8e-7 relative, 2-core AMD EPYC).
ENV = {JITTER_ENV: "8", "ATEN_CPU_CAPABILITY": "avx2"}

_generators: dict[str, torch.Generator] = {}


def jitter_ulps() -> float:
    """The jitter's size from ``LIB_ROUNDING_JITTER`` (0 when unset); an error if malformed."""
    raw = os.environ.get(JITTER_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        ulps = float(raw)
    except ValueError:
        raise ValueError(f"{JITTER_ENV} must be a number of ulps (e.g. 8) or empty, "
                         f"got {raw!r}") from None
    if not ulps >= 0 or ulps == float("inf"):
        raise ValueError(f"{JITTER_ENV} must be a finite number >= 0, got {raw!r}")
    return ulps


def rounding_jitter(x: torch.Tensor) -> torch.Tensor:
    """``x`` with each element scaled by ``1 + k u n`` when the jitter is on; else ``x`` itself.

    Args:
        x: any tensor; integer and boolean tensors are returned unchanged.

    Returns:
        a tensor of ``x``'s shape, dtype and device.
    """
    ulps = jitter_ulps()
    if ulps == 0 or not x.is_floating_point():
        return x
    gen = _generators.get("cpu")
    if gen is None:  # one private stream per process: a jittered run is itself reproducible
        gen = _generators["cpu"] = torch.Generator().manual_seed(20261201)
    n = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    scale = 1 + ulps * torch.finfo(x.dtype).eps * n
    return (x.double().cpu() * scale).to(x.device, x.dtype)


@contextlib.contextmanager
def jittered(ulps: float = float(ENV[JITTER_ENV])):
    """Switch the jitter on (``ulps`` > 0) or off (0) inside a ``with`` block, then restore it.

    A chapter uses it to show how far a result moves when every noise prediction is off by
    about a part in a million, as it is between two CPUs.
    """
    if not ulps >= 0 or ulps == float("inf"):
        raise ValueError(f"ulps must be a finite number >= 0, got {ulps!r}")
    before = os.environ.get(JITTER_ENV)
    os.environ[JITTER_ENV] = repr(float(ulps))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(JITTER_ENV, None)
        else:
            os.environ[JITTER_ENV] = before
