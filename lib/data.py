"""Natural photographs that ship inside installed wheels, and random crops of them.

The book must run with no network, so its only image data are the colour photographs bundled
with packages it already installs:

========================  =======================================  =======  ==========
name                      source                                   size     split
========================  =======================================  =======  ==========
``astronaut``             ``skimage.data.astronaut`` (E. Collins)  512x512  train
``cat``                   ``skimage.data.cat`` (Chelsea the cat)   300x451  train
``china``                 scikit-learn ``china.jpg``               427x640  train
``flower``                scikit-learn ``flower.jpg``              427x640  train
``motorcycle``            ``skimage.data.stereo_motorcycle`` left  500x741  train
``coffee``                ``skimage.data.coffee``                  400x600  test
``grace_hopper``          matplotlib ``grace_hopper.jpg``          600x512  test
``rocket``                ``skimage.data.rocket``                  427x640  test
========================  =======================================  =======  ==========

Left out on purpose: drawings and synthetic images (``colorwheel``, ``logo``, ``checkerboard``,
``shepp_logan_phantom``), text pages (``text``, ``page``), binary masks (``horse``,
``binary_blobs``), grey-level photographs (``camera``, ``coins``, ``moon``, ``brick``,
``grass``, ``gravel``: the models are RGB), photographs that are mostly a flat black background
(``hubble_deep_field``, ``retina``: most crops would be constant), microscopy slides
(``immunohistochemistry``, ``cell``: not natural scenes), and the photographs that
scikit-image downloads on demand (``eagle``, ``lily``, ``skin``).

The split is *by photograph*: the test crops come from photographs the embedded models never
saw during training.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from lib import checks

__all__ = ["PHOTOS", "photo_names", "load_photo", "photo_square", "photo_crops", "SPLITS",
           "load_image_folder", "image_batches", "HALVES", "SIZES", "check_size", "square_resized",
           "Region", "photo_regions", "region_crops", "MIN_CONTENT_STD", "with_content"]


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = getattr(skimage.data, name)()
        return image[0] if isinstance(image, tuple) else image  # stereo pairs: left view

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


def _matplotlib(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib.cbook
        import matplotlib.image

        with matplotlib.cbook.get_sample_data(filename) as f:
            return matplotlib.image.imread(f, format=filename.rsplit(".", 1)[-1])

    return load


@dataclass(frozen=True)
class Photo:
    """One bundled photograph: its loader, where it comes from, and its split."""

    name: str
    source: str
    split: str
    loader: Callable[[], np.ndarray]


PHOTOS: dict[str, Photo] = {
    p.name: p
    for p in [
        Photo("astronaut", "skimage.data.astronaut", "train", _skimage("astronaut")),
        Photo("cat", "skimage.data.cat", "train", _skimage("cat")),
        Photo("china", "sklearn china.jpg", "train", _sklearn("china.jpg")),
        Photo("flower", "sklearn flower.jpg", "train", _sklearn("flower.jpg")),
        Photo("motorcycle", "skimage.data.stereo_motorcycle (left)", "train",
              _skimage("stereo_motorcycle")),
        Photo("coffee", "skimage.data.coffee", "test", _skimage("coffee")),
        Photo("grace_hopper", "matplotlib grace_hopper.jpg", "test",
              _matplotlib("grace_hopper.jpg")),
        Photo("rocket", "skimage.data.rocket", "test", _skimage("rocket")),
    ]
}

SPLITS = ("train", "test", "all")

# Each pyramid level is this much smaller than the one above (a half-octave pyramid).
PYRAMID_DOWNSCALE = float(np.sqrt(2.0))


def photo_names(split: str = "all") -> list[str]:
    """Names of the bundled photographs, in a fixed order.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"``.

    Returns:
        The photograph names of that split; the index of a name in ``photo_names("train")`` is
        the class label the embedded models are conditioned on.
    """
    _check_split(split)
    return [n for n, p in PHOTOS.items() if split == "all" or p.split == split]


def _check_split(split: str) -> None:
    checks.choice(split, "split", SPLITS)


def photo_square(name: str, size: int) -> np.ndarray:
    """The central square of a bundled photograph, area-resized to ``size x size``.

    Returns:
        float32 ``(3, size, size)`` in [-1, 1].
    """
    check_size(size)
    return square_resized(load_photo(name), size)


def square_resized(image: np.ndarray, size: int) -> np.ndarray:
    """The central square of an image ``(3, H, W)`` in [-1, 1], resized to ``(3, size, size)``
    (area averaging when shrinking, bilinear when enlarging): how the book fits any photograph
    or image file to a model's resolution."""
    import torch
    import torch.nn.functional as F

    image = checks.array(image, "image")
    size = checks.count(size, "size")
    if image.ndim != 3 or image.shape[0] != 3:
        hint = ("; it looks like (H, W, 3): pass image.transpose(2, 0, 1)"
                if image.ndim == 3 and image.shape[-1] == 3 else "")
        raise ValueError(f"image must have shape (3, H, W), got {image.shape}{hint}")
    H, W = image.shape[1:]
    side = min(H, W)
    top, left = (H - side) // 2, (W - side) // 2
    square = torch.from_numpy(np.ascontiguousarray(image[:, top:top + side, left:left + side],
                                                   dtype=np.float32))
    mode = "area" if size <= side else "bilinear"
    return F.interpolate(square[None], size=(size, size), mode=mode)[0].clamp(-1, 1).numpy()


@functools.lru_cache(maxsize=None)
def _load_uint8(name: str) -> np.ndarray:
    if name not in PHOTOS:
        raise KeyError(f"unknown photo {name!r}; the bundled photos are {photo_names()}")
    image = np.asarray(PHOTOS[name].loader())
    if image.dtype != np.uint8:  # matplotlib reads JPEGs as uint8, PNGs as float in [0, 1]
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"photo {name!r} is not an RGB image: shape {image.shape}")
    image = image[..., :3]
    image.setflags(write=False)
    return image


def load_photo(name: str) -> np.ndarray:
    """Load one bundled photograph.

    Args:
        name: one of :func:`photo_names`.

    Returns:
        float32 array in [-1, 1].

    Shapes:
        ``(3, H, W)``.
    """
    image = _load_uint8(name)  # (H, W, 3) uint8
    return (image.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0)


@functools.lru_cache(maxsize=None)
def _pyramid(name: str, min_side: int) -> tuple[np.ndarray, ...]:
    """Half-octave Gaussian pyramid of one photo, down to a short side of ``min_side``."""
    from skimage.transform import pyramid_gaussian

    image = load_photo(name).transpose(1, 2, 0).astype(np.float64)  # (H, W, 3)
    levels = []
    for level in pyramid_gaussian(image, downscale=PYRAMID_DOWNSCALE, channel_axis=-1,
                                  preserve_range=True):
        if min(level.shape[:2]) < min_side:
            break
        levels.append(np.ascontiguousarray(level.transpose(2, 0, 1), dtype=np.float32))
    return tuple(levels)


def photo_crops(
    n: int,
    size: int = 32,
    *,
    split: str = "train",
    photos: list[str] | None = None,
    seed: int = 0,
    max_levels: int | None = 4,
    return_labels: bool = False,
    half: str | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Random square crops of the bundled photographs, at random scales, randomly flipped.

    Each crop picks a photo uniformly from the split, a level of its half-octave Gaussian
    pyramid uniformly among the first ``max_levels`` (level 0 is the full resolution, each next
    level is sqrt(2) smaller), a position uniformly, and a horizontal flip with probability 1/2.
    The same arguments always give the same crops.

    Args:
        n: number of crops (> 0).
        size: side of the square crops in pixels (:data:`SIZES`; at most the short side of the
            smallest photograph).
        split: ``"train"``, ``"test"`` or ``"all"`` (see the module docstring).
        photos: crop only these photographs instead of a whole split (labels then index this
            list).
        seed: seed of the random generator.
        max_levels: how many pyramid levels to draw scales from (None: all levels whose short
            side is at least ``size``).
        return_labels: also return, per crop, the index of its photo in ``photo_names(split)``
            (or in ``photos``).
        half: ``"left"`` or ``"right"``: crop only inside that half of each pyramid level (its
            columns ``[0, w/2)`` or ``[w/2, w)``), so that left-half and right-half crops show
            disjoint parts of the photograph (up to the few pixels the pyramid's blur carries
            across the middle); None: anywhere.

    Returns:
        float32 crops in [-1, 1], and the labels (int64) if ``return_labels``.

    Shapes:
        crops ``(n, 3, size, size)``; labels ``(n,)``.
    """
    n = checks.count(n, "n")
    check_size(size)
    if max_levels is not None and max_levels < 1:
        raise ValueError(f"max_levels must be at least 1 or None, got {max_levels!r}")
    if half is not None:
        checks.choice(half, "half", HALVES[1:])
    names = photo_names(split)
    if photos is not None:
        if not photos:
            raise ValueError("photos is an empty list; name at least one photo or pass None")
        unknown = [p for p in photos if p not in PHOTOS]
        if unknown:
            raise KeyError(f"unknown photos {unknown}; the bundled photos are {photo_names()}")
        names = list(photos)
    rng = np.random.default_rng(checks.seed(seed))
    labels = rng.integers(len(names), size=n)
    level_u = rng.random(n)
    pos_u = rng.random((n, 2))
    flips = rng.random(n) < 0.5

    crops = np.empty((n, 3, size, size), dtype=np.float32)
    for label, name in enumerate(names):
        pyramid = _pyramid(name, size)[:max_levels]
        if not pyramid:
            h, w = _load_uint8(name).shape[:2]
            raise ValueError(f"size = {size} is larger than the photograph {name!r} ({h}x{w}); "
                             "crop at most its short side")
        idx_photo = np.flatnonzero(labels == label)
        levels = np.minimum((level_u[idx_photo] * len(pyramid)).astype(int), len(pyramid) - 1)
        for lv, image in enumerate(pyramid):
            idx = idx_photo[levels == lv]
            if idx.size == 0:
                continue
            _, h, w = image.shape
            x0, x1 = {None: (0, w), "left": (0, w // 2), "right": (w // 2, w)}[half]
            if x1 - x0 < size:
                raise ValueError(f"the {half} half of {name!r} at pyramid level {lv} is "
                                 f"{x1 - x0} pixels wide, less than size = {size}; lower max_levels")
            top = (pos_u[idx, 0] * (h - size + 1)).astype(int)
            left = x0 + (pos_u[idx, 1] * (x1 - x0 - size + 1)).astype(int)
            rows = top[:, None] + np.arange(size)  # (k, size)
            cols = left[:, None] + np.arange(size)  # (k, size)
            # (3, k, size, size) gathered at once, then (k, 3, size, size)
            patch = image[:, rows[:, :, None], cols[:, None, :]].transpose(1, 0, 2, 3)
            crops[idx] = patch
    crops[flips] = crops[flips, :, :, ::-1]
    np.clip(crops, -1.0, 1.0, out=crops)
    return (crops, labels.astype(np.int64)) if return_labels else crops


MIN_CONTENT_STD = 0.15
"""The pixel standard deviation (on the [-1, 1] scale, over channels and pixels) below which
:func:`with_content` calls an image plain: the near-black or flat-sky crops, whose noise maps
and whitenings show nothing."""


def with_content(images, k: int, *, min_std: float = MIN_CONTENT_STD) -> np.ndarray:
    """Indices of the first ``k`` of ``images`` whose pixel standard deviation is at least
    ``min_std``, in their order: a figure's targets that show something, chosen by a rule
    that looks at the images only, never at a result.

    Args:
        images: ``(N, C, H, W)`` array or tensor.
        k: how many to keep (> 0).
        min_std: the threshold (>= 0; 0 keeps the first ``k``).

    Returns:
        int64 indices ``(k,)``, increasing.
    """
    x = checks.batch(images, "images")
    k = checks.count(k, "k")
    min_std = checks.number(min_std, "min_std", lo=0.0)
    flat = x.detach().cpu().double().reshape(len(x), -1).numpy()
    keep = np.flatnonzero(flat.std(axis=1) >= min_std)
    if len(keep) < k:
        raise ValueError(f"only {len(keep)} of {len(x)} images have a pixel standard deviation "
                         f">= {min_std}; draw more images or lower min_std")
    return keep[:k].astype(np.int64)


@dataclass(frozen=True)
class Region:
    """One block of a photograph's grid (full-resolution pixels ``[top, top + side)`` by
    ``[left, left + side)``): crops of different regions share no pixel (up to the few pixels
    the pyramid's blur carries across a border). Regions of one photograph still share its
    colours and content: they are disjoint, not independent."""

    id: int
    photo: str
    top: int
    left: int
    side: int


def photo_regions(split: str = "train", *, block: int = 128) -> list[Region]:
    """The disjoint ``block x block`` regions of each photograph of a split, numbered.

    Crops drawn inside different regions (:func:`region_crops`) show disjoint parts of the
    photographs: the region is the smallest unit a bootstrap should resample together (the
    photograph is the largest).
    """
    _check_split(split)
    block = checks.count(block, "block")
    regions = []
    for name in photo_names(split):
        h, w = _load_uint8(name).shape[:2]
        for r in range(h // block):
            for c in range(w // block):
                regions.append(Region(len(regions), name, r * block, c * block, block))
    if not regions:
        raise ValueError(f"block = {block} is larger than every photograph of {split!r}")
    return regions


def _region_window(reg: "Region", full: tuple, level: tuple) -> tuple[int, int, int, int]:
    """Rows ``[r0, r1)`` and columns ``[c0, c1)`` of a pyramid level that lie inside a region
    (each axis scaled by its own ratio; the level's pixel ``j`` covers the full-resolution
    span ``[j / f, (j + 1) / f)``, which must fall inside the region)."""
    fy, fx = level[0] / full[0], level[1] / full[1]
    r0, c0 = int(np.ceil(reg.top * fy)), int(np.ceil(reg.left * fx))
    r1 = min(int(np.floor((reg.top + reg.side) * fy)), level[0])
    c1 = min(int(np.floor((reg.left + reg.side) * fx)), level[1])
    return r0, r1, c0, c1


def region_crops(n: int, size: int = 32, *, split: str = "train", seed: int = 0,
                 block: int = 128, regions=None, max_levels: int = 4
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Random crops that each lie inside one region of :func:`photo_regions`.

    Each crop picks a region uniformly (among ``regions``, default all of the split), a
    pyramid level uniformly among the first ``max_levels`` whose region is at least ``size``
    pixels wide, a position inside the region at that level, and a horizontal flip with
    probability 1/2. The same arguments always give the same crops.

    Args:
        n: number of crops; size: their side in pixels.
        split: ``"train"`` (the models' training photographs) or ``"test"``.
        seed: seed of the random generator.
        block: the regions' side in full-resolution pixels.
        regions: region ids to draw from (e.g. a held-out subset); None: all.
        max_levels: pyramid levels to draw scales from.

    Returns:
        float32 crops in [-1, 1] ``(n, 3, size, size)`` and each crop's region id ``(n,)``.
    """
    n = checks.count(n, "n")
    check_size(size)
    max_levels = checks.count(max_levels, "max_levels")
    table = photo_regions(split, block=block)
    ids = np.arange(len(table)) if regions is None else np.unique(np.asarray(regions))
    if ids.size == 0 or ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= len(table):
        raise ValueError(f"regions must be ids in [0, {len(table)}) of photo_regions("
                         f"{split!r}, block={block}), got {regions!r}")
    rng = np.random.default_rng(checks.seed(seed))
    pick = ids[rng.integers(len(ids), size=n)]
    level_u, pos_u, flips = rng.random(n), rng.random((n, 2)), rng.random(n) < 0.5
    crops = np.empty((n, 3, size, size), dtype=np.float32)
    for i, rid in enumerate(pick):
        reg = table[rid]
        pyramid = _pyramid(reg.photo, size)[:max_levels]
        full = _load_uint8(reg.photo).shape[:2]
        # the region's pixels at each level (rows and columns scaled apart), where it still
        # holds a whole crop
        windows = [(lv, _region_window(reg, full, im.shape[1:])) for lv, im in enumerate(pyramid)]
        fits = [(lv, w) for lv, w in windows if min(w[1] - w[0], w[3] - w[2]) >= size]
        if not fits:
            raise ValueError(f"block = {block} holds no {size}-pixel crop of {reg.photo!r}; "
                             f"use a larger block")
        lv, (r0, r1, c0, c1) = fits[min(int(level_u[i] * len(fits)), len(fits) - 1)]
        top = r0 + int(pos_u[i, 0] * (r1 - r0 - size + 1))
        left = c0 + int(pos_u[i, 1] * (c1 - c0 - size + 1))
        crop = pyramid[lv][:, top:top + size, left:left + size]
        crops[i] = crop[:, :, ::-1] if flips[i] else crop
    np.clip(crops, -1.0, 1.0, out=crops)
    return crops, pick.astype(np.int64)


#: the values of ``photo_crops(half=...)``.
HALVES = (None, "left", "right")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def _image_files(path) -> list:
    """The image files of a folder (sub-folders included), in sorted order."""
    from pathlib import Path

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist; give a folder of "
                                "images, or none (folder=None) to use the bundled photos")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {str(folder)!r}")
    return files


#: The image sides (pixels) every function of this module accepts.
SIZES = (4, 2048)


def check_size(size) -> int:
    """An image side in :data:`SIZES`, or a ``ValueError`` that says the rule."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not SIZES[0] <= size <= SIZES[1]:
        raise ValueError(f"size must be an integer from {SIZES[0]} to {SIZES[1]}, got {size!r}")
    return int(size)


def _read_images(files, size: int) -> np.ndarray:
    """Each file's central square, resized: float32 ``(len(files), 3, size, size)``."""
    from PIL import Image

    out = np.empty((len(files), 3, size, size), dtype=np.float32)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                if im.mode.startswith("I"):  # 16-bit grey (or 32-bit integer): scale, not clip
                    grey = np.asarray(im, dtype=np.float64)
                    peak = 65535.0 if im.mode.startswith("I;16") or grey.max() > 255 else 255.0
                    rgb = np.repeat((grey / peak)[None], 3, axis=0) * 2.0 - 1.0
                else:
                    rgb = np.asarray(im.convert("RGB"), dtype=np.float64).transpose(2, 0, 1) / 127.5 - 1.0
        except (OSError, SyntaxError, ValueError) as err:  # truncated, corrupt, not an image
            raise ValueError(f"cannot read the image {f}: {err}") from None
        out[i] = square_resized(rgb.astype(np.float32), size)
    return out


def load_image_folder(path, size: int, n: int | None = None, *, offset: int = 0) -> np.ndarray:
    """Images from a folder (e.g. ImageNet's validation set), centre-cropped square and resized.

    Files are read in sorted order (sub-folders included), so the same folder always gives the
    same images.

    Args:
        path: a folder of image files (png, jpg, bmp, webp, tif).
        size: side of the output images in pixels (:data:`SIZES`).
        n: read at most this many images (None: all).
        offset: skip this many files first (to read a large folder in chunks).

    Returns:
        float32 images in [-1, 1].

    Shapes:
        ``(N, 3, size, size)``.
    """
    files = _image_files(path)
    check_size(size)
    if n is not None:
        n = checks.count(n, "n")
    offset = checks.count(offset, "offset", 0)
    files = files[offset:offset + n if n is not None else None]
    if not files:
        raise ValueError(f"offset {offset} is past the last image of {str(path)!r}")
    return _read_images(files, size)


def image_batches(n: int, size: int, *, folder=None, offset: int = 0, split: str = "test",
                  seed: int = 0, batch: int = 256, half: str | None = None):
    """``n`` images in batches, so that large sets (e.g. 256-pixel images for the Hub models) are
    never all in memory at once.

    From ``folder`` (files ``offset`` to ``offset + n`` in sorted order, see
    :func:`load_image_folder`), else crops of the bundled photos of ``split``, batch ``k``
    drawn with seed ``seed + k`` (inside the ``half`` of each photo, see :func:`photo_crops`;
    ignored for a folder, whose files are disjoint by ``offset``).

    Returns:
        an iterator of float32 arrays in [-1, 1] of shape ``(b, 3, size, size)``,
        ``b <= batch``, ``n`` in all. The arguments are checked (and a folder listed) at the
        call, not at the first ``next()``.
    """
    n, batch = checks.count(n, "n"), checks.count(batch, "batch")
    offset = checks.count(offset, "offset", 0)
    check_size(size)
    if half is not None:
        checks.choice(half, "half", HALVES[1:])
    files = None
    if folder is not None:  # list the folder once, then read it slice by slice
        files = _image_files(folder)[offset:offset + n]
        if len(files) < n:
            raise ValueError(f"{str(folder)!r} has fewer than {offset + n} images")
    else:
        _check_split(split)
    return _batches(n, size, files, split, seed, batch, half)


def _batches(n, size, files, split, seed, batch, half):
    for k, start in enumerate(range(0, n, batch)):
        b = min(batch, n - start)
        if files is not None:
            yield _read_images(files[start:start + b], size)
        else:
            yield photo_crops(b, size, split=split, seed=seed + k, half=half)
