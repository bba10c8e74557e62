"""The experiment settings: every chapter's models come from its profile and the registry."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import lib.models
import lib.profiles
from lib.data import MIN_CONTENT_STD, image_batches, photo_crops, photo_names
from lib.models import MODELS, GaussianModel, ModelSpec, register
from lib.experiment import CONTENT_DRAWS, setup
from lib.profiles import PROFILES, ChapterSettings, Profile

BOOK = Path(__file__).resolve().parent.parent / "book"


def test_every_chapter_sets_up_from_its_profile_with_registered_models():
    calls = {p.stem: re.findall(r'lib\.experiment\.setup\("([^"]+)"', p.read_text())
             for p in BOOK.glob("*.md")}
    calls = {stem: found for stem, found in calls.items() if found}
    assert len(calls) >= 6
    for stem, found in calls.items():
        assert found == [stem], f"{stem} sets up {found}"  # its own settings, once
    for profile in PROFILES.values():
        assert set(profile.chapters) == set(calls), profile.name
        for chapter, settings in profile.chapters.items():
            assert settings.models and all(m in MODELS for m in settings.models), (profile.name, chapter)


def test_a_set_up_cell_is_short_and_never_branches_on_the_profile():
    for path in BOOK.glob("*.md"):
        cells = re.findall(r"```\{code-cell\} ipython3\n(.*?)```", path.read_text(), re.S)
        for cell in cells:
            if "lib.experiment.setup(" in cell:
                code = [line for line in cell.splitlines() if line.strip() and not line.startswith(":")]
                assert len(code) <= 12, f"{path.name}: set-up cell of {len(code)} lines"
                assert not re.search(r"\bif\b", cell), f"{path.name}: set-up cell branches"
        for cell in cells:
            assert not re.search(r"""P\.name\s*[=!]=\s*["']""", cell), f"{path.name} tests P.name"


def test_setup_loads_the_models_and_gives_the_chapters_data():
    S = setup("02_correlation", "cpu")
    assert S.names == ["tiny-a", "tiny-b", "gaussian"] and S.main is S.models["tiny-a"]
    assert S.size == 32 and not S.latent and S.latent_side == 32 and S.show_side == 32
    assert S.sampler() == (25, "leading", None) and S.folder is None
    assert all(m.device.type == "cpu" and m.dtype == torch.float32 for m in S.models.values())
    # the data helpers are the data module's, with the chapter's size
    got = np.concatenate(list(S.images(40, split="test", seed=3, batch=16)))
    assert np.array_equal(got, np.concatenate(list(image_batches(40, 32, split="test", seed=3, batch=16))))
    assert torch.equal(S.model_space(10, seed=1, batch=4), torch.as_tensor(
        np.concatenate(list(image_batches(10, 32, seed=1, batch=4)))))
    assert torch.equal(S.fit_samples(20, seed=5), torch.as_tensor(photo_crops(20, 32, split="train", seed=5)))
    images, names = S.targets(6, split="train", seed=2, min_std=0)  # no filter: the first six
    crops, idx = photo_crops(6 * CONTENT_DRAWS, 32, split="train", seed=2, return_labels=True)
    assert torch.equal(images, torch.as_tensor(crops[:6]))
    assert names == [photo_names("train")[i] for i in idx[:6]]
    # the default: the first six with content, in their order, and none without
    images, names = S.targets(6, split="train", seed=2)
    std = crops.reshape(len(crops), -1).std(axis=1)
    keep = np.flatnonzero(std >= MIN_CONTENT_STD)[:6]
    assert torch.equal(images, torch.as_tensor(crops[keep]))
    assert names == [photo_names("train")[i] for i in idx[keep]]
    drawn = np.concatenate(list(S.images(8 * CONTENT_DRAWS, split="test", seed=0, batch=32)))
    plain = drawn.reshape(len(drawn), -1).std(axis=1) < MIN_CONTENT_STD
    assert plain[:8].any()  # the first eight test crops include a near-black one ...
    shown = S.content_images(8, split="test", seed=0, batch=32)
    assert torch.equal(shown, torch.as_tensor(drawn[~plain][:8]))  # ... which is skipped
    with pytest.raises(ValueError, match="unknown chapter"):
        setup("07_nothing", "cpu")
    with pytest.raises(ValueError, match="unknown profile"):
        setup("02_correlation", "tpu")


@pytest.fixture
def toy_registry(monkeypatch, tmp_path):
    """A throwaway model and profile, registered for one test only."""
    monkeypatch.setattr(lib.models, "MODELS", dict(MODELS))
    monkeypatch.setattr(lib.profiles, "PROFILES", dict(PROFILES))
    monkeypatch.setenv("LIB_CACHE_DIR", str(tmp_path))
    rng = np.random.default_rng(0)
    A = rng.normal(size=(48, 48)) / 7
    cov = A @ A.T + 0.05 * np.eye(48)

    def load(spec, device, dtype):
        return GaussianModel(np.zeros(48), cov, (3, 4, 4), device=device or "cpu",
                             dtype=dtype or torch.float32)

    register(ModelSpec("toy-gauss", "toy", resolution=4, steps=10, spacing="trailing", load=load))
    register(ModelSpec("toy-latent", "toy", resolution=32, latent_factor=8, load=load))
    lib.profiles.PROFILES["toy"] = Profile(
        name="toy", device="cpu", needs_gpu=False, n_fit=100, n_test=20, image_size=4,
        description="one throwaway model", chapters={
            "02_correlation": ChapterSettings(models=("toy-gauss",)),
            "03_fixed_point": ChapterSettings(models=("toy-latent",), values={"label": "x"})})


def test_a_registered_model_runs_a_chapter_level_function(toy_registry):
    from lib.correlation import pairing_stats
    from lib.sampling import sample_batched

    S = setup("02_correlation", "toy")  # one registry entry and one profile entry: no other change
    assert S.names == ["toy-gauss"] and S.size == 4 and S.sampler() == (10, "trailing", None)
    steps, spacing, guidance = S.sampler()
    noise = torch.randn(64, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    images = sample_batched(S.main, noise, steps, S.main.random_labels(64), guidance,
                            spacing=spacing, progress=False)
    stats = pairing_stats(noise, images, n_perm=200, generator=0)
    # a Gaussian model's DDIM is a linear map of its noise: each image keeps its own noise
    assert stats.paired_r.mean() > 0.3 > abs(stats.repaired_r.mean()) and stats.p_value < 0.01


def test_a_latent_model_takes_the_readers_folder(toy_registry, tmp_path, capsys):
    S = setup("03_fixed_point", "toy", image_folder=None)
    assert S.latent and S.size == PROFILES["sd"].sd_image_size and S.latent_side == S.size // 8
    assert S.show_side == 64 and S.values == {"label": "x"}
    assert "IMAGE_FOLDER" in capsys.readouterr().out  # it says the bundled photos stand in
    S = setup("03_fixed_point", "toy", image_folder=str(tmp_path))
    assert S.folder == str(tmp_path) and "IMAGE_FOLDER" not in capsys.readouterr().out
    assert setup("02_correlation", "toy", image_folder=str(tmp_path)).folder is None  # pixels


def test_a_profile_is_built_by_keyword_only():
    with pytest.raises(TypeError):
        Profile("x", "cpu", False, 100, 20, 4, "positional")  # positional: refused
    p = Profile(name="x", device="cpu", needs_gpu=False, n_fit=100, n_test=20, image_size=4,
                description="keywords")
    assert p.chapters == PROFILES["cpu"].chapters
    with pytest.raises(TypeError):
        ChapterSettings(("tiny-a",))  # positional: refused


def test_a_chapters_sizes_live_only_in_its_settings():
    """Every profile gives each chapter the keys it reads, and the profile itself holds no
    chapter's size: its fields are the device and the shared sizes."""
    from dataclasses import fields

    from lib.profiles import CHAPTER_KEYS

    assert {f.name for f in fields(Profile)} == {
        "name", "device", "needs_gpu", "n_fit", "n_test", "image_size", "description",
        "sd_image_size", "chapters", "dtype"}
    for profile in PROFILES.values():
        for chapter, keys in CHAPTER_KEYS.items():
            assert keys <= set(profile.chapters[chapter].values), (profile.name, chapter)
    cpu, mini = PROFILES["cpu"].chapters, PROFILES["mini"].chapters
    assert cpu["04_whitening"].values["n_pairs"] == 300 and mini["04_whitening"].values["n_pairs"] == 96
    assert not any(s.parameters for s in cpu.values())  # the cpu run is the committed notebooks
    assert mini["05_annealing"].parameters == {"N_ITERS": 200, "N_TARGETS": 4, "N_CHAINS": 4}
    for path in BOOK.glob("*.md"):  # chapters read their sizes from S.values, not the profile
        for key in set().union(*CHAPTER_KEYS.values()):
            assert f"P.{key}" not in path.read_text(), f"{path.name} reads P.{key}"


def test_whitening_sets_are_the_profiles_training_and_test_crops():
    S = setup("03_fixed_point", "mini")
    fit, held = S.whitening_sets(offset=99)  # the offset only moves a latent model's images
    # (the crops drawn depend on the batch size: image_batches seeds each batch; 32 as before)
    P = S.profile
    assert fit.shape == (P.n_fit, 3 * 32 * 32) and held.shape == (P.n_test, 3 * 32 * 32)
    for got, (n, split, seed) in ((fit, (P.n_fit, "train", 3)), (held, (P.n_test, "test", 1))):
        want = np.concatenate(list(image_batches(n, 32, split=split, seed=seed, batch=32)))
        assert np.array_equal(got, want.reshape(n, -1))
