"""How close the book's hot loops are to the hardware: ``python -m lib bench``.

Every figure is a *ratio* of two things measured side by side in one run, interleaved and
repeated (the median of the repeats), so that a shared, noisy machine moves both alike:

* **loops**: network evaluations per second of the fixed-point iteration (Eq. 7) and of the DDIM
  sampling loop, each divided by the bare UNet forward pass at the same batch (goal >= 0.95: the
  loops add no more than 5 % to the network's own cost);
* **annealing**: simulated annealing (Alg. 1) with all 64 chains in one batch, in chain-steps per
  second, divided by a loop that runs the chains one at a time (goal >= 50);
* **solvers**: network evaluations needed to bring the residual of Eq. (6) below a tolerance on
  the ``gaussian`` model (a count, not a time): Picard's divided by each accelerated solver's
  (goal >= 5);
* **options**: inference settings against the eager float32 default (the UNet in the default
  memory format, the whole batch in one call): threads, ``channels_last``, ``torch.compile``,
  bf16 autocast, ``inference_mode``, batch size, and ``lib``'s own setting; each with its
  speed-up and the relative change of the noise prediction it causes. ``lib`` adopts an option
  only if it is faster and changes the prediction by less than :data:`TOLERANCE`: on this
  project's 2-core CPU that is ``channels_last`` with chunks of 16 samples
  (:attr:`lib.models.UNetModel.cpu_chunk`); bf16 is faster but changes the prediction by about
  4e-3, and ``torch.compile`` takes about 50 s to compile for no gain over ``channels_last``;
* **hardware**: the floating-point operations per second of the network's forward pass (counted
  by torch's ``FlopCounterMode``) divided by those of a large float32 matrix product on the same
  device, the most this hardware gives: how much faster the network could still run in float32;
* **side by side**: on a CPU with several threads, the network evaluations per second of
  separate processes with one share of the threads each, all at once, divided by one process
  with all the threads. For the bare network it is about 1.0-1.2 on this project's 2-core CPU;
  whole chapters side by side did worse (0.9), so the runner executes one chapter at a time.
* on a GPU also compiled and bf16 against eager float32 (goal >= 1.5), and evaluations per
  second of the tiny models and of a UNet of Stable Diffusion 2.1's size built from its config
  with random weights.

Absolute times are printed only with the machine's name. :func:`run_bench` returns the results;
the command prints a table and writes them as JSON (a new file, never over an older one).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from lib.annealing import anneal, dewhitening
from lib.data import photo_crops
from lib.fixed_point import fixed_point_noise
from lib.models import UNetModel, load_model
from lib.sampling import ddim_sample
from lib.tooling.runner import RUNS_DIR

__all__ = ["TOLERANCE", "Row", "machine", "bench_loops", "bench_annealing", "bench_solvers",
           "bench_options", "bench_sd_unet", "run_bench", "format_table"]

#: largest relative change ``||eps_opt - eps_ref|| / ||eps_ref||`` of one noise prediction for an
#: inference option to count as keeping the numbers (float32 rounding is ~1e-7; the notebook
#: checks are built to survive 1e-6)
TOLERANCE = 1e-5


@dataclass
class Row:
    """One measured figure: ``value`` against ``goal`` (``None``: no goal, information only)."""
    group: str
    name: str
    value: float
    goal: float | None = None
    unit: str = "x"
    detail: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        return None if self.goal is None or not np.isfinite(self.value) else self.value >= self.goal


def machine(device: str = "cpu") -> str:
    """The machine's name for absolute times: CPU model and cores, or the GPU's name."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _interleaved(fns: dict, repeats: int, device="cpu") -> dict[str, float]:
    """Median seconds of each function, the functions taking turns ``repeats`` times."""
    times = {k: [] for k in fns}
    for fn in fns.values():  # warm-up (allocations, oneDNN primitive caches, compilation)
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _noise_batch(model, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A seeded standard-normal batch in the model's sample shape, device and dtype."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    return torch.randn((batch, *model.sample_shape), generator=g).to(model.device, model.dtype)


def _bare_forward(model, x, t: int, n: int):
    """``n`` network calls on inputs prepared once, as ``lib`` makes them (its memory format
    and chunks, :meth:`lib.models.UNetModel._forward`): the floor the loops are held to."""
    tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    labels = torch.full((x.shape[0],), model.null_class, dtype=torch.long, device=x.device)

    def run():
        with torch.no_grad():
            for _ in range(n):
                model._forward(x, tt, labels)
    return run


def bench_loops(model, *, batch: int = 32, evals: int = 10, repeats: int = 3) -> list[Row]:
    """Fixed-point iteration and DDIM sampling against the bare forward pass, evaluations/s."""
    x = _noise_batch(model, batch)
    fns = {
        "bare": _bare_forward(model, x, 980, evals),
        # iters = evals - 1 iterations cost evals network evaluations (the first included)
        "fixed point": lambda: fixed_point_noise(model, x, 980, evals - 1, init="zero"),
        "ddim": lambda: ddim_sample(model, x, evals),
    }
    sec = _interleaved(fns, repeats, model.device)
    rate = {k: batch * evals / s for k, s in sec.items()}
    where = f"{model.name}, batch {batch}, {evals} evaluations x {repeats} repeats"
    return [Row("loops", f"{k} / bare forward ({model.name})", rate[k] / rate["bare"], 0.95,
                detail=f"{where}; {rate[k]:.0f} vs {rate['bare']:.0f} images/s",
                extra={"images_per_s": rate[k], "bare_images_per_s": rate["bare"]})
            for k in ("fixed point", "ddim")]


def bench_annealing(*, chains: int = 64, iters: int = 100, loop_chains: int = 8,
                    repeats: int = 3, dim: int = 3 * 32 * 32) -> list[Row]:
    """All chains in one batch against one chain at a time, in chain-steps per second.

    The per-chain loop runs ``loop_chains`` of the ``chains`` (its rate does not depend on how
    many it runs), so the comparison stays inside the time budget.
    """
    g = torch.Generator().manual_seed(0)
    side = int(round((dim / 3) ** 0.5))
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim ** 0.5
    # SPD and well conditioned; inverted once here, so both sides time the chains' own work
    dewhiten = dewhitening((a @ a.T + torch.eye(dim, dtype=torch.float64)).numpy())
    target = torch.randn(1, 3, side, side, generator=g)

    def batched():
        anneal(target, dewhiten=dewhiten, n_iters=iters, n_chains=chains,
               generator=torch.Generator().manual_seed(1))

    def looped():
        for c in range(loop_chains):
            anneal(target, dewhiten=dewhiten, n_iters=iters, n_chains=1,
                   generator=torch.Generator().manual_seed(1 + c))

    sec = _interleaved({"batched": batched, "looped": looped}, repeats)
    rate_b, rate_l = chains * iters / sec["batched"], loop_chains * iters / sec["looped"]
    return [Row("annealing", f"{chains} chains batched / per-chain loop", rate_b / rate_l, 50.0,
                detail=f"D = {dim}, {iters} steps; {rate_b:.0f} vs {rate_l:.0f} chain-steps/s",
                extra={"batched_chain_steps_per_s": rate_b, "loop_chain_steps_per_s": rate_l})]


def bench_solvers(*, n_images: int = 8, tol: float = 5e-3, max_evals: int = 2000,
                  t: int = 980) -> list[Row]:
    """Network evaluations to reach a residual of Eq. (6) on the ``gaussian`` model, by solver.

    Counts, not times: the median over ``n_images`` crops of the evaluations spent until the
    relative residual first falls below ``tol`` (``inf`` when it never does within
    ``max_evals``); the row is Picard's count divided by the solver's.
    """
    model = load_model("gaussian")
    crops = photo_crops(n_images, model.sample_shape[-1], split="test", seed=0)
    z0 = torch.as_tensor(np.asarray(crops), dtype=model.dtype)

    def evals_to_tol(method, **kw):
        iters = max_evals if method != "minimize" else max_evals // 3
        res = fixed_point_noise(model, z0, t, iters, init="zero", method=method, tol=tol,
                                max_evaluations=max_evals, **kw)
        cost = res.evaluations
        out = []
        for b in range(res.residuals.shape[1]):
            hit = np.flatnonzero(res.residuals[:, b] < tol)
            out.append(cost[hit[0]] if hit.size else np.inf)
        return float(np.median(out))

    picard = evals_to_tol("picard")
    rows = [Row("solvers", "Picard: evaluations to the tolerance", picard, None, unit="evals",
                detail=f"gaussian model, t = {t}, relative residual < {tol:g}, median of "
                       f"{n_images} crops")]
    for name, method, kw in (("Anderson", "anderson", {"safeguard": "blowup"}),
                             ("L-BFGS", "minimize", {})):
        n = evals_to_tol(method, **kw)
        detail = (f"{n:g} vs {picard:g} evaluations" if np.isfinite(n) else
                  f"{name} never reached it within {max_evals} evaluations (Picard: {picard:g})")
        rows.append(Row("solvers", f"Picard / {name}, evaluations to the tolerance",
                        picard / n if n > 0 else np.inf, 5.0, detail=detail,
                        extra={"evaluations": n}))
    return rows


@contextlib.contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bench_options(model, *, batch: int = 32, evals: int = 5, repeats: int = 3,
                  compile: bool = True, batches=(8, 128)) -> list[Row]:
    """Inference options against the eager float32 default, speed-up and change of ``eps``."""
    import copy


    g = torch.Generator().manual_seed(0)
    x = _noise_batch(model, batch, g)
    t = 980
    tt = torch.full((batch,), t, dtype=torch.long, device=x.device)
    labels = torch.full((batch,), model.null_class, dtype=torch.long, device=x.device)
    # the eager default: the UNet in the default memory format, the whole batch in one call
    unet = copy.deepcopy(model.unet).to(memory_format=torch.contiguous_format)

    def make(net, inp, ctx=torch.no_grad):
        def once():
            with ctx():
                return net(inp, tt, class_labels=labels).sample.float()

        def run():
            for _ in range(evals):
                once()
        return once, run

    variants = {"eager fp32 (default)": make(unet, x)}
    cl = copy.deepcopy(unet).to(memory_format=torch.channels_last)
    variants["channels_last"] = make(cl, x.contiguous(memory_format=torch.channels_last))
    variants["inference_mode"] = make(unet, x, torch.inference_mode)
    if isinstance(model, UNetModel) and model.device.type == "cpu":
        def lib_once():
            with torch.no_grad():
                return model._forward(x, tt, labels).float()

        def lib_run():
            for _ in range(evals):
                lib_once()
        variants[f"lib (channels_last, chunks of {model.cpu_chunk})"] = (lib_once, lib_run)

    def bf16():
        return torch.autocast(device_type=x.device.type, dtype=torch.bfloat16)

    @contextlib.contextmanager
    def bf16_nograd():
        with torch.no_grad(), bf16():
            yield
    variants["bf16 autocast"] = make(unet, x, bf16_nograd)
    compile_s = None
    if compile:
        compiled = torch.compile(copy.deepcopy(unet))
        t0 = time.perf_counter()
        make(compiled, x)[0]()  # compiles
        compile_s = time.perf_counter() - t0
        variants["torch.compile"] = make(compiled, x)
    ref = variants["eager fp32 (default)"][0]()
    sec = _interleaved({k: v[1] for k, v in variants.items()}, repeats, model.device)
    rows = []
    base = sec["eager fp32 (default)"]
    for k, (once, _) in variants.items():
        if k.startswith("eager"):
            continue
        change = float((once() - ref).norm() / ref.norm())
        detail = f"eps changes by {change:.1e} (tolerance {TOLERANCE:g})"
        if k == "torch.compile":
            detail += f"; compiling took {compile_s:.0f} s"
        rows.append(Row("options", f"{k} / eager fp32", base / sec[k], None, detail=detail,
                        extra={"relative_change": change,
                               "keeps_numbers": change <= TOLERANCE}))
    if model.device.type == "cpu" and torch.get_num_threads() > 1:
        n = torch.get_num_threads()
        with _threads(1):
            one = _interleaved({"1": variants["eager fp32 (default)"][1]}, repeats)["1"]
        rows.append(Row("options", f"{n} threads / 1 thread", one / base, None,
                        detail=f"eager fp32, batch {batch}"))
    base_rate = batch * evals / base
    for b in batches:
        xb = torch.randn((b, *model.sample_shape), generator=g).to(model.device, model.dtype)
        tt_b = torch.full((b,), t, dtype=torch.long, device=x.device)
        lab_b = torch.full((b,), model.null_class, dtype=torch.long, device=x.device)

        def run_b():
            with torch.no_grad():
                for _ in range(evals):
                    unet(xb, tt_b, class_labels=lab_b)
        sec_b = _interleaved({"b": run_b}, repeats, model.device)["b"]
        rows.append(Row("options", f"batch {b} / batch {batch}", b * evals / sec_b / base_rate,
                        None, detail="images per second, eager fp32, one call per batch"))
    for r in rows:
        r.detail = f"{model.name}, batch {batch}; " + r.detail
    return rows


def bench_flops(model, *, batch: int = 16, evals: int = 5, repeats: int = 3,
                size: int = 2048) -> list[Row]:
    """FLOP/s of the network's forward pass (as ``lib`` runs it) over those of a ``size`` x
    ``size`` float32 matrix product, measured side by side."""
    from torch.utils.flop_counter import FlopCounterMode

    g = torch.Generator().manual_seed(0)
    net = _bare_forward(model, _noise_batch(model, batch, g), 980, evals)
    with FlopCounterMode(display=False) as counter:  # the very calls that are timed
        net()
    net_flops = counter.get_total_flops()
    a = torch.randn((size, size), generator=g).to(model.device)
    b = torch.randn((size, size), generator=g).to(model.device)

    def products():
        for _ in range(evals):
            torch.mm(a, b)
    sec = _interleaved({"net": net, "mm": products}, repeats, model.device)
    net_rate, mm_rate = net_flops / sec["net"], 2 * size**3 * evals / sec["mm"]
    return [Row("hardware", f"network / {size}x{size} matrix product, FLOP/s ({model.name})",
                net_rate / mm_rate, None,
                detail=f"{net_rate / 1e9:.0f} vs {mm_rate / 1e9:.0f} GFLOP/s; "
                       f"{net_flops / evals / batch / 1e9:.3f} GFLOP per image, batch {batch}",
                extra={"network_gflops": net_rate / 1e9, "matmul_gflops": mm_rate / 1e9,
                       "gflop_per_image": net_flops / evals / batch / 1e9})]


def _side_worker(name: str, threads: int, batch: int, evals: int, repeats: int, barrier) -> list:
    """One process of :func:`bench_side_by_side`: its network loop's (start, end) per repeat."""
    torch.set_num_threads(threads)

    model = load_model(name)
    run = _bare_forward(model, _noise_batch(model, batch), 980, evals)
    run()  # warm-up
    spans = []
    for _ in range(repeats):
        barrier.wait()  # every process starts each repeat together
        t0 = time.monotonic()
        run()
        spans.append((t0, time.monotonic()))
    return spans


def bench_side_by_side(name: str = "tiny-a", *, processes: int = 2, batch: int = 32,
                       evals: int = 5, repeats: int = 3) -> list[Row]:
    """Evaluations per second of ``processes`` processes with an equal share of this process's
    threads, all at once, divided by this process alone with all of them (lib's forward pass)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor


    total = torch.get_num_threads()
    if total < processes:
        return []
    model = load_model(name)
    alone = _interleaved({"one": _bare_forward(model, _noise_batch(model, batch), 980, evals)},
                         repeats)["one"]
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(processes)
        with ProcessPoolExecutor(processes, mp_context=ctx) as pool:
            futures = [pool.submit(_side_worker, name, total // processes, batch, evals, repeats,
                                   barrier) for _ in range(processes)]
            spans = [f.result() for f in futures]
    together = statistics.median(max(s[r][1] for s in spans) - min(s[r][0] for s in spans)
                                 for r in range(repeats))
    ratio = (processes * batch * evals / together) / (batch * evals / alone)
    return [Row("options", f"{processes} processes x {total // processes} thread(s) / 1 process "
                f"x {total} threads", ratio, None,
                detail=f"{name}, batch {batch}; evaluations per second, all processes together",
                extra={"processes": processes, "threads_each": total // processes})]


def bench_sd_unet(*, device: str = "cuda", batch: int = 4, evals: int = 5, repeats: int = 3,
                  config: dict | None = None) -> list[Row]:
    """Evaluations per second of a UNet of Stable Diffusion 2.1's size (random weights).

    Built from diffusers' ``UNet2DConditionModel`` with SD 2.1's configuration (or ``config``)
    in float16 on a GPU (float32 on the CPU); one 77-token text embedding per image.
    """
    from diffusers import UNet2DConditionModel

    cfg = dict(sample_size=96, in_channels=4, out_channels=4, layers_per_block=2,
               block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024,
               attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
               down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
               up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    cfg.update(config or {})
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**cfg).to(device, dtype).eval()
    params = sum(p.numel() for p in unet.parameters())
    size = cfg["sample_size"]
    x = torch.randn(batch, cfg["in_channels"], size, size, device=device, dtype=dtype)
    text = torch.randn(batch, 77, cfg["cross_attention_dim"], device=device, dtype=dtype)
    tt = torch.full((batch,), 980, device=device)

    def run():
        with torch.no_grad():
            for _ in range(evals):
                unet(x, tt, encoder_hidden_states=text)
    sec = _interleaved({"sd": run}, repeats, device)["sd"]
    rate = batch * evals / sec
    return [Row("gpu", f"SD-2.1-sized UNet ({params / 1e6:.0f} M parameters), {dtype}", rate,
                None, unit="images/s",
                detail=f"{size}x{size} latents, batch {batch}, on {machine(device)}")]


def run_bench(*, device: str | None = None, quick: bool = False, compile: bool = True,
              sd_unet: bool | None = None, log=print) -> dict:
    """Every measurement of this module; returns ``{"machine", "device", "rows", "seconds"}``."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda needs a CUDA GPU and none is available; "
                         "run with --device cpu (the default here)")
    if not device.startswith(("cuda", "cpu")):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    sd_unet = device.startswith("cuda") if sd_unet is None else sd_unet
    t0 = time.perf_counter()
    rows: list[Row] = []
    reps = 2 if quick else 3
    models = {name: load_model(name, device=device)
              for name in (["tiny-a"] if quick else ["tiny-a", "tiny-b"])}
    for name, model in models.items():
        log(f"loops: {name} ...")
        rows += bench_loops(model, evals=4 if quick else 8, repeats=reps)
        rows += bench_flops(model, evals=2 if quick else 3, repeats=reps)
        if device.startswith("cuda"):
            rows += _gpu_rates(model, reps)
    log("annealing ...")
    rows += bench_annealing(iters=30 if quick else 100, loop_chains=4 if quick else 8,
                            repeats=reps)
    log("solvers ...")
    rows += bench_solvers(n_images=4 if quick else 8, tol=1e-2 if quick else 5e-3,
                          max_evals=600 if quick else 1200)
    log("inference options ...")
    rows += bench_options(models["tiny-a"], repeats=reps,
                          evals=2 if quick else 3, compile=compile and not quick)
    if not device.startswith("cuda"):
        log("side by side ...")
        rows += bench_side_by_side(repeats=reps, evals=2 if quick else 3)
    if sd_unet:
        log("SD-2.1-sized UNet ...")
        rows += bench_sd_unet(device=device)
    return {"machine": machine(device), "device": device, "quick": quick,
            "date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - t0, 1),
            "rows": [asdict(r) | {"met": r.met} for r in rows]}


def _gpu_rates(model, repeats: int, *, batch: int = 256, evals: int = 20,
               compile: bool = True) -> list[Row]:
    """On a GPU: evaluations per second of a tiny model, and compiled / bf16 against eager."""
    rows = []
    for r in bench_options(model, batch=batch, evals=evals, repeats=repeats, batches=(),
                           compile=compile):
        if r.name.startswith(("torch.compile", "bf16")):
            rows.append(Row("gpu", r.name, r.value, 1.5, detail=r.detail, extra=r.extra))
    x = torch.randn((batch, *model.sample_shape), device=model.device, dtype=model.dtype)
    sec = _interleaved({"b": _bare_forward(model, x, 980, evals)}, repeats, model.device)["b"]
    rows.append(Row("gpu", f"{model.name} forward, batch {batch}", batch * evals / sec, None,
                    unit="images/s", detail=f"eager fp32 on {machine(str(model.device))}"))
    return rows


def format_table(result: dict) -> str:
    """The results as a Markdown table (ratios with their goals) under the machine's name."""
    lines = [f"machine: {result['machine']} ({result['device']}); {result['date']}; "
             f"{result['seconds']:.0f} s", "",
             "| group | measure | value | goal | met | detail |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        v = r["value"]
        if not np.isfinite(v):
            value = "never"
        elif r["unit"] == "x":
            value = f"{v:.3g}x"
        else:
            value = f"{v:,.0f} {r['unit']}"
        goal = "" if r["goal"] is None else f">= {r['goal']:g}"
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        lines.append(f"| {r['group']} | {r['name']} | {value} | {goal} | {met} | {r['detail']} |")
    return "\n".join(lines)


def write_result(result: dict, out: str | os.PathLike | None = None) -> Path:
    """Write the JSON to ``out`` (refused if it exists) or a new ``runs/bench/<time>.json``."""
    if out is not None:
        path = Path(out)
        if path.exists():
            raise FileExistsError(f"{path} exists; choose a new --out (nothing is overwritten)")
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, k = RUNS_DIR / "bench" / f"{stamp}.json", 1
        while path.exists():
            k += 1
            path = RUNS_DIR / "bench" / f"{stamp}-{k}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    return path
