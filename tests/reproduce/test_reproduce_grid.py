"""`fastkd reproduce` end to end on a tiny smoke grid: a run interrupted by train.max_steps, a re-run that skips the
finished runs and resumes the interrupted one from last.pt, the report; the Slurm path through submitit's
LocalExecutor; --dry-run; bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from fastkd.cli import main
from fastkd.reproduce.grid import VIT_SMOKE_OVERRIDES, build_grid, load_grid
from fastkd.reproduce.runner import run_one, slurm_parameters, submit_slurm

TINY = ["--set", "model.downsample_factor=1024", "model.student_downsample_factor=1024", "data.batch_size=128",
        "train.device=cpu"]
"""ResNet-18 at width/32 (widths 2..16), batch 128: L = 12 iterations per epoch on digits."""


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_interrupted_grid_resumes_and_skips_finished_runs(tmp_path, capsys):
    out = tmp_path / "grid"
    common = ["reproduce", "online_kd", "--scale", "smoke", "--epochs", "1", "--seeds", "0,1", "--out", str(out),
              "--quiet"]
    # 1. only the online baseline of seed 0 and 1 runs to the end
    assert main([*common, "--only", "*_online", *TINY]) == 0
    online = out / "online_kd/digits/resnet18_online-seed0"
    assert _summary(online)["finished"]
    online_mtime = (online / "summary.json").stat().st_mtime_ns
    # 2. the whole grid, interrupted after 5 iterations of each run still to do: online skipped, s1.0 stopped
    assert main([*common, *TINY, "train.max_steps=5"]) == 0
    spaced = out / "online_kd/digits/resnet18_s1.0-seed1"
    assert not _summary(spaced)["finished"] and _summary(spaced)["global_step"] == 5
    assert (spaced / "last.pt").is_file() and not (spaced / "metrics.csv").exists()
    printed = capsys.readouterr().out
    assert "2 skipped" in printed and "2 stopped" in printed
    # 3. the same grid again: finished runs untouched, the interrupted ones resumed (not restarted) to the end
    assert main([*common, *TINY]) == 0
    printed = capsys.readouterr().out
    assert "2 finished, 2 skipped" in printed
    assert (online / "summary.json").stat().st_mtime_ns == online_mtime
    summary = _summary(spaced)
    assert summary["finished"] and summary["global_step"] == 12 and summary["epochs_done"] == 1
    with open(spaced / "metrics.csv") as fh:
        assert [row["epoch"] for row in csv.DictReader(fh)] == ["1"]
    report = (out / "report/online_kd_digits.md").read_text()
    assert "| resnet18 |" in report and "(n=2)" in report and "s1.0 − online" in report
    for png in ("online_kd_digits_interval.png", "online_kd_digits_epochs.png"):
        with Image.open(out / "report" / png) as img:
            assert img.size[0] > 300
    rows = list(csv.DictReader(open(out / "report/online_kd_digits.csv")))
    spaced_best = next(r for r in rows if r["variant"] == "s1.0" and r["metric"] == "best_top1")
    assert spaced_best["n"] == "2" and spaced_best["baseline"] == "online" and spaced_best["gain_mean"] != ""
    assert set(load_grid(out)) == {f"online_kd/digits/resnet18_{v}/seed{s}" for v in ("online", "s1.0")
                                   for s in (0, 1)}


@pytest.mark.slow
def test_a_copied_grid_reports_and_resumes_where_it_now_is(tmp_path, capsys):
    out, moved = tmp_path / "grid", tmp_path / "shared" / "grid"
    common = ["reproduce", "online_kd", "--scale", "smoke", "--epochs", "1", "--seeds", "0", "--quiet"]
    assert main([*common, "--out", str(out), "--only", "*_online", *TINY]) == 0
    assert main([*common, "--out", str(out), "--only", "*_s1.0", *TINY, "train.max_steps=5"]) == 0
    shutil.copytree(out, moved)
    shutil.rmtree(out)  # nothing may be read from the old location
    capsys.readouterr()
    assert main(["reproduce", "--report", str(moved)]) == 0
    assert "1 of 2 runs finished" in (moved / "report/online_kd_digits.md").read_text()
    assert {Path(run.run_dir).parent for run in load_grid(moved).values()} == {moved / "online_kd/digits"}
    assert main([*common, "--out", str(moved), *TINY]) == 0  # the interrupted run resumes in its new place
    assert "1 finished, 1 skipped" in capsys.readouterr().out
    summary = _summary(moved / "online_kd/digits/resnet18_s1.0-seed0")
    assert summary["finished"] and summary["global_step"] == 12
    assert "2 of 2 runs finished" in (moved / "report/online_kd_digits.md").read_text()
    assert not out.exists()


def test_failed_run_is_recorded_and_retried(tmp_path):
    [run] = build_grid(("dropout",), seeds=(0,), out=tmp_path, data_root=None, scale="smoke", epochs=1,
                       only="*_standard", extra_overrides=("data.dataset=cifar100", f"data.root={tmp_path / 'no'}"))
    outcome = run_one(run)
    assert outcome.status == "failed" and "cifar" in outcome.message.lower()
    assert "cifar" in (tmp_path / "dropout/digits/resnet18_standard-seed0/error.txt").read_text().lower()


@pytest.mark.slow
def test_slurm_path_runs_the_same_entry_through_submitit(tmp_path):
    submitit = pytest.importorskip("submitit")
    runs = build_grid(("dropout",), seeds=(0,), out=tmp_path, data_root=None, scale="smoke", epochs=1,
                      only="*_spaced_s1.0", extra_overrides=tuple(TINY[1:]))
    executor = submitit.LocalExecutor(folder=tmp_path / "slurm")
    executor.update_parameters(timeout_min=10)
    [job] = submit_slurm(runs, tmp_path / "slurm", executor=executor)
    outcome = job.result()
    assert outcome.status == "finished" and outcome.run_id == "dropout/digits/resnet18_spaced_s1.0/seed0"
    assert _summary(tmp_path / "dropout/digits/resnet18_spaced_s1.0-seed0")["finished"]
    assert run_one(runs[0]).status == "skipped"


def test_slurm_flags_and_params_reach_the_sbatch_script(tmp_path):
    slurm = pytest.importorskip("submitit.slurm.slurm")
    parameters = slurm_parameters(n_runs=6, gpus_per_run=2, timeout_min=90, cpus_per_task=12, partition="gpu",
                                  account="proj42", qos="high", mem="64G", gres="gpu:a100:2",
                                  extra=["constraint=a100", "mail-type=END", "exclusive=true",
                                         "additional_parameters={reservation: r1}"])
    script = slurm._make_sbatch_string(command="true", folder=tmp_path, map_count=6, **parameters)
    for line in ("--account=proj42", "--qos=high", "--mem=64G", "--cpus-per-task=12", "--gres=gpu:a100:2",
                 "--partition=gpu", "--time=90", "--gpus-per-node=2", "--ntasks-per-node=2", "--constraint=a100",
                 "--mail-type=END", "--exclusive", "--reservation=r1", "--array=0-5%6"):
        assert f"#SBATCH {line}" in script.splitlines(), line
    default = slurm_parameters(n_runs=1)
    assert default["cpus_per_task"] == 8 and "account" not in default


def test_dry_run_lists_every_paper_run_with_its_plan(capsys):
    assert main(["reproduce", "all", "--dry-run", "--probe-steps", "0", "--seeds", "0,1,2"]) == 0
    printed = capsys.readouterr().out
    assert "510 runs" in printed  # (120 CNN + 50 ViT experiments) x 3 seeds
    assert "online_kd/cifar100/resnet18_s1.5/seed2" in printed and "replay events 53" in printed
    assert "self_kd/tiny_imagenet/resnet101_s4.0/seed0" in printed
    assert "vit/tiny_imagenet/pit_ti_s2.0/seed1" in printed and "replay events 150" in printed


def test_vit_smoke_grid_trains_base_and_spaced(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["reproduce", "vit", "--scale", "smoke", "--epochs", "1", "--seeds", "0", "--out", str(out),
                 "--quiet", "--set", "train.device=cpu"]) == 0
    assert "2 finished" in capsys.readouterr().out
    for variant in ("base", "s1.0"):
        summary = _summary(out / f"vit/digits/deit_tiny_{variant}-seed0")
        assert summary["finished"] and summary["student_best_top1"] > 0
    assert _summary(out / "vit/digits/deit_tiny_s1.0-seed0")["replay_events"] == 1
    assert "| deit_tiny |" in (out / "report/vit_digits.md").read_text()


def test_vit_offline_waits_for_its_base_run_then_distils_from_it(tmp_path):
    tiny = (*VIT_SMOKE_OVERRIDES, "train.device=cpu")
    [offline] = build_grid(("vit",), seeds=(0,), out=tmp_path, data_root=None, epochs=1,
                           only="vit/cifar100/deit_tiny_offline", extra_overrides=tiny)
    teacher = tmp_path / "vit/cifar100/deit_tiny_base-seed0/best.pt"
    assert offline.config().vit.teacher_weights == str(teacher)
    outcome = run_one(offline)
    assert outcome.status == "failed" and outcome.message.startswith("waiting for the teacher")
    grid = build_grid(("vit",), seeds=(0,), out=tmp_path, data_root=None, epochs=1, only="vit/cifar100/deit_tiny_*",
                      extra_overrides=tiny)
    assert [run.variant for run in grid][:3] == ["base", "online", "offline"]  # base before offline
    assert run_one(grid[0]).status == "finished" and teacher.is_file()
    assert run_one(offline).status == "finished" and not (Path(offline.run_dir) / "error.txt").exists()


def test_dry_run_estimates_from_a_probe(capsys):
    assert main(["reproduce", "dropout", "--scale", "smoke", "--dry-run", "--probe-steps", "1", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "dropout/digits/resnet18_spaced_s1.0/seed0" in printed and "period" in printed
    assert "2 runs; estimated" in printed and "without an estimate" not in printed


@pytest.mark.parametrize("argv,message", [
    (["reproduce", "online"], "unknown family online"),
    (["reproduce", "all", "--seeds", "0,x"], "--seeds 0,x"),
    (["reproduce", "all", "--arch", "resnet34", "--dry-run"], "--arch resnet34"),
    (["reproduce", "ema", "--only", "nothing*", "--dry-run"], "no paper experiment matches"),
    (["reproduce", "all", "--gpus-per-run", "0"], "--gpus-per-run 0: expected a whole number >= 1"),
    (["reproduce", "ema", "--launcher", "slurm", "--slurm-param", "constrant=a100", "--dry-run"],
     "no parameter constrant; did you mean constraint?"),
    (["reproduce", "ema", "--launcher", "slurm", "--slurm-param", "account=a", "--dry-run"],
     "account has its own flag, --slurm-account"),
    (["reproduce", "ema", "--launcher", "slurm", "--slurm-param", "gpus_per_node=2", "--dry-run"],
     "fastkd sets gpus_per_node from --gpus-per-run"),
    (["reproduce", "ema", "--launcher", "slurm", "--slurm-param", "nodes", "--dry-run"], "expected KEY=VALUE"),
    (["reproduce", "ema", "--launcher", "slurm", "--slurm-param", "comment=[", "--dry-run"], "not a YAML"),
    (["reproduce", "ema", "--launcher", "slurm", "--slurm-mem", "lots", "--dry-run"], "--slurm-mem lots: expected"),
    (["reproduce", "ema", "--launcher", "slurm", "--slurm-cpus-per-task", "0", "--dry-run"],
     "--slurm-cpus-per-task 0: expected a whole number >= 1"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("launcher", ["local", "slurm"])
def test_missing_data_stops_the_grid_before_any_run_starts_or_is_submitted(tmp_path, capsys, launcher):
    out, root = tmp_path / "grid", tmp_path / "data"
    assert main(["reproduce", "ema", "--only", "ema/*/resnet18_s0.1", "--seeds", "0,1", "--out", str(out),
                 "--data-root", str(root), "--launcher", launcher, "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"fastkd: error: {dataset}: no {folder}/ in data.root {root}; download it with "
        f"`fastkd data fetch {dataset} --root {root}` (or add --download)"
        for dataset, folder in (("cifar100", "cifar-100-python"), ("tiny_imagenet", "tiny-imagenet-200"))]
    assert not out.exists()  # no grid.json, no run folder, nothing submitted


def test_download_fetches_what_the_grid_needs_then_runs_it(archive_server, tmp_path, capsys):
    out, root = tmp_path / "grid", tmp_path / "data"
    argv = ["reproduce", "ema", "--only", "ema/*/resnet18_s0.1", "--seeds", "0", "--out", str(out), "--epochs", "1",
            "--data-root", str(root), "--quiet", "--set", "model.student_downsample_factor=1024", "train.device=cpu"]
    assert main([*argv, "--download"]) == 0
    assert "2 finished" in capsys.readouterr().out
    assert (root / "cifar-100-python" / "train").is_file() and (root / "tiny-imagenet-200" / "wnids.txt").is_file()
    for dataset in ("cifar100", "tiny_imagenet"):
        assert _summary(out / f"ema/{dataset}/resnet18_s0.1-seed0")["finished"]
    assert len(archive_server.requests) == 2
    assert main(argv) == 0 and len(archive_server.requests) == 2  # present now: nothing fetched, runs skipped
