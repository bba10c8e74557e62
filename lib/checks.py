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

__all__ = ["batch", "array", "samples", "paired_samples", "count", "number", "fraction",
           "real_values", "timestep", "tensor", "guidance"]


def _what(value) -> str:
    """A short description of a caller's value for an error message."""
    if value is None:
        return "None"
    if isinstance(value, (str, bytes)):
        return f"the string {value!r}"[:80]
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        return f"a {type(value).__name__} of dtype {value.dtype} and shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:80]


def real_values(x, name: str):
    """The gate every array argument passes first: a numpy array or torch tensor (or a nested
    list of numbers) of real numbers. None, strings, object arrays, complex and bool arrays are
    refused with ``"<name> must be a real numeric array, got ..."``; integers pass (the caller
    converts them where it computes). Returns a tensor for a tensor, else a numpy array."""
    if torch.is_tensor(x):
        if x.dtype.is_complex or x.dtype == torch.bool:
            raise TypeError(f"{name} must be a real numeric array, got {_what(x)}")
        return x
    if x is None or isinstance(x, (str, bytes, dict, set)):
        raise TypeError(f"{name} must be a real numeric array, got {_what(x)}")
    try:
        a = np.asarray(x)
    except (ValueError, TypeError):  # ragged nested lists
        raise TypeError(f"{name} must be a real numeric array, got {_what(x)}") from None
    if a.dtype.kind not in "iuf":  # b: bool, c: complex, O: objects, U/S: strings, ...
        raise TypeError(f"{name} must be a real numeric array, got {_what(a)}")
    return a


def batch(x, name: str, *, layout: str = "(B, C, H, W)", square: bool = False,
          floating: bool = False) -> torch.Tensor:
    """A 4-D tensor of finite values (a numpy array or a tensor; the same device and dtype; a
    tensor on torch's ``meta`` device, which holds no values, passes on its shape).

    Args:
        layout: the shape's letters, for the error message.
        square: whether the last two sides must be equal.
        floating: integer input becomes float32 instead of being returned as it is.
    """
    x = real_values(x, name)
    x = x if torch.is_tensor(x) else torch.as_tensor(x)
    if x.ndim != 4 or (square and x.shape[-1] != x.shape[-2]):
        raise ValueError(f"{name} must have shape {layout}, got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} needs at least one image or noise, got an empty batch "
                         f"{tuple(x.shape)}")
    if floating and not torch.is_floating_point(x):
        x = x.float()
    return _finite(x, name)


def _finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x``, unless it holds NaN or inf (a tensor on the ``meta`` device holds no values)."""
    if torch.is_floating_point(x) and x.device.type != "meta" and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return x


def tensor(x, name: str) -> torch.Tensor:
    """A non-empty tensor of finite real values, of any shape (:func:`real_values` first;
    integers become float32)."""
    x = real_values(x, name)
    x = x if torch.is_tensor(x) else torch.as_tensor(x)
    if x.numel() == 0:
        raise ValueError(f"{name} needs at least one value, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        x = x.float()
    return _finite(x, name)


def array(a, name: str) -> np.ndarray:
    """A float64 numpy copy of a numpy array or torch tensor, with a NaN/inf check."""
    a = real_values(a, name)
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
    if X.shape[0] == 0 or X[0].size == 0:
        raise ValueError(f"{name} needs at least one sample of at least one value, got shape "
                         f"{X.shape}")
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
    # True is a number to Python, not to a reader; "0.5" is text; 1j has no order
    if isinstance(value, (bool, np.bool_, str, bytes, complex, np.complexfloating)) or (
            torch.is_tensor(value) and (value.dtype.is_complex or value.dtype == torch.bool)):
        raise ValueError(f"{name} must be {what}, got {_what(value)}")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):  # None, objects, tensors of several values
        raise ValueError(f"{name} must be {what}, got {_what(value)}") from None


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


def guidance(scale, name: str = "guidance_scale"):
    """A classifier-free guidance scale: ``None`` (no guidance) or a finite number."""
    return None if scale is None else number(scale, name)


def timestep(t, name: str = "t", *, steps: int = 1000):
    """A diffusion timestep: an integer in ``[0, steps)`` (Python, numpy or a 0-d integer
    tensor), or an integer tensor of them. Floats are refused, not truncated: ``2.5`` is no
    timestep, and ``int()`` would quietly make it 2.

    Returns:
        a Python int, or the integer tensor itself.
    """
    if torch.is_tensor(t) and t.ndim > 0:
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer timesteps in [0, {steps}), got "
                             f"{_what(t)}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= steps):
            raise ValueError(f"{name} must lie in [0, {steps}), got values from {int(t.min())} "
                             f"to {int(t.max())}")
        return t
    try:
        if isinstance(t, (bool, np.bool_)) or (torch.is_tensor(t) and t.dtype == torch.bool):
            raise TypeError
        out = operator.index(t)
    except TypeError:
        raise ValueError(f"{name} must be an integer timestep in [0, {steps}), got "
                         f"{_what(t)}") from None
    if not 0 <= out < steps:
        raise ValueError(f"{name} must be an integer timestep in [0, {steps}), got {out}")
    return out
