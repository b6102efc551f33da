"""`fastkd bench --reference-repo`: the authors' scripts (here: stand-in clones with their layout, flags and patterns,
tests/bench/authors_standins.py) run unmodified under the shim, interleaved with `fastkd compat`; report rows with
the clone's commit; the clones stay byte-identical; one-line errors for a wrong clone, a missing script, a flag the
clone's script does not take."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import authors_standins
from fastkd.bench import authors, runner
from fastkd.bench.data import write_synthetic_cifar100
from fastkd.bench.presets import PRESETS, BenchOptionError

SCALE = PRESETS["test"].authors


def porcelain(clone: Path) -> str:
    return subprocess.run(["git", "-C", str(clone), "status", "--porcelain", "--ignored"], capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture(scope="module")
def clones(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    root = tmp_path_factory.mktemp("clones")
    kd, sg = root / "Spaced-KD", root / "spacing_generalization"
    return {"kd": (kd, authors_standins.spaced_kd(kd)), "sg": (sg, authors_standins.spacing_generalization(sg))}


@pytest.fixture(scope="module")
def report(clones, tmp_path_factory):
    """Two rows, one per clone, with --like-for-like and --nproc 2: reference, fastkd, fastkd fp32 and fastkd under
    torchrun with 2 processes, per round."""
    out = tmp_path_factory.mktemp("report")
    code = runner.main(["--preset", "test", "--methods", "spaced_online_kd,spaced_dropout", "--like-for-like",
                        "--nproc", "2",
                        "--reference-repo", str(clones["kd"][0]), "--reference-repo", str(clones["sg"][0]),
                        "--out", str(out)])
    return code, out, json.loads((out / "results.json").read_text())


def test_rows_carry_the_commit_the_ratio_and_the_timings(report, clones):
    code, out, results = report
    assert code == 0, results
    assert [c["commit"] for c in results["clones"]] == [clones["kd"][1], clones["sg"][1]]
    rows = {row["method"]: row for row in results["authors"]}
    assert rows["spaced_online_kd"]["clone"]["commit"] == clones["kd"][1]
    assert rows["spaced_dropout"]["clone"]["commit"] == clones["sg"][1]
    for row in rows.values():
        assert row["status"] == "ok", row
        assert list(row["sides"]) == ["reference", "fastkd", "fastkd_fp32", "fastkd_nproc2"]
        for side in row["sides"].values():
            assert len(side["images_per_s"]) == results["rounds"] == SCALE.rounds
            assert side["median_images_per_s"] > 0 and side["host_rss_peak_mb"] > 0
            # the shim's cap: one timestamp per iteration, then the process ended (before the epoch's evaluation)
            assert [len(run) for run in side["iteration_seconds"]] == [SCALE.iterations] * SCALE.rounds
            assert side["median_first_n_seconds"] >= sum(side["iteration_seconds"][0][1:])
        ref = row["sides"]["reference"]["images_per_s"]
        for side in ("fastkd", "fastkd_fp32", "fastkd_nproc2"):
            assert row["speedup"][side]["per_round"] == pytest.approx(
                [f / r for f, r in zip(row["sides"][side]["images_per_s"], ref)])
        # both sides ran the same flags: the script's, then fastkd compat's own (--data-root ...)
        script = authors.AUTHORS_SCRIPTS[row["method"]]
        reference, fastkd = row["commands"]["reference"], row["commands"]["fastkd"]
        assert reference[:2] == ["python", str(Path(row["clone"]["path"]) / script.path)]
        flags = reference[2:]
        assert fastkd[:3 + len(flags)] == ["fastkd", "compat", script.compat, *flags]
        assert "train.amp=off" in row["commands"]["fastkd_fp32"]
        assert row["commands"]["fastkd_nproc2"][:5] == ["torchrun", "--standalone", "--nproc_per_node=2", "-m",
                                                        "fastkd"]
    markdown = (out / "results.md").read_text()
    assert clones["kd"][1][:7] in markdown
    assert "| fastkd compat, fp32, no compile img/s | speed-up | fastkd compat, 2 processes img/s |" in markdown
    assert (out / "authors.png").stat().st_size > 0


def test_clones_are_byte_identical_after_the_runs(report, clones):
    for clone, _ in clones.values():
        assert porcelain(clone) == ""


@pytest.mark.parametrize("method", ["online_kd", "spaced_self_kd", "spaced_ema", "vit_spaced_kd"])
def test_every_other_script_runs_under_the_shim(method, clones, tmp_path):
    """The reference side alone: pycls' ./data, self KD's --dataset_path, absolute result paths, posterize(0)..."""
    clone = clones["sg" if method == "spaced_ema" else "kd"][0]
    data = write_synthetic_cifar100(tmp_path / "data", SCALE.train_images, SCALE.test_images)
    command = authors.side_commands(method, SCALE, clone, data, like_for_like=False)["reference"]
    run = authors.run_side(command, side="reference", workdir=tmp_path / "run", data_root=data, scale=SCALE,
                           synthetic_data=True)
    assert run.images_per_s > 0 and len(run.iteration_seconds) == SCALE.iterations
    if method == "spaced_ema":  # its torch.save to /data/sunguanglong/... landed in the run's folder
        assert (tmp_path / "run/authors-results/results_spcaed_distillation/fig4_ema/ema_cifar100_resnet18.pkl"
                ).is_file()
    if method == "vit_spaced_kd":
        assert list((tmp_path / "run/work_dirs").iterdir())
    assert porcelain(clone) == ""


def test_not_a_git_repository_is_one_line(tmp_path, capsys, clones):
    assert runner.main(["--preset", "test", "--reference-repo", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"--reference-repo {tmp_path}: not a git repository (clone it with git clone "
        "https://github.com/SunGL001/Spaced-KD, or SunGL001/spacing_generalization)")
    with pytest.raises(BenchOptionError, match="not a git repository"):  # a folder inside a clone is not one
        authors.read_clone(str(clones["kd"][0] / "online_KD"))
    with pytest.raises(BenchOptionError, match="no such folder"):
        authors.read_clone(str(tmp_path / "missing"))


def test_a_script_missing_from_every_clone_is_one_line(clones, capsys):
    assert runner.main(["--preset", "test", "--methods", "spaced_online_kd,spaced_ema",
                        "--reference-repo", str(clones["kd"][0])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.endswith(f"online_KD/train_EMA.py (row spaced_ema) is in none of {clones['kd'][0]}; add a clone of "
                        "SunGL001/spacing_generalization or leave the row out with --methods")


def test_a_flag_the_clone_does_not_take_fails_its_row_in_one_line(tmp_path):
    """An older clone whose train_space.py has no -interval_rate: the row says so, in one line."""
    old = tmp_path / "old"
    authors_standins.spaced_kd(old, tuple(f for f in authors_standins.ONLINE_KD_FLAGS if f != "-interval_rate"))
    out = tmp_path / "out"
    assert runner.main(["--preset", "test", "--methods", "spaced_online_kd", "--reference-repo", str(old),
                        "--out", str(out)]) == 1
    (row,) = json.loads((out / "results.json").read_text())["authors"]
    assert row["status"] == "error"
    assert row["reason"].startswith("reference exited with status 2: ")
    assert row["reason"].endswith("error: unrecognized arguments: -interval_rate 0.34")


@pytest.mark.parametrize("argv, message", [
    (["--like-for-like"], "--like-for-like compares fastkd's fp32 run with the authors' scripts; it needs "
                          "--reference-repo"),
    (["--reference-repo", ".", "--projection"], "--reference-repo is not supported with --projection or --plan; run "
                                                "it on its own"),
])
def test_unsupported_combinations_are_one_line(argv, message, capsys):
    assert runner.main(["--preset", "test", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"fastkd bench: error: {message}"
