"""`fastkd bench --preset test` writes every report file with every field; bad options give one line and exit 2."""

import argparse
import json

import pytest
from PIL import Image

from fastkd import bench
from fastkd.bench import runner
from fastkd.config import METHODS


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """spaced_online_kd runs; spaced_ema is reported as pending, as if fastkd did not implement it yet."""
    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "METHODS", tuple(m for m in METHODS if m != "spaced_ema"))
        code = bench.run(parse(["--preset", "test", "--methods", "spaced_online_kd,spaced_ema", "--out", str(out)]))
    return code, out, json.loads((out / "results.json").read_text())


def test_report_files_and_fields(report):
    code, out, results = report
    assert code == 0
    assert {"date", "preset", "rounds", "machine", "ceiling", "methods"} <= results.keys()
    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["torch"]
    assert results["ceiling"]["matmul"]["gflops"] > 0
    (resnet,) = results["ceiling"]["resnet18"].values()
    assert resnet["best"]["gflops"] > 0 and resnet["best"]["images_per_s"] > 0

    row = results["methods"][0]
    assert row["method"] == "spaced_online_kd" and row["status"] == "ok"
    scale = bench.PRESETS["test"].scales["spaced_online_kd"]
    for side in ("fastkd", "reference"):
        assert len(row[side]["images_per_s"]) == results["rounds"] == 1
        assert row[side]["median_images_per_s"] > 0
        assert row[side]["host_rss_peak_mb"] > 0
    # The replay buffers at the replay event (I = L batches): (indices int32, seed) vs float32 images + int64 labels.
    L, B = scale.iters_per_epoch, scale.batch_size
    assert row["fastkd"]["replay_buffer_peak_bytes"] == L * (B * 4 + 8)
    assert row["reference"]["replay_buffer_peak_bytes"] == L * (B * 3 * 32 * 32 * 4 + B * 8)
    assert row["speedup"]["median"] == pytest.approx(
        row["fastkd"]["median_images_per_s"] / row["reference"]["median_images_per_s"])
    shares = row["fastkd_breakdown"]
    assert set(shares) == set(bench.BREAKDOWN_LABELS.values()) | {"other"}
    assert shares["forward"] > 0 and shares["backward"] > 0 and shares["data"] > 0
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-6)
    assert 0 < row["fastkd_overhead_share"] < 1
    assert row["fastkd"]["gflop_per_round"] > 0 and row["ceiling_share"]["resnet18"] > 0
    assert results["methods"][1] == {"method": "spaced_ema", "status": "pending",
                                     "reason": "fastkd has no `spaced_ema` method yet"}

    table = (out / "results.md").read_text()
    assert "| spaced_online_kd | s = 1.0 (I = L) |" in table and "Ceiling: matmul" in table
    assert "| spaced_ema | pending: fastkd has no `spaced_ema` method yet |" in table
    kernels = results["kernels"]
    assert [(r["batch"], r["classes"], r["soft"]) for r in kernels["kd_loss"]] == [
        (8, 10, "reference_prob_kl"), (8, 10, "kl")]
    for row in kernels["kd_loss"]:
        assert row["fused_impl"] == "twin" and row["fused_us"] > 0 and row["unfused_us"] > 0
        assert row["speedup"] == pytest.approx(row["unfused_us"] / row["fused_us"])
    (ema,) = kernels["ema"]
    assert ema["model"] == "resnet18" and ema["tensors"] == 62 and ema["parameters"] > 10_000_000
    assert ema["speedup_vs_foreach_lerp"] == pytest.approx(ema["foreach_lerp_us"] / ema["flat_us"])
    assert "| 8 × 10 | reference_prob_kl |" in table and "| resnet18 | 62 /" in table
    for name in ("throughput.png", "breakdown.png", "memory.png"):
        with Image.open(out / name) as image:
            assert image.size[0] > 300 and image.size[1] > 200


@pytest.mark.parametrize("argv, message", [
    (["--preset", "huge"], "--preset 'huge' is unknown; choose one of cpu-small, gpu, gpu-quick, test"),
    (["--methods", "spaced_kd"], "--methods 'spaced_kd': unknown method spaced_kd; choose from"),
    (["--methods", ","], "unknown method (none given)"),
    (["--rounds", "0"], "--rounds 0: need at least 1 timed round per side"),
    (["--nproc", "two"], "--nproc 'two': give comma-separated process counts such as 1,2,4"),
    (["--nproc", "0,2"], "--nproc '0,2': process counts must be >= 1"),
    (["--nproc", "1,,2"], "--nproc '1,,2': give comma-separated process counts such as 1,2,4"),
    (["--preset", "test", "--nproc", "100000"], "--nproc '100000': 100000 CPU processes on a machine with"),
])
def test_bad_options_raise_one_line(argv, message):
    with pytest.raises(bench.BenchOptionError) as info:
        bench.run(parse(argv))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_out_must_be_a_folder(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(bench.BenchOptionError, match="exists and is not a folder"):
        bench.run(parse(["--preset", "test", "--out", str(target)]))


def test_main_prints_one_line_and_exits_2(capsys):
    assert bench.main(["--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastkd bench: error: --preset 'nope' is unknown")


def test_fastkd_cli_bench_bad_option(capsys):
    from fastkd.cli import main

    assert main(["bench", "--preset", "test", "--rounds", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--rounds 0: need at least 1 timed round per side" in err


def test_breakdown_counts_nested_labels_once():
    import time

    from torch.profiler import profile, record_function

    with profile() as prof:
        with record_function("fastkd.replay"):
            time.sleep(0.02)
            with record_function("fastkd.data"):
                time.sleep(0.03)
    events = prof.events()
    (replay,) = [e for e in events if e.name == "fastkd.replay"]
    total = replay.time_range.elapsed_us() / 1e6
    shares = bench.breakdown_from_events(events, wall_seconds=2 * total)
    assert shares["data"] * 2 * total >= 0.03 and shares["replay"] * 2 * total >= 0.02
    assert shares["replay"] + shares["data"] == pytest.approx(0.5)
    assert shares["other"] == pytest.approx(0.5) and shares["forward"] == 0.0


def test_plan_of_a_cuda_preset_needs_no_gpu(tmp_path, capsys):
    """--plan lists every method's round size and the kernel sizes, writes plan.json and trains nothing."""
    assert bench.main(["--preset", "gpu-quick", "--methods", "spaced_online_kd,spaced_ema", "--plan",
                       "--out", str(tmp_path)]) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["preset"] == "gpu-quick" and plan["device"] == "cuda"
    assert plan["rounds"] == {"warm-up": 1, "timed": 2, "profiled": 1}
    assert [(m["method"], m["batch_size"], m["iters_per_epoch"]) for m in plan["methods"]] == [
        ("spaced_online_kd", 128, 30), ("spaced_ema", 128, 30)]
    assert plan["kernels"]["ema_models"] == ["resnet18", "resnet50"]
    assert "spaced_ema: s = 0.1, d = 0.999, batch 128 x 30 iterations" in capsys.readouterr().out
    assert not (tmp_path / "results.json").exists()


def test_nproc_reports_scaling_from_torchrun_jobs(tmp_path, capsys):
    """`--nproc 2`: one torchrun job per process count (1 added as the baseline), epoch times between barriers."""
    out = tmp_path / "scaling"
    argv = ["--preset", "test", "--methods", "spaced_online_kd", "--nproc", "2", "--out", str(out)]
    assert bench.run(parse(argv)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["nprocs"] == [1, 2] and "methods" not in results and results["sync_bn"] == "auto"
    (row,) = results["scaling"]
    assert row["method"] == "spaced_online_kd" and row["status"] == "ok"
    one, two = row["nproc"]["1"], row["nproc"]["2"]
    assert len(one["images_per_s"]) == len(two["images_per_s"]) == results["rounds"]
    assert one["efficiency"] == pytest.approx(1.0)
    assert two["speedup"] == pytest.approx(two["median_images_per_s"] / one["median_images_per_s"])
    assert two["efficiency"] == pytest.approx(two["speedup"] / 2)
    assert two["per_process_images_per_s"] == pytest.approx(two["median_images_per_s"] / 2)
    assert two["threads_per_process"] == max(1, results["machine"]["cpu_count"] // 2)
    assert (one["global_batch_norm"], two["global_batch_norm"]) == (False, True)  # auto: global with 2 processes
    table = (out / "results.md").read_text()
    assert "| spaced_online_kd | s = 1.0 (I = L) | 16 × 3 | 2 |" in table and "speed-up vs 1" in table
    assert table in capsys.readouterr().out
    assert bench.run(parse([*argv, "--sync-bn", "off", "--methods", "spaced_ema"])) == 0
    (row,) = json.loads((out / "results.json").read_text())["scaling"]
    assert row["method"] == "spaced_ema" and row["nproc"]["2"]["global_batch_norm"] is False


def test_nproc_plan_says_what_would_run(tmp_path, capsys):
    assert bench.run(parse(["--preset", "gpu-quick", "--nproc", "2", "--plan", "--out", str(tmp_path)])) == 0
    assert json.loads((tmp_path / "plan.json").read_text())["nprocs"] == [1, 2]
    assert "one torchrun job per process count [1, 2]" in capsys.readouterr().out
