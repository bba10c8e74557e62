"""A disk cache for expensive results, keyed by their content: do each piece of work once.

A pure function decorated with :func:`cached` stores its results under a key that is the
sha256 of everything they depend on: the function's name, its code version (a module constant
beside it), **every** argument of the call, defaults included (arrays and tensors by the sha256
of their bytes, dtype and shape; models by :func:`fingerprint`, the weights' sha256), and the
floating-point environment of :mod:`lib.numerics` (a result computed with rounding jitter is
never served to a plain run, nor the other way round: the notebook checks must recompute, not
replay). Nothing is listed by hand, so no argument can be left out of the key; only
``progress`` and ``log``, which change what is shown and not what is computed, are not keyed.
Bump the version constant when the code that computes a result changes::

    SAMPLES_VERSION = "1"

    @cached(SAMPLES_VERSION)
    def ddim_samples(model, noise, steps, spacing="leading"):
        ...

The folder is ``LIB_CACHE_DIR`` (default ``runs/cache`` in the repository, which git ignores);
``LIB_NO_CACHE=1`` computes everything afresh and stores nothing (``--no-cache``).

The cache never loses or corrupts a result. An entry holds its key and a sha256 of its payload
(:data:`MAGIC`): an entry that cannot be read, belongs to another key or fails its checksum (a
flipped byte, a truncated write, a foreign file) is a miss and is computed again. A result that
cannot be stored (a read-only folder, a full disk, a value pickle cannot hold) is returned all
the same, with one warning per folder, and no temporary file is left behind. Entries are
written atomically with mode 0644.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import pickle
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lib.numerics import ENV as _NUMERICS_ENV
from lib.numerics import JITTER_ENV, jitter_ulps

__all__ = ["CACHE_DIR_ENV", "cache_use", "NO_CACHE_ENV", "NOT_KEYED", "cache_dir", "enabled", "fingerprint",
           "cache_key", "lookup", "cached"]

CACHE_DIR_ENV = "LIB_CACHE_DIR"
NO_CACHE_ENV = "LIB_NO_CACHE"
_DEFAULT_DIR = Path(__file__).resolve().parent.parent / "runs" / "cache"


def cache_dir() -> Path:
    """The cache folder (``LIB_CACHE_DIR``, else ``runs/cache`` of the repository)."""
    return Path(os.environ.get(CACHE_DIR_ENV) or _DEFAULT_DIR)


def enabled() -> bool:
    """False when ``LIB_NO_CACHE`` is set to anything but ``0`` or empty."""
    return os.environ.get(NO_CACHE_ENV, "").strip() in ("", "0")


_fingerprints: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def fingerprint(model) -> str:
    """A model's identity for cache keys: its class, name, dtype, schedule and weights' bytes.

    Works for any :class:`lib.models.DiffusionModel`: torch modules among its attributes (UNet,
    VAE, text encoder, also inside dicts) contribute their state dicts, tensors and arrays their
    bytes. Computed once per model object (a loaded model's weights are not changed after).
    """
    try:
        return _fingerprints[model]
    except (KeyError, TypeError):
        pass
    h = hashlib.sha256()
    h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    _hash_attrs(h, vars(model))
    digest = h.hexdigest()
    try:
        _fingerprints[model] = digest
    except TypeError:  # not weak-referenceable: just not memoised
        pass
    return digest


def _hash_attrs(h, attrs: dict) -> None:
    for attr in sorted(attrs, key=str):
        value = attrs[attr]
        h.update(str(attr).encode())
        if isinstance(value, torch.nn.Module):
            for k, v in sorted(value.state_dict().items()):
                h.update(k.encode())
                _update(h, v)
        elif isinstance(value, (torch.Tensor, np.ndarray)):
            _update(h, value)
        elif isinstance(value, dict):
            _hash_attrs(h, value)
        elif isinstance(value, (str, int, float, bool, tuple, list, torch.dtype, torch.device)) \
                or value is None:
            h.update(repr(value).encode())


def _update(h, value) -> None:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.numpy()
    a = np.ascontiguousarray(value)
    h.update(f"{a.dtype}{a.shape}".encode())
    h.update(memoryview(a.reshape(-1)).cast("B") if a.size else b"")  # no copy of the bytes


def _canonical(value) -> Any:
    """A JSON-able stand-in for an argument; arrays by digest, models by fingerprint (an object
    with a ``cache_fingerprint()`` method, as :class:`lib.models.DiffusionModel` has)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        h = hashlib.sha256()
        _update(h, value)
        return {"array": h.hexdigest()}
    if callable(getattr(value, "cache_fingerprint", None)):
        return {"model": value.cache_fingerprint()}
    if isinstance(value, dict):  # keys keep their types: {1: x} and {"1": x} differ
        items = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return {"dict": sorted(items, key=lambda kv: json.dumps(kv[0], sort_keys=True))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return repr(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"cannot key a cache entry on {type(value).__name__}; pass arrays, tensors, "
                    "models, numbers, strings, or lists and dicts of them")


def cache_key(name: str, version: str, **args) -> str:
    """The sha256 key of a result: its name, code version, arguments and numerics."""
    numerics = {"jitter": jitter_ulps(), **{k: os.environ.get(k) for k in _NUMERICS_ENV
                                             if k != JITTER_ENV}}
    blob = json.dumps({"name": name, "version": version, "args": _canonical(args),
                       "numerics": numerics}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


#: results looked up in this process: reused from the cache, or computed (:func:`cache_use`)
_USE = {"reused": 0, "computed": 0}


def cache_use() -> dict[str, int]:
    """``{"reused": n, "computed": m}``: the results :func:`lookup` (and so every
    :func:`cached` function) took from the cache or computed in this process since it started;
    the runner records them per chapter, and the chapter's page says how many were reused."""
    return dict(_USE)


def lookup(name: str, version: str, compute: Callable[[], Any], /, *, log=None, **args) -> Any:
    """``compute()``'s result, from the cache when the same work was done before (what
    :func:`cached` does for a decorated function; use the decorator, which keys every
    argument by itself).

    Args:
        name: what is computed (also the cache's subfolder), e.g. ``"fixed_point_pairs"``.
        version: the computing code's version; bump it when that code changes.
        compute: a function of no arguments that does the work.
        log: called with one line saying whether the result was reused or computed.
        **args: everything the result depends on (see :func:`cache_key`).

    Returns:
        the result (a fresh unpickled copy on a hit).
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a plain folder name, got {name!r}")
    if not enabled():
        if log:
            log(f"{name}: computed (cache off: {NO_CACHE_ENV})")
        _USE["computed"] += 1
        return compute()
    key = cache_key(name, version, **args)
    path = cache_dir() / name / f"{key}.pkl"
    found = _read(path, key)
    if found is not _MISS:
        if log:
            log(f"{name}: reused from the cache ({path.name[:12]})")
        _USE["reused"] += 1
        return found
    value = compute()
    _USE["computed"] += 1
    stored = _write(path, key, value)
    if log:
        log(f"{name}: computed and cached ({path.name[:12]})" if stored else
            f"{name}: computed (not cached: the cache folder cannot be written)")
    return value


#: the first bytes of an entry; then the key (64 hex digits), a newline, the sha256 of the
#: payload (32 bytes) and the payload (a pickle)
MAGIC = b"lib.cache entry 2\n"
_MISS = object()
_warned: set = set()


def _read(path: Path, key: str) -> Any:
    """The value stored under ``key`` at ``path``, or ``_MISS``. An entry that cannot be read,
    was written for another key, or whose payload does not match its checksum (a flipped
    byte, a truncated write) is a miss, and is removed when the folder allows it."""
    try:
        blob = path.read_bytes()
    except OSError:  # absent, unreadable
        return _MISS
    head = MAGIC + key.encode() + b"\n"
    digest, payload = blob[len(head):len(head) + 32], blob[len(head) + 32:]
    if blob.startswith(head) and hashlib.sha256(payload).digest() == digest:
        try:
            return pickle.loads(payload)
        except Exception:  # noqa: BLE001 - a payload that passes its checksum but not pickle
            pass
    try:
        path.unlink()
    except OSError:
        pass
    return _MISS


def _write(path: Path, key: str, value) -> bool:
    """Store ``value`` atomically (a temporary file renamed into place, mode 0644); on any
    failure (a read-only folder, a full disk, a value pickle cannot store) store nothing,
    leave no temporary file, warn once per folder, and return False."""
    tmp = None
    try:
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, delete=False, suffix=".tmp") as f:
            tmp = f.name
            f.write(MAGIC + key.encode() + b"\n" + hashlib.sha256(payload).digest() + payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # atomic: a reader never sees half an entry
        return True
    except Exception as err:  # noqa: BLE001 - the result is computed; only storing it failed
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        folder = str(path.parent)
        if folder not in _warned:
            _warned.add(folder)
            warnings.warn(f"lib.cache: could not store a result in {folder} "
                          f"({type(err).__name__}: {err}); it is returned but not cached. "
                          f"Set {CACHE_DIR_ENV} to a writable folder, or {NO_CACHE_ENV}=1.",
                          RuntimeWarning, stacklevel=3)
        return False

#: arguments that change what a call shows, not what it computes: left out of the key
NOT_KEYED = ("progress", "log")


def _array_values(arguments: dict) -> int:
    """How many array elements the arguments hold (numpy arrays and torch tensors)."""
    return sum(int(v.size) if isinstance(v, np.ndarray) else
               int(v.numel()) if hasattr(v, "numel") else 0 for v in arguments.values())


def cached(version: str, *, name: str | None = None, min_values: int = 0) -> Callable:
    """Decorate a pure function so that its results go through the disk cache.

    Every argument of a call is in the key (:func:`cache_key`), by the function's own signature
    with its defaults applied, ``**kwargs`` included, except those of :data:`NOT_KEYED`. A call
    whose arguments cannot be keyed (a generator object, an open file) raises ``TypeError``
    before any work is done. A ``log`` argument, if the function has one, is also told whether
    the result was reused or computed.

    Args:
        version: the function's code version, a module constant beside it; bump it when the
            code behind the result changes (the old entries then miss).
        name: the cache's subfolder (default: the function's name).
        min_values: calls whose array arguments hold fewer elements in all run directly, past
            the cache: for work that is cheap when small and slow when large (a covariance of
            20,000 crops, an eigendecomposition at D = 3,072), where hashing and storing
            small inputs would cost more than computing them.

    The decorated function keeps its name and docstring, and has ``cache_version``.
    """
    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)
        folder = name or fn.__name__
        extra = [p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD]

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            for var in extra:
                arguments.update(arguments.pop(var))
            if wrapper.min_values and _array_values(arguments) < wrapper.min_values:
                return fn(*args, **kwargs)
            log = arguments.get("log")
            keyed = {k: v for k, v in arguments.items() if k not in NOT_KEYED}
            return lookup(folder, version, lambda: fn(*args, **kwargs),
                          log=log if callable(log) else None, **keyed)

        wrapper.cache_version = version
        wrapper.min_values = min_values
        return wrapper

    return decorate
