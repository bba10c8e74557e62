"""The Stable Diffusion path, offline: tiny SD / SDXL pipelines built from configs with random
weights and a hand-made CLIP vocabulary, run through the same ``lib`` functions the chapters use,
and checked against diffusers' own pipelines on the same inputs."""

import json
import os
import string
import subprocess
import sys

import pytest
import torch
from diffusers import (AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline,
                       UNet2DConditionModel)
from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection,
                          CLIPTokenizer)

import lib.models as models
from lib.models import HubUnavailable, StableDiffusionModel, load_model
from lib.sampling import ddim_inverse_scheduler, ddim_sample, ddim_scheduler

HIDDEN = 32


def _tokenizer(tmp_path):
    """A CLIP BPE tokenizer over single characters: every word is spelled out letter by letter."""
    chars = string.ascii_lowercase + string.digits + ",.!'"
    tokens = ["<|startoftext|>", "<|endoftext|>"] + list(chars) + [c + "</w>" for c in chars]
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16,
                         pad_token="!")


def _text_config(tok, projection_dim=HIDDEN):
    return CLIPTextConfig(vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=37,
                          num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                          projection_dim=projection_dim, bos_token_id=0, eos_token_id=1,
                          pad_token_id=tok.pad_token_id)


def _vae():
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8,
                         sample_size=16, scaling_factor=0.5)


def _unet(**kw):
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), norm_num_groups=16,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                attention_head_dim=8, **kw)


def _scheduler(prediction_type):
    sched = ddim_scheduler()
    return type(sched).from_config(sched.config, prediction_type=prediction_type)


def _sd_pipeline(tmp_path, prediction_type="epsilon"):
    torch.manual_seed(0)
    tok = _tokenizer(tmp_path)
    pipe = StableDiffusionPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config(tok)), tokenizer=tok,
        unet=_unet(cross_attention_dim=HIDDEN), scheduler=_scheduler(prediction_type),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe.to(torch.float32)


def _sdxl_pipeline(tmp_path):
    torch.manual_seed(1)
    tok = _tokenizer(tmp_path)
    time_dim, proj = 8, 24
    unet = _unet(cross_attention_dim=2 * HIDDEN, addition_embed_type="text_time",
                 addition_time_embed_dim=time_dim,
                 projection_class_embeddings_input_dim=proj + 6 * time_dim)
    return StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config(tok)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(tok, proj)), tokenizer=tok,
        tokenizer_2=tok, unet=unet, scheduler=_scheduler("epsilon")).to(torch.float32)


def _saved(pipe, folder):
    pipe.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sd")
    return _saved(_sd_pipeline(tmp), tmp / "pipe")


def test_prompts_guidance_and_latent_shapes(sd_folder):
    model = load_model("sd-1.5", repo=sd_folder, device="cpu")
    assert isinstance(model, StableDiffusionModel)
    assert model.sample_shape == (4, 8, 8) and model.prediction_type == "epsilon"
    cond = model.cond(["a red cat", "a boat"])
    assert cond["encoder_hidden_states"].shape == (2, 16, HIDDEN)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    eps_c, eps_u = model.eps(z, 500, cond), model.eps(z, 500)
    assert not torch.allclose(eps_c, eps_u, atol=1e-4)  # the prompt changes the prediction
    assert torch.allclose(model.eps(z, 500, model.cond("")), eps_u, atol=1e-6)  # None = ""
    g = model.eps(z, 500, cond, guidance_scale=7.5)
    assert torch.allclose(g, eps_u + 7.5 * (eps_c - eps_u), atol=1e-5)  # Eq. (2)
    with pytest.raises(ValueError, match="one prompt or one per sample"):
        model.eps(torch.randn(3, 4, 8, 8), 500, cond)
    with pytest.raises(ValueError, match="latents of shape"):
        model.eps(torch.randn(2, 3, 8, 8), 500)
    # random conditions are prompts; a bundled photograph has a prompt of its own
    from lib.models import PHOTO_PROMPTS, PROMPTS

    prompts = model.random_labels(50, torch.Generator().manual_seed(0))
    assert set(prompts) <= set(PROMPTS) and len(set(prompts)) > 10
    assert model.describe("cat") == PHOTO_PROMPTS["cat"] and model.describe("a_b") == "a photo of a b"


def test_vae_encode_decode_shapes_and_scaling(sd_folder):
    model = load_model("sd-1.5", repo=sd_folder, device="cpu")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z0 = model.encode(x)
    assert z0.shape == (2, 4, 8, 8)
    expected = model.vae.encode(x).latent_dist.mean * 0.5
    assert torch.allclose(z0, expected, atol=1e-6)
    img = model.decode(z0)
    assert img.shape == (2, 3, 16, 16) and img.min() >= -1 and img.max() <= 1
    assert torch.allclose(img, model.vae.decode(z0 / 0.5).sample.clamp(-1, 1), atol=1e-6)
    with pytest.raises(ValueError, match="multiples of 2"):
        model.encode(torch.zeros(1, 3, 15, 15))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_sample_matches_the_diffusers_pipeline(tmp_path, prediction_type):
    """Our loop over model.eps (guidance, v -> eps) equals StableDiffusionPipeline with DDIM."""
    pipe = _sd_pipeline(tmp_path, prediction_type)
    model = load_model("sd-2.1-base", repo=_saved(pipe, tmp_path / "p"), device="cpu")
    assert model.prediction_type == prediction_type
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    ours = ddim_sample(model, noise, 6, model.cond("a cat"), guidance_scale=4.0)
    theirs = pipe("a cat", height=16, width=16, num_inference_steps=6, guidance_scale=4.0,
                  latents=noise.clone(), output_type="latent", eta=0.0).images
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()


def test_sdxl_two_encoders_and_added_conditioning_match_the_pipeline(tmp_path):
    pipe = _sdxl_pipeline(tmp_path)
    model = load_model("sdxl-turbo", repo=_saved(pipe, tmp_path / "xl"), device="cpu")
    assert model.is_sdxl and len(model.text_encoders) == 2
    cond = model.cond("a boat")
    assert cond["encoder_hidden_states"].shape == (1, 16, 2 * HIDDEN)
    assert cond["text_embeds"].shape == (1, 24)
    noise = torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(4))  # not square:
    ours = ddim_sample(model, noise, 4, cond, guidance_scale=3.0)  # time ids keep (H, W) order
    theirs = pipe("a boat", height=16, width=32, num_inference_steps=4, guidance_scale=3.0,
                  latents=noise.clone(), output_type="latent", eta=0.0).images
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()


def test_the_inverse_scheduler_walks_the_samplers_grid_backwards():
    """DDIM inversion (chapter 4, Sec. 6 edits) must use the sampler's schedule and grid: every
    setting the two diffusers schedulers share is equal, and the inversion visits the sampler's
    timesteps in reverse order."""
    ours, inverse = dict(ddim_scheduler().config), dict(ddim_inverse_scheduler().config)
    shared = {k for k in ours.keys() & inverse.keys() if not k.startswith("_")}
    assert {"beta_start", "beta_end", "beta_schedule", "steps_offset", "timestep_spacing",
            "set_alpha_to_one", "prediction_type"} <= shared
    assert {k: inverse[k] for k in shared} == {k: ours[k] for k in shared}
    for steps in (10, 25, 50):
        forward, backward = ddim_scheduler(), ddim_inverse_scheduler()
        forward.set_timesteps(steps)
        backward.set_timesteps(steps)
        assert backward.timesteps.tolist() == forward.timesteps.tolist()[::-1]


def test_offline_hub_model_fails_at_once_naming_the_cpu_profile(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(HubUnavailable, match="'cpu' profile.*tiny-a, tiny-b"):
        load_model("sd-2.1-base", repo="nobody/not-cached")


def test_with_no_network_a_hub_model_fails_at_once():
    """The real check (this machine and CI cannot reach the Hub): no patching at all."""
    if models._hub_reachable():
        pytest.skip("the Hugging Face Hub is reachable from here")
    with pytest.raises(HubUnavailable, match="'cpu' profile"):
        load_model("sd-2.1-base")


def test_a_cached_copy_is_used_with_no_network(sd_folder, tmp_path):
    """A model in the Hugging Face cache layout loads while the Hub is unreachable."""
    snap = tmp_path / "models--test--tiny-sd" / "snapshots" / ("0" * 40)
    (tmp_path / "models--test--tiny-sd" / "refs").mkdir(parents=True)
    (tmp_path / "models--test--tiny-sd" / "refs" / "main").write_text("0" * 40)
    snap.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(sd_folder, snap)
    code = ("import lib.models as m\n"
            "m._hub_reachable = lambda timeout=3.0: (_ for _ in ()).throw(AssertionError('network'))\n"
            "model = m.load_model('sd-1.5', repo='test/tiny-sd', device='cpu')\n"
            "print(model.sample_shape)\n")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(4, 8, 8)" in out.stdout


def test_the_applications_path_on_a_latent_model(sd_folder):
    """What chapters 5-6 do in the sd profile, on the tiny pipeline: ZCA of VAE latents, a
    model-free search in latent space, prompts, guidance, a trailing grid, edits and the
    diffusion classifier over prompts."""
    import numpy as np

    from lib.annealing import anneal, dewhitening
    from lib.data import photo_crops
    from lib.editing import EDIT_METHODS, class_errors, edit_sweep
    from lib.sampling import ddim_edit, decode_batched, encode_batched, sample_batched, sdedit
    from lib.schedule import forward_noise
    from lib.whitening import Whitener

    model = load_model("sd-1.5", repo=sd_folder, device="cpu")
    X = encode_batched(model, iter([photo_crops(200, 16, seed=s) for s in (1, 2)]), batch_size=64)
    assert X.shape == (400, 4, 8, 8)
    dw = dewhitening(Whitener("zca", eps=1e-3).fit(X.reshape(400, -1).numpy()))
    z0 = encode_batched(model, torch.as_tensor(photo_crops(3, 16, photos=["cat"], seed=3)))
    search = anneal(z0, loss="forward", dewhiten=dw, n_iters=200, n_chains=2,
                    generator=torch.Generator().manual_seed(0))
    assert search.best_loss.mean() < 0.5 * search.history.loss[0].mean()
    prompts = ["a photo of a cat", "a photo of a rabbit"]
    out = sample_batched(model, search.flat(), 4, [prompts[0]] * 6, 7.5, spacing="trailing",
                         progress=False, batch_size=4)
    # in batches of 4 with a prompt per noise: the same as one guided DDIM run on all six
    whole = ddim_sample(model, search.flat(), 4, model.cond([prompts[0]] * 6), 7.5, spacing="trailing")
    assert out.shape == (6, 4, 8, 8) and torch.allclose(out, whole, rtol=1e-4, atol=1e-4)
    shrunk = torch.nn.functional.interpolate(model.decode(out), size=(8, 8), mode="area").clamp(-1, 1)
    assert torch.allclose(decode_batched(model, out, size=8), shrunk, atol=1e-6)
    edits = edit_sweep(model, z0, [0.5, 1.0], source=prompts[0], target=prompts[1],
                       annealed_noise=search.best[:, 0], steps=4, guidance_scale=7.5,
                       spacing="trailing", generator=torch.Generator().manual_seed(1), progress=False,
                       batch_size=2)
    assert set(edits) == set(EDIT_METHODS) and all(e.shape == (2, 3, 4, 8, 8) for e in edits.values())
    # each method is its sampler with the target prompt, the chosen noise and the strength
    target = model.cond([prompts[1]] * 3)
    for j, strength in enumerate([0.5, 1.0]):
        annealed = sdedit(model, z0, strength, search.best[:, 0], 4, target, 7.5, spacing="trailing")
        assert torch.allclose(edits["sdedit-annealed"][j], annealed, rtol=1e-4, atol=1e-4)
        inverted = ddim_edit(model, z0, strength, 4, model.cond([prompts[0]] * 3), target, 7.5,
                             spacing="trailing")
        assert torch.allclose(edits["ddim-inversion"][j], inverted, rtol=1e-3, atol=1e-3)
    assert not torch.allclose(edits["sdedit"][0], edits["sdedit-annealed"][0], atol=1e-3)
    err = class_errors(model, z0, prompts, timesteps=[500], batch_size=2,
                       generator=torch.Generator().manual_seed(2))
    # the classifier's score: the mean squared error of the noise prediction under each prompt
    eps = torch.randn((3, 1, 1, 4, 8, 8), generator=torch.Generator().manual_seed(2))[:, 0, 0]
    z_t = forward_noise(z0, eps, 500, model.alphas_cumprod)
    direct = np.stack([((model.eps(z_t, 500, model.cond([p] * 3)) - eps) ** 2).mean((1, 2, 3)).numpy()
                       for p in prompts], axis=1)
    assert err.shape == (3, 2) and np.allclose(err, direct, rtol=1e-5)
    err = class_errors(model, z0, prompts, batch_size=2, generator=torch.Generator().manual_seed(2))
    # the batch size does not change the scores (labels are encoded once per chunk size)
    again = class_errors(model, z0, prompts, batch_size=5, generator=torch.Generator().manual_seed(2))
    assert np.allclose(err, again, rtol=1e-5)


def test_the_hypothesis_path_on_a_latent_model(sd_folder, tmp_path, monkeypatch):
    """What chapter 4 does in the sd profile, on the tiny pipeline: the model's own samples and
    encoded images as pair sets, fixed points after each K, DDIM inversion and a decision in
    the latents' eigenbasis."""
    import numpy as np

    from lib.data import photo_crops
    from lib.hypothesis import SAMPLES, PairSet, chapter_maps, decide_maps, sample_pairs
    from lib.sampling import encode_batched
    from lib.whitening import covariance

    monkeypatch.setenv("LIB_CACHE_DIR", str(tmp_path / "cache"))
    model = load_model("sd-1.5", repo=sd_folder, device="cpu")
    X = encode_batched(model, torch.as_tensor(photo_crops(60, 16, seed=4)), batch_size=32)
    images = PairSet("images", X, np.arange(60), 45)
    own = {"sd": sample_pairs(model, X.shape[1:], 45, 15, 3)}
    assert own["sd"].images.shape == (60, 4, 8, 8) and torch.isfinite(own["sd"].images).all()
    again = sample_pairs(model, X.shape[1:], 45, 15, 3)
    assert torch.equal(again.images, own["sd"].images)  # seeded and cached
    maps, agreement = chapter_maps({"sd": model}, {"images": images}, own=own, t_star=980,
                                   ks=(1, 2), k_fit=2, t_values=(500,), n_t=20, n_agree=4,
                                   n_inv=20, inv_steps=3)
    assert {k[1] for k in maps} == {"images", SAMPLES, "t", "inversion"}
    assert all(np.isfinite(Z).all() and Z.shape[1] == 256 for _, Z in maps.values())
    assert -1 <= agreement["sd", 500] <= 1
    eig = np.linalg.eigh(covariance(X.reshape(60, -1).double().numpy()) + 1e-6 * np.eye(256))
    decisions = decide_maps({k: v for k, v in maps.items() if k[1] == SAMPLES}, {"sd": eig},
                            lam_min=0.0, min_directions=3, k_linear=4, n_boot=10)
    assert set(decisions) == {("sd", SAMPLES, 1), ("sd", SAMPLES, 2)}
    assert all(np.isfinite(d["whitening"].estimates["exponent"].value) for d in decisions.values())


@pytest.fixture
def silent_hub(monkeypatch, tmp_path):
    """A 'Hub' on 127.0.0.1 that accepts connections and never answers, and an empty cache."""
    import socket
    import threading

    from huggingface_hub import constants

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held = []

    def accept():
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{srv.getsockname()[1]}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    yield constants.ENDPOINT
    srv.close()
    for c in held:
        c.close()


def test_a_hub_that_never_answers_fails_fast_naming_the_hub(silent_hub):
    import time

    t0 = time.perf_counter()
    with pytest.raises(HubUnavailable, match=r"Hugging Face Hub \(http://127\.0\.0\.1:\d+\) did not answer"):
        load_model("sd-2.1-base")
    assert time.perf_counter() - t0 < 5.0


def test_a_hub_that_answers_with_an_error_is_reachable(monkeypatch):
    """Any HTTP answer (here 404) means the server is there; a refused port means it is not."""
    import http.server
    import threading

    from huggingface_hub import constants

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{srv.server_address[1]}")
    try:
        assert models._hub_reachable()
    finally:
        srv.shutdown()
        srv.server_close()
    assert not models._hub_reachable()  # the port is closed now
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert not models._hub_reachable()


def test_a_missing_local_folder_is_named_as_one(tmp_path):
    for repo in (str(tmp_path / "no-such-model"), "./models/sd", "~/nothing/here", "a/b/c"):
        with pytest.raises(FileNotFoundError, match="local folder not found"):
            load_model("sd-1.5", repo=repo)


def test_downloads_get_bounded_timeouts_that_are_restored():
    from huggingface_hub import constants

    before = (constants.HF_HUB_DOWNLOAD_TIMEOUT, constants.HF_HUB_ETAG_TIMEOUT)
    with models._bounded_hub_timeouts(4.0):
        assert (constants.HF_HUB_DOWNLOAD_TIMEOUT, constants.HF_HUB_ETAG_TIMEOUT) == (4.0, 4.0)
    assert (constants.HF_HUB_DOWNLOAD_TIMEOUT, constants.HF_HUB_ETAG_TIMEOUT) == before
