"""The input checks every module shares: a batch of images or noises, samples as rows, a count,
a number, a fraction.

Each returns the checked value in the form the caller computes with, and raises ``ValueError``
with the argument's name, what it must be and what it got.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch

__all__ = ["batch", "array", "samples", "paired_samples", "count", "number", "fraction"]


def batch(x, name: str, *, layout: str = "(B, C, H, W)", square: bool = False,
          floating: bool = False) -> torch.Tensor:
    """A 4-D tensor of finite values (a numpy array or a tensor; the same device and dtype; a
    tensor on torch's ``meta`` device, which holds no values, passes on its shape).

    Args:
        layout: the shape's letters, for the error message.
        square: whether the last two sides must be equal.
        floating: integer input becomes float32 instead of being returned as it is.
    """
    x = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
    if x.ndim != 4 or (square and x.shape[-1] != x.shape[-2]):
        raise ValueError(f"{name} must have shape {layout}, got {tuple(x.shape)}")
    if floating and not torch.is_floating_point(x):
        x = x.float()
    if torch.is_floating_point(x) and x.device.type != "meta" and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return x


def array(a, name: str) -> np.ndarray:
    """A float64 numpy copy of a numpy array or torch tensor, with a NaN/inf check."""
    if torch.is_tensor(a):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf values; clean or drop those samples first")
    return a


def samples(X, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """Samples ``(N, ...)`` as float64 rows ``(N, D)``, with the shape of one sample."""
    X = array(X, name)
    if X.ndim < 2:
        raise ValueError(f"{name} must have shape (N, D) or (N, C, H, W), got {X.shape}")
    return X.reshape(X.shape[0], -1), X.shape[1:]


def paired_samples(X, Z, names: tuple[str, str] = ("X", "Z")) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of samples with one row each per pair, as float64 ``(N, D_x)`` and ``(N, D_z)``."""
    (X, _), (Z, _) = samples(X, names[0]), samples(Z, names[1])
    if X.shape[0] != Z.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same number of rows, got "
                         f"{X.shape[0]} and {Z.shape[0]}")
    return X, Z


def count(value, name: str, lo: int = 1) -> int:
    """An integer of any kind (Python, numpy, torch; not a float or a bool) at least ``lo``."""
    what = "a positive integer" if lo == 1 else f"an integer >= {lo}"
    try:
        if isinstance(value, bool):  # True is an int to Python, not a count to a reader
            raise TypeError
        out = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be {what}, got {value!r}") from None
    if out < lo:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return out


def _real(value, name: str, what: str) -> float:
    """``float(value)`` of anything but a bool, or a ``ValueError`` saying ``name`` must be ``what``."""
    try:
        if isinstance(value, bool):  # True is a number to Python, not to a reader
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {what}, got {value!r}") from None


def number(value, name: str, *, lo: float = -math.inf, hi: float = math.inf) -> float:
    """A finite real number in ``[lo, hi]`` (not a bool)."""
    out = _real(value, name, "a number")
    if not (math.isfinite(out) and lo <= out <= hi):
        bounds = (f"in [{lo}, {hi}]" if math.isfinite(lo) and math.isfinite(hi)
                  else f">= {lo}" if math.isfinite(lo) else f"<= {hi}" if math.isfinite(hi) else "")
        raise ValueError(f"{name} must be a finite number {bounds}".rstrip() + f", got {value!r}")
    return out


def fraction(value, name: str, *, zero: bool = False, one: bool = True) -> float:
    """A number in (0, 1], or [0, 1] with ``zero``, or (0, 1) without ``one``."""
    interval = f"{'[' if zero else '('}0, 1{']' if one else ')'}"
    out = _real(value, name, f"a number in {interval}")
    if not ((0 <= out if zero else 0 < out) and (out <= 1 if one else out < 1)):  # NaN fails
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return out
