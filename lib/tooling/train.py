"""Training the embedded diffusion models (``tiny-a``, ``tiny-b``) on the bundled photographs.

A diffusers ``UNet2DModel`` learns epsilon prediction on ``photo_crops(split="train")``
(32x32 RGB in [-1, 1]) under the Stable Diffusion noise schedule. It is class-conditional on the
source photograph; a null class (index ``len(classes)``) replaces the label with probability
``label_dropout`` so that classifier-free guidance (Eq. 2) works. The loss is the epsilon MSE
with min-SNR-gamma weighting (Hang et al. 2023, via ``diffusers.training_utils.compute_snr``),
the weights are averaged by ``diffusers.training_utils.EMAModel``, and the forward pass runs
under bf16 autocast wherever bf16 is native (a GPU with bf16; a CPU with AVX512-BF16 or AMX,
where it is about 1.5x faster than float32 on this project's 2-core machine).

Everything random comes from one ``torch.Generator`` seeded by the config (the initial weights
from the same seed), and the checkpoint stores its state, so a training run stopped (Ctrl-C or
``kill -TERM`` finish the current step and save) and resumed any number of times follows the
same batches as one uninterrupted run. Bit-for-bit equal weights also need the same hardware,
thread count and precision. The learning rate is constant after a warmup, so a model can
be trained further later without changing the schedule of the steps already taken.

Layout of a training folder (default ``runs/train/<name>/``)::

    checkpoint.pt          model, EMA, optimizer, generator, loss history (for resuming)
    model/                 the exported EMA weights: config.json, fp16 safetensors, card.json,
                           README.md (the model card)

``python -m lib train --model tiny-a --publish`` copies ``model/`` to ``data/models/tiny-a``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lib.data import photo_crops, photo_names
from lib.models import CHECKOUT, UNetModel, load_gaussian
from lib.quality import QUALITY_BAR, compare_stats, eps_mse_by_band, sample_stats
from lib.sampling import ddim_sample
from lib.schedule import SD_SCHEDULE, sd_scheduler

__all__ = ["TrainConfig", "CONFIGS", "build_unet", "train", "export", "evaluate", "publish",
           "slim_checkpoint", "reproduce_command", "bf16_supported", "benchmark_forward"]

#: Training folders: ``runs/train`` of the checkout (of the working directory when installed).
TRAIN_ROOT = (CHECKOUT or Path.cwd()) / "runs" / "train"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model.

    Args:
        name: registry name.
        unet: keyword arguments of ``diffusers.UNet2DModel`` besides sizes and classes.
        seed: seeds the one generator that draws crops' order, timesteps, noise, label dropout.
        steps: optimizer steps of the committed model.
        batch_size, lr, warmup, weight_decay, grad_clip: the optimizer (AdamW, constant LR after
            a linear warmup).
        ema_decay, ema_power: ``EMAModel`` with warmup: decay ``1 - (1 + step)^-power`` capped
            at ``ema_decay``.
        label_dropout: probability that a label becomes the null class.
        snr_gamma: min-SNR-gamma loss weight ``min(SNR, gamma) / SNR`` (None: plain MSE).
        n_crops, crop_seed, size: the training pool ``photo_crops(n_crops, size, seed=crop_seed)``.
    """
    name: str
    unet: dict
    seed: int
    steps: int = 20_000
    batch_size: int = 64
    lr: float = 6e-4
    warmup: int = 500
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.9995
    ema_power: float = 0.75
    label_dropout: float = 0.1
    snr_gamma: float | None = 5.0
    n_crops: int = 50_000
    crop_seed: int = 0
    size: int = 32

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CONFIGS = {
    "tiny-a": TrainConfig(
        name="tiny-a", seed=0, batch_size=256,
        unet=dict(block_out_channels=(32, 64, 128), layers_per_block=1, norm_num_groups=16,
                  attention_head_dim=32,
                  down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))),
    "tiny-b": TrainConfig(
        name="tiny-b", seed=1, batch_size=256,
        unet=dict(block_out_channels=(48, 96, 96), layers_per_block=1, norm_num_groups=16,
                  attention_head_dim=32,
                  down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                  up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))),
}


def _classes() -> list[str]:

    return photo_names("train")


def build_unet(config: TrainConfig):
    """A freshly initialised ``UNet2DModel`` for a training config.

    Args:
        config: its ``unet`` keywords, ``size`` and ``seed`` are used; one class embedding per
            training photo plus the null class.

    Returns:
        the model, initialised from ``config.seed`` (the global torch RNG is left as it was).
    """
    from diffusers import UNet2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return UNet2DModel(sample_size=config.size, in_channels=3, out_channels=3,
                           num_class_embeds=len(_classes()) + 1, **config.unet)


def _get_config(name: TrainConfig | str) -> TrainConfig:
    if isinstance(name, TrainConfig):
        return name
    if name not in CONFIGS:
        raise KeyError(f"unknown embedded model {name!r}; trainable: {sorted(CONFIGS)}")
    return CONFIGS[name]


def _resumable(config: dict) -> dict:
    """The config fields a checkpoint must share to be resumed (``steps`` may grow)."""
    return {k: v for k, v in config.items() if k != "steps"}


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is native here (CUDA with bf16, or a CPU with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu} CPU, {torch.get_num_threads()} threads"


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def train(config: TrainConfig | str, *, steps: int | None = None, out: str | os.PathLike | None = None,
          device: str | None = None, bf16: bool = True, max_minutes: float | None = None,
          checkpoint_every: int = 500, progress: bool = True) -> dict:
    """Train (or resume training) up to ``steps`` optimizer steps.

    Args:
        config: a :class:`TrainConfig` or the name of one in :data:`CONFIGS`.
        steps: stop after this many steps in total (default ``config.steps``).
        out: the training folder (default ``runs/train/<name>``); a ``checkpoint.pt`` there is
            resumed if its config matches, refused otherwise.
        device: ``cuda`` or ``cpu`` (default: cuda when available).
        max_minutes: stop (after saving a checkpoint) once this much wall time has passed.

    Returns:
        the checkpoint's summary: ``{"step", "seconds", "losses", ...}``.
    """
    from diffusers.training_utils import EMAModel


    config = _get_config(config)
    steps = config.steps if steps is None else int(steps)
    out = Path(out) if out is not None else TRAIN_ROOT / config.name
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ckpt_path = out / "checkpoint.pt"

    unet = build_unet(config).to(dev)
    optim = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = EMAModel(unet.parameters(), decay=config.ema_decay, use_ema_warmup=True,
                   power=config.ema_power)
    gen = torch.Generator().manual_seed(config.seed)
    state = _restore(ckpt_path, config, unet, optim, ema, gen)
    if state["step"] >= steps:  # nothing to train: skip building the crop pool
        return dict(state)
    ema.to(dev)

    x_pool, labels = photo_crops(config.n_crops, config.size, split="train", seed=config.crop_seed,
                                 return_labels=True)
    x_pool, labels = torch.from_numpy(x_pool), torch.from_numpy(np.asarray(labels)).long()
    null = len(_classes())
    sched = sd_scheduler()
    use_bf16 = bf16 and bf16_supported(dev)

    def save() -> None:
        _save_atomic({"config": config.to_dict(), "unet": unet.state_dict(),
                      "optim": optim.state_dict(), "ema": ema.state_dict(),
                      "generator": gen.get_state(), "state": state}, ckpt_path)

    start_step, t_start = state["step"], time.time()
    seg_start = state["seconds"]
    segment = {"hardware": _hardware(dev), "steps": 0, "seconds": 0.0, "bf16": use_bf16,
               "torch": torch.__version__, "batch_size": config.batch_size}
    if state.get("warmup_from") == start_step and start_step > 0:
        segment["optimizer"] = "restarted (slim checkpoint)"
    state["segments"].append(segment)  # this run's share, kept current at every save
    unet.train()
    bar = tqdm(total=steps, initial=start_step, desc=f"train {config.name}", disable=not progress,
               mininterval=5)
    window = []
    with _stop_on_signals() as stop:  # Ctrl-C or kill -TERM: finish the step, save, return
        try:
            while state["step"] < steps:
                lr = config.lr * min(1.0, (state["step"] + 1 - state.get("warmup_from", 0))
                                     / max(config.warmup, 1))
                window.append(_train_step(unet, optim, ema, sched, x_pool, labels, null, config,
                                          gen, dev, use_bf16, lr))
                state["step"] += 1
                if state["step"] % 50 == 0:
                    state["losses"].append([state["step"], float(np.mean(window))])
                    bar.set_postfix(loss=f"{np.mean(window):.4f}")
                    window = []
                bar.update(1)
                state["seconds"] = seg_start + time.time() - t_start
                segment.update(steps=state["step"] - start_step,
                               seconds=round(time.time() - t_start, 1))
                if state["step"] % checkpoint_every == 0:
                    save()
                if stop or (max_minutes is not None and time.time() - t_start > 60 * max_minutes):
                    break
        finally:
            bar.close()
            if state["step"] > start_step:
                save()
    return dict(state)


def _restore(ckpt_path: Path, config: TrainConfig, unet, optim, ema, gen) -> dict:
    """Load a checkpoint into the model, optimizer, EMA and generator; its training state (a
    fresh one when there is no checkpoint). A slim checkpoint has no optimizer: Adam's moments
    start again, and so does the learning-rate warmup (``state["warmup_from"]``)."""
    if not ckpt_path.exists():
        return {"step": 0, "seconds": 0.0, "losses": [], "segments": []}
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if _resumable(ckpt["config"]) != _resumable(config.to_dict()):
        raise ValueError(f"{ckpt_path} was made with another config; move it away or pass "
                         f"another --out")
    unet.load_state_dict(ckpt["unet"])
    ema.load_state_dict(ckpt["ema"])
    gen.set_state(ckpt["generator"])
    state = ckpt["state"]
    if "optim" in ckpt:
        optim.load_state_dict(ckpt["optim"])
    else:
        state["warmup_from"] = state["step"]
    return state


def _train_step(unet, optim, ema, sched, x_pool, labels, null: int, config: TrainConfig, gen,
                dev, use_bf16: bool, lr: float) -> float:
    """One optimizer step on a random batch of crops; returns its loss.

    A random timestep and noise per crop, Eq. (1), the epsilon loss (min-SNR weighted when
    ``config.snr_gamma`` is set), gradient clipping, AdamW at ``lr``, then the EMA update. A
    share ``config.label_dropout`` of the labels becomes the null class (classifier-free
    guidance)."""
    from diffusers.training_utils import compute_snr

    idx = torch.randint(0, len(x_pool), (config.batch_size,), generator=gen)
    x0, y = x_pool[idx], labels[idx].clone()
    y[torch.rand(config.batch_size, generator=gen) < config.label_dropout] = null
    t = torch.randint(0, SD_SCHEDULE["num_train_timesteps"], (config.batch_size,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    x_t = sched.add_noise(x0, noise, t)  # Eq. (1), diffusers' implementation
    for g in optim.param_groups:
        g["lr"] = lr
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
        eps_hat = unet(x_t.to(dev), t.to(dev), class_labels=y.to(dev)).sample
    per_sample = (eps_hat.float() - noise.to(dev)).pow(2).mean(dim=(1, 2, 3))
    if config.snr_gamma is not None:
        snr = compute_snr(sched, t).to(dev)
        per_sample = per_sample * snr.clamp(max=config.snr_gamma) / snr
    loss = per_sample.mean()
    optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), config.grad_clip)
    optim.step()
    ema.step(unet.parameters())
    return float(loss.detach())


@contextlib.contextmanager
def _stop_on_signals():
    """Within the block, Ctrl-C and ``kill -TERM`` append their signal to the yielded list
    instead of interrupting (in the main thread; elsewhere signals cannot be caught), so that
    the loop can finish its step and save; the previous handlers come back afterwards."""
    stop, previous = [], {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: stop.append(signum))
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def slim_checkpoint(config: TrainConfig | str, *, out: str | os.PathLike | None = None) -> Path:
    """Drop the optimizer's moments from a training folder's checkpoint (half its size).

    The slim checkpoint still resumes: the weights, EMA, generator and history are kept, Adam
    starts with fresh moments and the learning rate warms up again over ``config.warmup`` steps
    (recorded in the next segment). Used to bring a GPU training back within a transfer limit.

    Returns:
        the checkpoint's path.
    """
    config = _get_config(config)
    path = (Path(out) if out is not None else TRAIN_ROOT / config.name) / "checkpoint.pt"
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    ckpt.pop("optim", None)
    _save_atomic(ckpt, path)
    return path


def reproduce_command(name: str, state: dict) -> str:
    """The commands that retrace a training history, slim-checkpoint restarts included.

    Plain resumes are exact and need no command of their own; a segment that began from a slim
    checkpoint (fresh Adam moments, a new warmup) needs the previous run to end with ``--slim``.
    """
    ends = np.cumsum([seg["steps"] for seg in state["segments"]]) if state["segments"] else []
    cmds = [f"python -m lib train --model {name} --steps {int(ends[i - 1])} --slim"
            for i, seg in enumerate(state["segments"]) if i > 0
            and str(seg.get("optimizer", "")).startswith("restarted")]
    return " && ".join(cmds + [f"python -m lib train --model {name} --steps {state['step']} "
                               f"--publish --force"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(config: TrainConfig | str, *, out: str | os.PathLike | None = None) -> Path:
    """Write the EMA weights of a training folder's checkpoint as a diffusers model (fp16).

    Returns:
        the ``model/`` folder with ``config.json``, ``diffusion_pytorch_model.safetensors`` and
        ``card.json`` (training part of the card; :func:`evaluate` adds the quality numbers).
    """
    from diffusers.training_utils import EMAModel

    config = _get_config(config)
    name = config.name
    out = Path(out) if out is not None else TRAIN_ROOT / name
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    unet = build_unet(config)
    ema = EMAModel(unet.parameters())
    ema.load_state_dict(ckpt["ema"])
    ema.copy_to(unet.parameters())
    target = out / "model"
    if target.exists():
        shutil.rmtree(target)  # derived from the checkpoint, which stays
    from diffusers.utils import logging as dlogging

    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()  # a float32-module warning that does not apply to UNet2DModel
    try:
        unet.to(torch.float16).save_pretrained(target, safe_serialization=True)
    finally:
        dlogging.set_verbosity(level)
    weights = target / "diffusion_pytorch_model.safetensors"
    state = ckpt["state"]
    card = {
        "name": name,
        "classes": _classes(),
        "null_class": len(_classes()),
        "parameters": sum(p.numel() for p in unet.parameters()),
        "weights_sha256": _sha256(weights),
        "weights_bytes": weights.stat().st_size,
        "train_config": ckpt["config"],
        "steps": state["step"],
        "train_seconds": round(state["seconds"], 1),
        "segments": state["segments"],
        "loss_curve": state["losses"],
        "schedule": SD_SCHEDULE,
        "prediction_type": "epsilon",
        "data": f"photo_crops({config.n_crops}, {config.size}, split='train', seed={config.crop_seed})",
        "command": reproduce_command(name, state),
    }
    (target / "card.json").write_text(json.dumps(card, indent=1))
    return target


def evaluate(model_folder: str | os.PathLike, *, n: int = 1000, steps: int = 50, seed: int = 0,
             progress: bool = True) -> dict:
    """Measure a model folder's quality and write it into its ``card.json`` and ``README.md``.

    ``n`` samples by ``steps``-step DDIM from the null class (unconditional) are compared with
    ``n`` crops of the held-out test photos (the bar of :data:`lib.quality.QUALITY_BAR`) and with
    ``n`` crops of the training photos. The data's own train-vs-test distance is recorded too:
    it is roughly what a perfect model of the training photos would score against the test
    photos.

    So is the *sampler's floor*: the Gaussian-optimal denoiser (exact for the mean and covariance
    of 20,000 training crops) sampled from the same noises in the same way, against the same
    reference crops of the training photos. The Stable Diffusion schedule leaves ``abar_T`` above
    zero (0.0058 at the first step of 50-step DDIM), so a sampler that starts from pure
    ``N(0, I)`` noise under-produces the high-variance (low-frequency) directions and pulls the
    mean towards zero even with a denoiser that is exact for its data:
    :func:`lib.sampling.gaussian_ddim_gain` gives, per eigendirection ``lambda`` of the data
    covariance, the gain ``g`` of the whole run, so the variance kept is ``g^2 / lambda`` and
    ``g a_T mu`` of the mean is missing. A trained model cannot be expected to beat this row on
    the statistics that it governs (channel mean and std, covariance).

    Args:
        model_folder: a folder written by :func:`export`.
        n: number of samples and of reference crops.
        steps: DDIM steps per sample.
        seed: seeds the noises, the reference crops and the eps-MSE noise.

    Returns:
        the updated card (the JSON-ready dict written to ``card.json``).
    """
    folder = Path(model_folder)
    model = UNetModel.from_folder(folder)
    size = model.sample_shape[-1]
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *model.sample_shape), generator=gen)

    def sample(m, desc):
        return torch.cat([ddim_sample(m, chunk, steps, progress=False)
                          for chunk in tqdm(noise.split(250), desc=desc, disable=not progress)])

    samples = sample(model, "samples")
    floor = sample(load_gaussian(size=size), "Gaussian-optimal samples")
    test = photo_crops(n, size, split="test", seed=seed + 1)
    train = photo_crops(n, size, split="train", seed=seed + 2)
    quality = {
        "n": n, "ddim_steps": steps, "seed": seed,
        "samples": sample_stats(samples).to_dict(),
        "test": sample_stats(test).to_dict(),
        "train": sample_stats(train).to_dict(),
        "gaussian": sample_stats(floor).to_dict(),
        "samples_vs_test": compare_stats(samples, test).to_dict(),
        "samples_vs_train": compare_stats(samples, train).to_dict(),
        "train_vs_test": compare_stats(train, test).to_dict(),
        "gaussian_vs_train": compare_stats(floor, train).to_dict(),
        "eps_mse_test": eps_mse_by_band(model, test, generator=gen),
        "eps_mse_train": eps_mse_by_band(model, train, generator=gen),
    }
    card = json.loads((folder / "card.json").read_text())
    card["quality"] = quality
    card["forward_seconds_batch64"] = benchmark_forward(model)
    (folder / "card.json").write_text(json.dumps(card, indent=1))
    (folder / "README.md").write_text(model_card_markdown(card))
    return card


def benchmark_forward(model, batch: int = 64, repeats: int = 5) -> dict:
    """Median wall time of one ``model.eps`` call on a batch of noise, with the machine.

    Returns:
        ``{"seconds", "batch", "hardware"}``.
    """
    x = torch.randn(batch, *model.sample_shape, generator=torch.Generator().manual_seed(0))
    model.eps(x, 500)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.eps(x, 500)
        times.append(time.perf_counter() - start)
    return {"seconds": round(float(np.median(times)), 4), "batch": batch,
            "hardware": _hardware(model.device)}


def _fmt(xs, digits=3) -> str:
    return ", ".join(f"{x:.{digits}f}" for x in xs)


#: The model card's text, with fields for :func:`model_card_markdown` (``str.format``).
TEMPLATES = Path(__file__).resolve().parent / "templates"


def model_card_markdown(card: dict) -> str:
    """The model card (README.md) of a model folder, from its ``card.json``: the templates
    ``lib/tooling/templates/model_card.md`` and, once the model is evaluated, ``model_card_quality.md``."""
    cfg, speed = card["train_config"], card.get("forward_seconds_batch64")
    seg = "; ".join(f"{s['steps']:,} steps in {s['seconds'] / 60:.1f} min on {s['hardware']}"
                    f"{' (bf16 autocast)' if s['bf16'] else ''}" for s in card["segments"])
    text = (TEMPLATES / "model_card.md").read_text().format(
        name=card["name"], parameters=card["parameters"],
        channels=cfg["unet"]["block_out_channels"], blocks=cfg["unet"]["down_block_types"],
        megabytes=card["weights_bytes"] / 1e6, sha256=card["weights_sha256"],
        classes=", ".join(card["classes"]), null_class=card["null_class"], data=card["data"],
        size=cfg["size"], n_classes=len(card["classes"]), steps=card["steps"],
        batch_size=cfg["batch_size"], lr=cfg["lr"], snr_gamma=cfg["snr_gamma"],
        minutes=card["train_seconds"] / 60, segments=f" ({seg})" if seg else "",
        command=card["command"],
        speed=(f"- Speed: one forward pass on a batch of {speed['batch']} takes "
               f"{speed['seconds']:.3f} s on {speed['hardware']} (median of 5)." if speed else ""),
        final_loss=(f"- Final training loss (mean of the last 50 steps, min-SNR weighted): "
                    f"{card['loss_curve'][-1][1]:.4f}." if card["loss_curve"] else ""))
    q = card.get("quality")
    if not q:
        return text

    def row(label, c):
        return (f"| {label} | {c['slope_abs_diff']:.3f} | {_fmt(c['mean_rel_diff'], 2)} | "
                f"{_fmt(c['std_rel_diff'], 2)} | {c['cov_rel_frobenius']:.3f} | "
                f"{'yes' if c['meets_bar'] else 'no'} |")

    comparisons = [("samples vs test crops (the issue's bar)", q["samples_vs_test"]),
                   ("samples vs training-photo crops", q["samples_vs_train"]),
                   ("training-photo crops vs test crops (no model)", q["train_vs_test"])]
    if "gaussian_vs_train" in q:
        comparisons.append(("Gaussian-optimal denoiser, same noises and sampler, vs "
                            "training-photo crops (the sampler's floor)", q["gaussian_vs_train"]))
    return text + "\n" + (TEMPLATES / "model_card_quality.md").read_text().format(
        n=q["n"], ddim_steps=q["ddim_steps"], seed=q["seed"],
        slope_bar=QUALITY_BAR["slope_abs_diff"], channel_bar=QUALITY_BAR["channel_rel_diff"],
        cov_bar=QUALITY_BAR["cov_rel_frobenius"],
        image_rows="\n".join(f"| {k} | {q[k]['slope']:.3f} | {_fmt(q[k]['mean'])} | "
                             f"{_fmt(q[k]['std'])} |"
                             for k in ("samples", "train", "test", "gaussian") if k in q),
        comparison_rows="\n".join(row(label, c) for label, c in comparisons),
        bands=" | ".join(q["eps_mse_test"]), band_rule="---|" * len(q["eps_mse_test"]),
        eps_test=" | ".join(f"{v:.4f}" for v in q["eps_mse_test"].values()),
        eps_train=" | ".join(f"{v:.4f}" for v in q["eps_mse_train"].values()))


def publish(name: str, *, out: str | os.PathLike | None = None, dest: str | os.PathLike | None = None,
            force: bool = False) -> Path:
    """Copy a training folder's evaluated ``model/`` to ``dest``.

    Args:
        name: the model's name.
        out: the training folder (default ``runs/train/<name>``).
        dest: where to copy (default: the checkout's ``data/models/<name>``, the committed model).
        force: replace an existing model there (refused otherwise).

    Returns:
        the folder written.
    """
    src = (Path(out) if out is not None else TRAIN_ROOT / name) / "model"
    card = src / "card.json"
    if not card.exists() or "quality" not in json.loads(card.read_text()):
        raise FileNotFoundError(f"{src} has no evaluated model; run train, then evaluate")
    if dest is None and CHECKOUT is None:
        raise FileNotFoundError("not in a checkout of the book: pass dest= for the published model")
    dst = Path(dest) if dest is not None else CHECKOUT / "data" / "models" / name
    if dst.exists() and not force:
        raise FileExistsError(f"{dst} exists; pass --force to replace the committed model")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst
