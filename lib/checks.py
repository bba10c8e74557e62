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
           "real_values", "timestep", "tensor", "guidance", "eigenvalues", "schedule",
           "seed", "rng", "device", "dtype", "DTYPES", "choice", "flag", "integers", "numbers", "eig", "real"]


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


def real(value, name: str) -> float:
    """A real number as a float, NaN and infinities included (not a bool, a string or a
    complex number)."""
    return _real(value, name, "a real number")


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


def eigenvalues(lam, name: str = "lam", *, zero: bool = False) -> np.ndarray:
    """A non-empty float64 array of finite eigenvalues of a covariance: positive, or
    non-negative with ``zero``."""
    lam = array(lam, name)
    if lam.size == 0:
        raise ValueError(f"{name} needs at least one eigenvalue")
    if (lam < 0).any() or (not zero and (lam == 0).any()):
        raise ValueError(f"{name} must be {'non-negative' if zero else 'positive'} eigenvalues, "
                         f"got a minimum of {lam.min():g}")
    return lam


def schedule(alphas_cumprod, name: str = "alphas_cumprod") -> torch.Tensor:
    """A noise schedule ``abar_t``, one value per timestep strictly between 0 and 1, as a
    float64 tensor on the CPU."""
    abar = real_values(alphas_cumprod, name)
    abar = (abar if torch.is_tensor(abar) else torch.as_tensor(abar)).detach().cpu().double()
    if abar.ndim != 1 or abar.numel() == 0:
        raise ValueError(f"{name} must be one value per timestep (T,), got shape "
                         f"{tuple(abar.shape)}")
    if not ((abar > 0) & (abar < 1)).all():  # NaN fails too
        raise ValueError(f"{name} must lie strictly between 0 and 1 (abar_t = prod(1 - beta)), "
                         f"got values from {abar.min():g} to {abar.max():g}")
    return abar


def seed(value, name: str = "seed") -> int:
    """A random seed: an integer >= 0 (numpy and torch refuse negative seeds; 2.5 is none)."""
    return count(value, name, lo=0)


def rng(generator, name: str = "generator") -> np.random.Generator:
    """A numpy generator from a generator (used as it is), a seed (:func:`seed`), or None
    (fresh entropy: not reproducible)."""
    if isinstance(generator, (np.random.Generator, np.random.BitGenerator,
                              np.random.SeedSequence)) or generator is None:
        return np.random.default_rng(generator)
    return np.random.default_rng(seed(generator, name))


#: the dtypes a model can run in, by name
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
          "float64": torch.float64}


def dtype(value, name: str = "dtype"):
    """``None``, a floating torch dtype, or its name (:data:`DTYPES`), as a torch dtype."""
    if value is None or value in DTYPES.values():
        return value
    if isinstance(value, str) and value in DTYPES:
        return DTYPES[value]
    raise ValueError(f"{name} must be one of {sorted(DTYPES)} (or torch.float16, ...), got "
                     f"{value!r}")


def device(value, name: str = "device"):
    """``None`` or a device torch knows (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a torch.device),
    as a ``torch.device``."""
    if value is None:
        return None
    try:
        return torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name} must be 'cpu', 'cuda', 'cuda:N' or a torch.device, got "
                         f"{value!r}") from None


def choice(value, name: str, choices) -> str:
    """One of ``choices`` (strings), or a ``ValueError`` listing them (an array or a list is
    refused before it is compared)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {_what(value)}")
    return value


def flag(value, name: str) -> bool:
    """A yes/no switch: ``True`` or ``False`` (numpy's too), not 0, 1, None or a string."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {_what(value)}")
    return bool(value)


def _sequence(values, name: str, what: str) -> list:
    if isinstance(values, (str, bytes, dict, set)) or not hasattr(values, "__iter__") or (
            isinstance(values, np.ndarray) and values.ndim != 1) or (
            torch.is_tensor(values) and values.ndim != 1):
        raise ValueError(f"{name} must be a list of {what}, got {_what(values)}")
    return list(values)


def integers(values, name: str, *, lo: int = 0, empty: bool = True) -> list[int]:
    """A list (tuple, range, 1-D array) of integers ``>= lo`` (:func:`count` each)."""
    out = [count(v, f"each of {name}", lo=lo) for v in _sequence(values, name, "integers")]
    if not out and not empty:
        raise ValueError(f"{name} needs at least one value")
    return out


def numbers(values, name: str, *, lo: float = -math.inf, hi: float = math.inf,
            empty: bool = True) -> list[float]:
    """A list (tuple, 1-D array) of finite numbers in ``[lo, hi]`` (:func:`number` each)."""
    out = [number(v, f"each of {name}", lo=lo, hi=hi)
           for v in _sequence(values, name, "numbers")]
    if not out and not empty:
        raise ValueError(f"{name} needs at least one value")
    return out


def eig(value, D: int | None = None, name: str = "eig") -> tuple[np.ndarray, np.ndarray]:
    """An eigendecomposition ``(lam (D,), U (D, D))`` of finite values as float64 arrays (any
    order; ``D`` from ``lam`` unless given)."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be a pair (lam (D,), U (D, D)), got {_what(value)}")
    lam, U = array(value[0], f"{name}'s eigenvalues"), array(value[1], f"{name}'s eigenvectors")
    D = lam.size if D is None else D
    if lam.shape != (D,) or U.shape != (D, D) or D == 0:
        raise ValueError(f"{name} must be (lam (D,), U (D, D)) with D = {D}, got {lam.shape} "
                         f"and {U.shape}")
    return lam, U
