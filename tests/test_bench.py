"""The benchmark's measurements on small sizes: what each ratio compares, and its bookkeeping.

No wall-clock limits are asserted (the machines are shared): the tests check that each figure
is the ratio it claims to be, that the option study measures the change of the prediction it
causes, that the solver counts are the evaluations at which the residual first reached the
tolerance, and that results are written without overwriting anything.
"""

import json

import numpy as np
import pytest

from lib.tooling import bench
from lib.models import load_model


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-a")


def test_loop_rows_are_the_ratio_of_the_measured_rates(tiny):
    rows = bench.bench_loops(tiny, batch=2, evals=2, repeats=1)
    assert [r.name.split(" /")[0] for r in rows] == ["fixed point", "ddim"]
    for r in rows:
        assert r.goal == 0.95 and r.value > 0
        assert r.value == pytest.approx(r.extra["images_per_s"] / r.extra["bare_images_per_s"])


def test_option_changes_are_measured_against_eager_fp32(tiny):
    rows = {r.name.split(" /")[0]: r for r in bench.bench_options(tiny, batch=2, evals=1,
                                                                   repeats=1, compile=False,
                                                                   batches=(4,))}
    # the same kernels give the same numbers; bf16 keeps 8 bits of mantissa (about 4e-3)
    assert rows["inference_mode"].extra["relative_change"] == 0
    assert rows["inference_mode"].extra["keeps_numbers"]
    assert 1e-4 < rows["bf16 autocast"].extra["relative_change"] < 0.1
    assert not rows["bf16 autocast"].extra["keeps_numbers"]
    assert rows["channels_last"].extra["relative_change"] < 1e-4
    # lib's own setting keeps the numbers (float32 rounding only)
    lib_row = rows["lib (channels_last, chunks of 16)"]
    assert lib_row.extra["keeps_numbers"] and lib_row.extra["relative_change"] < bench.TOLERANCE
    assert "batch 4" in rows and all(r.value > 0 for r in rows.values())


def test_solver_counts_are_where_the_residual_first_meets_the_tolerance(monkeypatch):
    from lib import fixed_point

    seen = {}
    real = fixed_point.fixed_point_noise

    def spy(*args, **kw):
        res = real(*args, **kw)
        seen[kw["method"]] = res
        return res

    monkeypatch.setattr(bench, "fixed_point_noise", spy)
    rows = bench.bench_solvers(n_images=3, tol=2e-2, max_evals=300)
    picard = rows[0].value
    res = seen["picard"]
    first = []
    for b in range(3):
        hit = np.flatnonzero(res.residuals[:, b] < 2e-2)
        first.append(res.evaluations[hit[0]] if hit.size else np.inf)
        if hit.size:  # the residual was above the tolerance before that evaluation
            assert (res.residuals[:hit[0], b] >= 2e-2).all()
    assert picard == np.median(first) and np.isfinite(picard)
    by_name = {r.name: r for r in rows}
    anderson = by_name["Picard / Anderson, evaluations to the tolerance"]
    assert anderson.value == pytest.approx(picard / anderson.extra["evaluations"])
    assert anderson.goal == 5.0


def test_annealing_rates_count_chain_steps():
    (row,) = bench.bench_annealing(chains=4, iters=3, loop_chains=2, repeats=1, dim=3 * 4 * 4)
    assert row.value == pytest.approx(row.extra["batched_chain_steps_per_s"]
                                      / row.extra["loop_chain_steps_per_s"])
    assert "D = 48" in row.detail


def test_table_json_and_no_overwrite(tmp_path):
    rows = [bench.Row("loops", "a / b", 0.97, 0.95), bench.Row("loops", "c / d", 0.5, 0.95),
            bench.Row("solvers", "n", float("inf"), None, unit="evals")]
    result = {"machine": "m", "device": "cpu", "date": "2026-12-01", "seconds": 1.0,
              "rows": [r.__dict__ | {"met": r.met} for r in rows]}
    table = bench.format_table(result)
    assert "| loops | a / b | 0.97x | >= 0.95 | yes |" in table
    assert "| loops | c / d | 0.5x | >= 0.95 | NO |" in table
    assert "| solvers | n | never |" in table
    path = bench.write_result(result, tmp_path / "b.json")
    assert json.loads(path.read_text())["rows"][0]["met"] is True
    with pytest.raises(FileExistsError):
        bench.write_result(result, path)


def test_sd_sized_unet_from_a_config():
    # a shrunken SD-2.1 configuration, to check the construction and the count on the CPU
    (row,) = bench.bench_sd_unet(device="cpu", batch=1, evals=1, repeats=1,
                                 config=dict(sample_size=8, block_out_channels=(32, 32, 64, 64),
                                             attention_head_dim=(2, 2, 4, 4),
                                             cross_attention_dim=32, layers_per_block=1))
    assert row.unit == "images/s" and row.value > 0 and "torch.float32" in row.name


def test_gpu_rows_compare_bf16_with_eager_and_count_images(tiny):
    # the GPU path on the CPU, small: the rows it reports and their goal
    rows = bench._gpu_rates(tiny, 1, batch=2, evals=1, compile=False)
    names = [r.name for r in rows]
    assert names == ["bf16 autocast / eager fp32", "tiny-a forward, batch 2"]
    assert rows[0].goal == 1.5 and rows[0].extra["relative_change"] > 1e-4
    assert rows[1].unit == "images/s" and rows[1].value > 0


def test_bench_refuses_a_missing_gpu_and_unknown_devices(capsys):
    import torch

    from lib.__main__ import main

    assert main(["bench", "--device", "tpu"]) == 2
    assert "device must be cpu or cuda" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["bench", "--device", "cuda"]) == 2
        assert "--device cpu" in capsys.readouterr().err


def test_side_by_side_shares_the_threads_and_compares_with_one_process():
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert bench.bench_side_by_side(processes=2) == []  # one thread cannot be shared by two
        torch.set_num_threads(2)
        (row,) = bench.bench_side_by_side(processes=2, batch=2, evals=1, repeats=2)
    finally:
        torch.set_num_threads(before)
    assert row.name == "2 processes x 1 thread(s) / 1 process x 2 threads"
    assert row.extra == {"processes": 2, "threads_each": 1} and np.isfinite(row.value) and row.value > 0


def test_side_worker_times_each_repeat_after_the_others_are_ready():
    import threading

    import torch

    before = torch.get_num_threads()
    try:
        spans = bench._side_worker("tiny-a", 1, 2, 1, 3, threading.Barrier(1))
        assert torch.get_num_threads() == 1  # the worker's share
    finally:
        torch.set_num_threads(before)
    assert len(spans) == 3 and all(t1 > t0 for t0, t1 in spans)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2))  # one after the other


def test_flop_rate_is_the_counted_work_over_the_measured_time(tiny, monkeypatch):
    seconds = {"net": 2.0, "mm": 0.5}
    monkeypatch.setattr(bench, "_interleaved", lambda fns, repeats, device="cpu": seconds)
    (row,) = bench.bench_flops(tiny, batch=2, evals=3, repeats=1, size=64)
    per_image = row.extra["gflop_per_image"]
    assert 0.5 < per_image < 1.0  # the tiny UNet: about 0.76 GFLOP per 32 x 32 image
    assert row.extra["network_gflops"] == pytest.approx(per_image * 2 * 3 / 2.0)
    assert row.extra["matmul_gflops"] == pytest.approx(2 * 64**3 * 3 / 0.5 / 1e9)
    assert row.value == pytest.approx(row.extra["network_gflops"] / row.extra["matmul_gflops"])
