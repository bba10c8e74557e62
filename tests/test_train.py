import json

import pytest
import torch

from lib.models import UNetModel
from lib.tooling.train import (TrainConfig, build_unet, evaluate, export, publish, reproduce_command,
                       slim_checkpoint, train)

TINY = TrainConfig(
    name="test-tiny", seed=3, steps=6, batch_size=4, warmup=2, n_crops=64, size=16,
    unet=dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, attention_head_dim=8,
              down_block_types=("DownBlock2D", "AttnDownBlock2D"),
              up_block_types=("AttnUpBlock2D", "UpBlock2D")))


def _checkpoint(folder):
    return torch.load(folder / "checkpoint.pt", weights_only=False)


def test_training_resumed_from_a_checkpoint_equals_one_uninterrupted_run(tmp_path):
    train(TINY, out=tmp_path / "one", bf16=False, progress=False)
    train(TINY, steps=3, out=tmp_path / "two", bf16=False, progress=False)
    state = train(TINY, out=tmp_path / "two", bf16=False, progress=False)  # resumes at step 3
    assert state["step"] == 6 and [s["steps"] for s in state["segments"]] == [3, 3]
    one, two = _checkpoint(tmp_path / "one"), _checkpoint(tmp_path / "two")
    a, b = one["unet"], two["unet"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ema_a, ema_b = one["ema"]["shadow_params"], two["ema"]["shadow_params"]
    assert all(torch.equal(x, y) for x, y in zip(ema_a, ema_b))  # the exported weights
    assert one["state"]["losses"] == two["state"]["losses"]
    fresh = build_unet(TINY).state_dict()
    assert any(not torch.equal(a[k], fresh[k]) for k in a)  # the weights did move


def test_a_slim_checkpoint_resumes_with_fresh_adam_and_a_new_warmup(tmp_path):
    train(TINY, steps=3, out=tmp_path, bf16=False, progress=False)
    full = (tmp_path / "checkpoint.pt").stat().st_size
    slim_checkpoint(TINY, out=tmp_path)
    ckpt = _checkpoint(tmp_path)
    assert "optim" not in ckpt and (tmp_path / "checkpoint.pt").stat().st_size < 0.7 * full
    before = ckpt["unet"]
    state = train(TINY, steps=4, out=tmp_path, bf16=False, progress=False)
    assert state["step"] == 4 and state["warmup_from"] == 3
    assert state["segments"][-1]["optimizer"].startswith("restarted")
    after = _checkpoint(tmp_path)
    assert after["optim"]["param_groups"][0]["lr"] == TINY.lr / TINY.warmup  # step 1 of the new warmup
    assert any(not torch.equal(before[k], after["unet"][k]) for k in before)
    # the card's command retraces the restart
    assert reproduce_command("m", state) == ("python -m lib train --model m --steps 3 --slim && "
                                             "python -m lib train --model m --steps 4 --publish --force")
    plain = {"step": 6, "segments": [{"steps": 3}, {"steps": 3}]}
    assert reproduce_command("m", plain) == "python -m lib train --model m --steps 6 --publish --force"


def test_a_checkpoint_of_another_config_is_refused(tmp_path):
    train(TINY, steps=1, out=tmp_path, bf16=False, progress=False)
    other = TrainConfig(**{**TINY.to_dict(), "seed": 4})
    with pytest.raises(ValueError, match="another config"):
        train(other, out=tmp_path, bf16=False, progress=False)
    longer = TrainConfig(**{**TINY.to_dict(), "steps": 9})  # training further is allowed
    assert train(longer, steps=2, out=tmp_path, bf16=False, progress=False)["step"] == 2


def test_export_evaluate_publish_and_load(tmp_path):
    train(TINY, out=tmp_path, bf16=False, progress=False, checkpoint_every=2)
    folder = export(TINY, out=tmp_path)
    card = json.loads((folder / "card.json").read_text())
    assert card["steps"] == 6 and card["null_class"] == len(card["classes"]) == 5
    assert len(card["weights_sha256"]) == 64
    model = UNetModel.from_folder(folder)
    assert model.unet.dtype == torch.float32 and model.sample_shape == (3, 16, 16)
    assert next(iter(torch.load(tmp_path / "checkpoint.pt", weights_only=False)["unet"].values())).dtype \
        == torch.float32
    card = evaluate(folder, n=32, steps=2, progress=False)
    q = card["quality"]
    assert json.loads((folder / "card.json").read_text())["quality"] == q  # written as returned
    # the reference rows are the statistics of the seeded crops, recomputed here
    from lib.data import photo_crops
    from lib.quality import QUALITY_BAR, compare_stats, sample_stats

    test, train_crops = (photo_crops(32, 16, split=s, seed=k) for s, k in (("test", 1), ("train", 2)))
    assert q["train"] == json.loads(json.dumps(sample_stats(train_crops).to_dict()))
    assert q["train_vs_test"] == json.loads(json.dumps(compare_stats(train_crops, test).to_dict()))
    # a pass is the bar of QUALITY_BAR: the relative covariance distance within its limit
    vs = q["samples_vs_test"]
    assert set(vs["passes"]) == {"slope", "mean", "std", "cov"}
    assert vs["passes"]["cov"] == (vs["cov_rel_frobenius"] <= QUALITY_BAR["cov_rel_frobenius"])
    bands = q["eps_mse_test"]
    assert list(bands) == ["0-100", "100-300", "300-500", "500-700", "700-900", "900-1000"]
    assert all(0 < v < 10 for v in bands.values())  # a mean squared error of unit-variance noise
    # the sampler's floor: the Gaussian-optimal denoiser from the same noises, a known shortfall
    assert q["gaussian"]["n"] == 32 and "gaussian_vs_train" in q
    assert max(q["gaussian"]["std"]) < max(q["train"]["std"])  # abar_T > 0: too little variance
    readme = (folder / "README.md").read_text()
    assert "the sampler's floor" in readme
    assert "training-photo crops vs test crops (no model)" in readme and card["weights_sha256"] in readme
    assert card["forward_seconds_batch64"]["seconds"] > 0 and "Speed: one forward pass" in readme
    dest = publish("test-tiny", out=tmp_path, dest=tmp_path / "published")
    assert (dest / "diffusion_pytorch_model.safetensors").exists()
    with pytest.raises(FileExistsError, match="--force"):
        publish("test-tiny", out=tmp_path, dest=dest)
    publish("test-tiny", out=tmp_path, dest=dest, force=True)


def test_class_conditioning_and_guidance(tmp_path):
    train(TINY, steps=2, out=tmp_path, bf16=False, progress=False)
    model = UNetModel.from_folder(export(TINY, out=tmp_path))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    c = model.cond(["cat", "china"])
    assert c.tolist() == [model.classes.index("cat"), model.classes.index("china")]
    e_u, e_c = model.eps(x, 700), model.eps(x, 700, c)
    assert not torch.allclose(e_u, e_c, atol=1e-6)  # the label reaches the network
    assert torch.allclose(model.eps(x, 700, c, guidance_scale=3.0), e_u + 3 * (e_c - e_u), atol=1e-5)
    with pytest.raises(ValueError, match="unknown class 'dog'"):
        model.cond(["dog"])
    with pytest.raises(ValueError, match="shape"):
        model.eps(torch.randn(2, 3, 32, 32), 10)


def test_each_committed_model_card_is_its_card_through_the_template():
    """README.md of every embedded model is model_card_markdown(card.json), byte for byte: the
    template, its fields and the quality tables render exactly what was published."""
    from lib.models import EMBEDDED, model_dir
    from lib.tooling.train import model_card_markdown

    for name in EMBEDDED:
        card = json.loads((model_dir(name) / "card.json").read_text())
        assert card["quality"] and "gaussian_vs_train" in card["quality"]
        assert model_card_markdown(card) == (model_dir(name) / "README.md").read_text(), name
        bare = {k: v for k, v in card.items() if k not in ("quality", "forward_seconds_batch64")}
        text = model_card_markdown(bare)  # before evaluation: no quality section, no speed
        assert "## Quality" not in text and "Speed:" not in text and f"# {name}:" in text
