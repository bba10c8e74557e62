import numpy as np
import pytest
import torch

from lib.data import PHOTOS, load_photo, photo_crops, photo_names, with_content


def test_names_and_split_by_photo():
    train, test = photo_names("train"), photo_names("test")
    assert set(train).isdisjoint(test)
    assert sorted(train + test) == sorted(photo_names())
    assert len(train) >= 5 and len(test) >= 2
    with pytest.raises(ValueError, match="split must be one of"):
        photo_names("val")


@pytest.mark.parametrize("name", list(PHOTOS))
def test_load_photo(name):
    x = load_photo(name)
    assert x.dtype == np.float32 and x.ndim == 3 and x.shape[0] == 3
    assert min(x.shape[1:]) >= 256
    assert -1.0 <= x.min() < -0.5 and 0.5 < x.max() <= 1.0  # uses the range
    assert x.std() > 0.1
    # a colour photograph: the channels are not all equal
    assert np.abs(x[0] - x[1]).mean() > 0.01


def test_load_photo_unknown():
    with pytest.raises(KeyError, match="bundled photos are"):
        load_photo("lena")


def test_crops_deterministic_shapes_and_range():
    a, la = photo_crops(200, 16, seed=3, return_labels=True)
    b, lb = photo_crops(200, 16, seed=3, return_labels=True)
    c = photo_crops(200, 16, seed=4)
    assert a.shape == (200, 3, 16, 16) and a.dtype == np.float32
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    assert set(la.tolist()) == set(range(len(photo_names("train"))))


def test_crops_come_from_their_photo_and_split():
    """Every unflipped crop at pyramid level 0 is an exact window of its labelled photo."""
    crops, labels = photo_crops(60, 8, split="test", seed=0, max_levels=1, return_labels=True)
    names = photo_names("test")
    flipped = []
    for crop, label in zip(crops, labels):
        photo = load_photo(names[label])
        found = False
        for is_flipped, candidate in enumerate((crop, crop[:, :, ::-1])):
            # locate by the top-left pixel, then compare the window
            hits = np.argwhere(np.all(photo[:, :, :] == candidate[:, 0:1, 0:1], axis=0))
            for i, j in hits:
                window = photo[:, i:i + 8, j:j + 8]
                if window.shape == candidate.shape and np.array_equal(window, candidate):
                    found = True
                    flipped.append(is_flipped)
                    break
            if found:
                break
        assert found
    assert 0.2 < np.mean(flipped) < 0.8  # random horizontal flips


def test_crops_use_scales():
    crops = photo_crops(400, 16, seed=0, max_levels=1)
    crops_multi = photo_crops(400, 16, seed=0, max_levels=4)
    # same draws except the level: some crops differ because they come from coarser levels
    assert 0 < np.mean(np.any(crops != crops_multi, axis=(1, 2, 3))) < 1
    # the pyramid shrinks by sqrt(2) per level
    from lib.data import _pyramid
    levels = _pyramid("astronaut", 16)
    sides = [lv.shape[1] for lv in levels]
    assert sides[:3] == [512, 363, 257]  # ceil(512 / sqrt(2)^k)


def test_crops_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        photo_crops(0)
    with pytest.raises(ValueError, match="larger than the photograph"):
        photo_crops(4, size=1000)
    with pytest.raises(ValueError, match="from 4 to 2048"):
        photo_crops(4, size=3)
    with pytest.raises(ValueError, match="split"):
        photo_crops(4, split="validation")


def test_crops_of_chosen_photos():
    crops, labels = photo_crops(50, 8, photos=["rocket", "cat"], seed=0, return_labels=True)
    assert crops.shape == (50, 3, 8, 8) and set(labels.tolist()) == {0, 1}
    only = photo_crops(50, 8, photos=["rocket"], seed=0)
    rocket = load_photo("rocket")
    assert rocket.min() <= only.min() and only.max() <= rocket.max()
    with pytest.raises(KeyError, match="unknown photos"):
        photo_crops(5, 8, photos=["nope"])
    with pytest.raises(ValueError, match="empty"):
        photo_crops(5, 8, photos=[])


def test_load_image_folder_crops_resizes_and_orders(tmp_path):
    from PIL import Image

    from lib.data import load_image_folder

    # a 40x20 image: left half black, right half white; its centre square is 10 black + 10 white
    wide = np.zeros((20, 40, 3), dtype=np.uint8)
    wide[:, 20:] = 255
    Image.fromarray(wide).save(tmp_path / "b.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.full((8, 8, 3), 255, dtype=np.uint8)).save(tmp_path / "sub" / "c.jpg")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "a.bmp")
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_image_folder(tmp_path, 8)
    assert images.shape == (3, 3, 8, 8) and images.dtype == np.float32
    assert np.all(images[0] == -1.0)  # a.bmp first (sorted), all black
    assert images[1, :, :, :3].max() < -0.9 and images[1, :, :, 5:].min() > 0.9  # centre crop
    assert images[2].min() > 0.95  # JPEG, white
    assert load_image_folder(tmp_path, 8, n=1).shape == (1, 3, 8, 8)
    with pytest.raises(FileNotFoundError, match="folder=None"):
        load_image_folder(tmp_path / "missing", 8)
    with pytest.raises(FileNotFoundError, match="no image files"):
        load_image_folder(_empty(tmp_path), 8)
    with pytest.raises(ValueError, match="size"):
        load_image_folder(tmp_path, 3)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_image_batches_cover_n_images_from_a_folder_or_the_photos(tmp_path):
    from PIL import Image

    from lib.data import image_batches, load_image_folder

    for i in range(5):
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    chunks = list(image_batches(4, 8, folder=tmp_path, offset=1, batch=3))
    assert [len(c) for c in chunks] == [3, 1]
    assert np.array_equal(np.concatenate(chunks), load_image_folder(tmp_path, 8)[1:5])
    with pytest.raises(ValueError, match="fewer than"):
        list(image_batches(5, 8, folder=tmp_path, offset=1, batch=3))
    crops = list(image_batches(5, 16, split="train", seed=7, batch=2))
    assert [c.shape for c in crops] == [(2, 3, 16, 16), (2, 3, 16, 16), (1, 3, 16, 16)]
    assert np.array_equal(crops[1], photo_crops(2, 16, split="train", seed=8))
    with pytest.raises(ValueError, match="past the last"):
        load_image_folder(tmp_path, 8, offset=5)


def test_photo_square():
    from lib.data import load_photo, photo_square

    full = load_photo("cat")  # (3, H, W), wider than tall
    H, W = full.shape[1:]
    sq = photo_square("cat", 16)
    assert sq.shape == (3, 16, 16) and sq.dtype == np.float32
    assert sq.min() >= -1 and sq.max() <= 1
    # area resizing keeps the mean of the central square
    left = (W - H) // 2
    assert np.allclose(sq.mean(axis=(1, 2)), full[:, :, left:left + H].mean(axis=(1, 2)), atol=0.02)
    with pytest.raises(ValueError):
        photo_square("cat", 1)


@pytest.mark.parametrize("half", ["left", "right"])
def test_half_crops_lie_inside_their_half_of_the_photo(half):
    """At pyramid level 0 every crop is a window of its photo inside the asked half; the two
    halves never give the same window, and a bad value is refused."""
    size = 8
    crops, labels = photo_crops(40, size, split="test", seed=5, max_levels=1, return_labels=True,
                                half=half)
    names = photo_names("test")
    for crop, label in zip(crops, labels):
        photo = load_photo(names[label])
        w = photo.shape[2]
        columns = []
        for candidate in (crop, crop[:, :, ::-1]):  # crops may be flipped
            for i, j in np.argwhere(np.all(photo == candidate[:, 0:1, 0:1], axis=0)):
                window = photo[:, i:i + size, j:j + size]
                if window.shape == candidate.shape and np.array_equal(window, candidate):
                    columns.append(j)
        assert columns, "crop not found in its photo"
        inside = [(j + size <= w // 2) if half == "left" else (j >= w // 2) for j in columns]
        assert any(inside)
    with pytest.raises(ValueError, match="half must be one of"):
        photo_crops(4, size, half="top")


def test_half_crops_of_one_photo_do_not_overlap_and_image_batches_passes_half():
    from lib.data import image_batches

    left = np.concatenate(list(image_batches(64, 8, split="test", seed=1, batch=32, half="left")))
    right = photo_crops(64, 8, split="test", seed=1, half="right")
    whole = photo_crops(32, 8, split="test", seed=1)
    assert np.array_equal(left[:32], photo_crops(32, 8, split="test", seed=1, half="left"))
    assert not np.array_equal(left[:32], whole)
    # no left-half crop equals any right-half crop
    assert not (left.reshape(64, 1, -1) == right.reshape(1, 64, -1)).all(-1).any()


def test_one_size_rule_for_crops_photos_and_folders(tmp_path):
    from PIL import Image

    from lib.data import SIZES, image_batches, load_image_folder, photo_square

    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    lo, hi = SIZES
    # the smallest side works everywhere; one below it fails everywhere with the same words
    assert photo_crops(2, lo).shape == (2, 3, lo, lo)
    assert photo_square("cat", lo).shape == (3, lo, lo)
    assert load_image_folder(tmp_path, lo).shape == (1, 3, lo, lo)
    for call in (lambda s: photo_crops(2, s), lambda s: photo_square("cat", s),
                 lambda s: load_image_folder(tmp_path, s), lambda s: image_batches(1, s)):
        with pytest.raises(ValueError, match=f"from {lo} to {hi}"):
            call(lo - 1)
        with pytest.raises(ValueError, match=f"from {lo} to {hi}"):
            call(hi + 1)


def test_image_batches_checks_its_arguments_when_called(tmp_path):
    from lib.data import image_batches

    # no next(): a generator function would raise nothing here
    with pytest.raises(ValueError, match="n must be a positive integer"):
        image_batches(0, 8)
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        image_batches(4, 8, batch=0)
    with pytest.raises(ValueError, match="split"):
        image_batches(4, 8, split="validation")
    with pytest.raises(ValueError, match="half"):
        image_batches(4, 8, half="top")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_batches(4, 8, folder=tmp_path / "missing")


def test_region_crops_lie_inside_their_region():
    from lib.data import load_photo, photo_regions, region_crops

    table = photo_regions("test", block=64)
    crops, ids = region_crops(6, 16, split="test", seed=4, block=64, max_levels=1)
    assert crops.shape == (6, 3, 16, 16) and ids.shape == (6,)
    for crop, rid in zip(crops, ids):
        reg = table[rid]
        window = load_photo(reg.photo)[:, reg.top:reg.top + 64, reg.left:reg.left + 64]
        found = any(np.allclose(window[:, y:y + 16, x:x + 16], c, atol=1e-6)
                    for y in range(49) for x in range(49) for c in (crop, crop[:, :, ::-1]))
        assert found, (reg, "crop not found inside its region")


def test_region_crops_are_reproducible_and_respect_the_region_subset():
    from lib.data import photo_regions, region_crops

    a, ra = region_crops(50, 32, split="train", seed=2)
    b, rb = region_crops(50, 32, split="train", seed=2)
    assert np.array_equal(a, b) and np.array_equal(ra, rb)
    _, rc = region_crops(200, 32, split="train", seed=3, regions=[1, 5, 9])
    assert set(rc) == {1, 5, 9}
    regions = photo_regions("train")
    assert [r.id for r in regions] == list(range(len(regions)))
    # regions of one photograph tile it without overlap
    astro = [r for r in regions if r.photo == "astronaut"]
    assert len(astro) == 16 and len({(r.top, r.left) for r in astro}) == 16
    with pytest.raises(ValueError, match="regions must be ids"):
        region_crops(5, 32, split="train", regions=[len(regions)])
    with pytest.raises(ValueError, match="regions must be ids"):
        region_crops(5, 32, split="train", regions=[1.5])
    with pytest.raises(ValueError, match="holds no"):
        region_crops(5, 32, split="train", block=16)
    with pytest.raises(ValueError, match="larger than every photograph"):
        photo_regions("test", block=5000)


@pytest.mark.parametrize("size, block", [(32, 64), (16, 32), (16, 41), (32, 128)])
def test_region_crops_at_every_level_lie_inside_their_region(size, block):
    # every pyramid level, regions on the right and bottom edges included: the crop is a
    # window of its level whose full-resolution footprint lies inside the region
    from lib.data import _pyramid, _region_window, photo_regions, region_crops

    table = photo_regions("train", block=block)
    edge = [r.id for r in table if r.photo == "cat"]  # 300 x 451: uneven scales per axis
    crops, ids = region_crops(40, size, split="train", seed=1, block=block, regions=edge,
                              max_levels=4)
    from numpy.lib.stride_tricks import sliding_window_view

    for crop, rid in zip(crops, ids):
        reg = table[rid]
        full = (300, 451)
        hits = []
        for lv, im in enumerate(_pyramid(reg.photo, size)[:4]):
            r0, r1, c0, c1 = _region_window(reg, full, im.shape[1:])
            fy, fx = im.shape[1] / full[0], im.shape[2] / full[1]
            assert r0 / fy >= reg.top - 1e-9 and r1 / fy <= reg.top + reg.side + 1e-9
            assert c0 / fx >= reg.left - 1e-9 and c1 / fx <= reg.left + reg.side + 1e-9
            # every window of the region at this level, one row of windows at a time:
            # (3, windows, size, size) against the crop and its mirror image
            if r1 - r0 < size or c1 - c0 < size:
                continue  # the region holds no whole window at this level
            rows = sliding_window_view(im[:, r0:r1, c0:c1], (size, size), axis=(1, 2))
            for row in rows.transpose(1, 0, 2, 3, 4):
                for target in (crop, crop[:, :, ::-1]):
                    if (np.abs(row - target[:, None]).max(axis=(0, 2, 3)) <= 1e-6).any():
                        hits.append(lv)
        assert hits, (reg, "crop is no window inside its region at any level")


def test_with_content_keeps_the_first_images_above_the_threshold_in_order():
    rng = np.random.default_rng(0)
    flat = np.full((3, 4, 4), -0.9)  # a near-black patch: standard deviation 0
    images = np.stack([flat, rng.uniform(-1, 1, (3, 4, 4)), flat + 0.01 * rng.normal(size=(3, 4, 4)),
                       rng.uniform(-1, 1, (3, 4, 4)), rng.uniform(-1, 1, (3, 4, 4))])
    assert with_content(images, 2).tolist() == [1, 3]
    assert with_content(images, 3).tolist() == [1, 3, 4]
    assert with_content(images, 4, min_std=0.005).tolist() == [1, 2, 3, 4]  # the faint one passes
    assert with_content(images, 5, min_std=0).tolist() == [0, 1, 2, 3, 4]  # 0 keeps every image
    assert with_content(torch.as_tensor(images), 2).tolist() == [1, 3]  # tensors alike
    with pytest.raises(ValueError, match="only 3 of 5 images"):
        with_content(images, 4)
    with pytest.raises(ValueError, match="min_std"):
        with_content(images, 1, min_std=-0.1)
