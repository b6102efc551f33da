"""bench/gpu_check.sh --cpu-dry-run: the GPU check's own plumbing on a CPU (install into a fresh venv, versions, the
CUDA tests skipping with their reason, the gpu-quick plan, a tiny bench run, summary.json + summary.md), so the
script cannot rot before a GPU is lent; and its summary turns a failing CUDA test into exit 1."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
SCRIPT = REPO / "bench" / "gpu_check.sh"


def run_script(*args: str, out: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    environment = dict(os.environ, OUT=str(out), OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(SCRIPT), *args], env=environment, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    result = run_script("--cpu-dry-run", "--python", sys.executable, out=out)
    return result, out


@pytest.mark.slow
def test_dry_run_passes_and_writes_the_summary(dry_run):
    result, out = dry_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "cpu-dry-run" and summary["ok"] and summary["problems"] == []
    assert [(s["name"], s["status"]) for s in summary["steps"]] == [
        ("install", "ok"), ("versions", "ok"), ("cuda-tests", "ok"), ("pipelines", "ok"), ("projection", "ok"),
        ("bench-plan", "ok"), ("bench", "ok")]
    assert all(0 < s["seconds"] <= s["budget_s"] for s in summary["steps"])

    versions = summary["versions"]
    assert versions["cuda device"] == "none: torch.cuda.is_available() is False"
    # the non-editable install, not the checkout, is what the steps import
    assert "site-packages" in versions["fastkd"] and str(REPO / "fastkd") not in versions["fastkd"]

    tests = summary["cuda_tests"]
    assert tests["total"] >= 50 and tests["skipped"] == tests["total"] and tests["failed"] == tests["errors"] == 0
    (reason,) = tests["skip_reasons"]
    assert reason.startswith("no CUDA device visible") and "bench/gpu_check.sh" in reason

    jpeg = summary["pipelines"]  # DALI's CPU decoder vs the twin here; skipped where DALI is not installed
    assert jpeg["status"] == "skipped" if importlib.util.find_spec("nvidia.dali") is None else \
        [row["recipe"] for row in jpeg["rows"]] == ["imagenet_train", "imagenet_100_train", "imagenet_test"]

    bench = summary["bench"]
    assert bench["plan"]["preset"] == "gpu-quick" and len(bench["plan"]["methods"]) == 6  # 5 CNN rows + vit
    assert bench["preset"] == "test"
    (row,) = bench["methods"]
    assert row["method"] == "spaced_online_kd" and row["status"] == "ok" and row["speedup"] > 0
    assert {r["soft"] for r in bench["kernels"]["kd_loss"]} == {"reference_prob_kl", "kl"}

    projection = summary["projection"]
    assert projection["preset"] == "test" and [r["key"] for r in projection["runs"]] == [
        "cifar100_spaced_online_kd", "deit_tiny_spaced_kd_epoch"]
    for run in projection["runs"]:
        assert run["status"] == "ok" and run["speedup"] > 0
        assert all(s["projected_seconds"] > 0 for s in run["settings"].values())

    text = (out / "summary.md").read_text()
    assert text.startswith("# fastkd GPU check (cpu-dry-run)") and ": PASS" in text.splitlines()[0]
    assert "61 skipped" in text or f"{tests['skipped']} skipped" in text
    assert "| spaced_online_kd |" in text and "Bench preset `gpu-quick` planned (cuda)" in text


@pytest.mark.parametrize("args, message", [
    (["--frobnicate"], "unknown argument '--frobnicate'"),
    (["--venv"], "--venv needs a value"),
    (["--cpu-dry-run", "--steps", "cuda-tests,benchmark"], "--steps: unknown step 'benchmark'"),
    (["--cpu-dry-run", "--wheels", "/nonexistent/wheels"], "--wheels /nonexistent/wheels: not a folder"),
    (["--cpu-dry-run", "--reference-repo", "/nonexistent/clone"], "--reference-repo /nonexistent/clone: not a folder"),
    ([], "no CUDA device visible"),
])
def test_bad_arguments_and_a_missing_gpu_give_one_line_and_exit_2(tmp_path, args, message):
    result = run_script(*args, "--python", sys.executable, out=tmp_path / "out", timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


def load_summary_module():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_failing_cuda_test_fails_the_check_with_its_first_lines(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "cuda-tests.log").write_text("1 failed, 3 passed\n")
    steps = [{"name": "install", "budget_s": 90, "seconds": 40.0, "rc": 0, "timed_out": False, "log": "logs/install.log"},
             {"name": "cuda-tests", "budget_s": 195, "seconds": 80.5, "rc": 1, "timed_out": False,
              "log": "logs/cuda-tests.log"},
             {"name": "bench", "budget_s": 180, "seconds": 180.0, "rc": 124, "timed_out": True, "log": "logs/bench.log"}]
    (tmp_path / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    (tmp_path / "cuda-tests.xml").write_text(
        '<testsuites><testsuite name="pytest" time="80.1">'
        '<testcase classname="tests.cuda.test_cuda_kernels" name="test_a"/>'
        '<testcase classname="tests.cuda.test_cuda_kernels" name="test_b"><failure message="AssertionError: grad: 3 of '
        '100 elements differ">long traceback line 1\nline 2</failure></testcase>'
        '<testcase classname="tests.cuda.test_cuda_dali" name="test_c"><skipped message="NVIDIA DALI is not installed"/>'
        '</testcase></testsuite></testsuites>')
    module = load_summary_module()
    assert module.main(["summary", str(tmp_path), "--mode", "gpu"]) == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["problems"] == ["step bench timed out (rc 124)", "1 CUDA test(s) failed, 0 errored"]
    tests = summary["cuda_tests"]
    assert (tests["total"], tests["passed"], tests["failed"], tests["skipped"]) == (3, 1, 1, 1)
    assert tests["failures"][0]["test"] == "tests.cuda.test_cuda_kernels::test_b"
    assert tests["failures"][0]["first_lines"][0] == "AssertionError: grad: 3 of 100 elements differ"
    text = (tmp_path / "summary.md").read_text()
    assert "FAIL: step bench timed out (rc 124); 1 CUDA test(s) failed" in text.splitlines()[0]
    assert "| bench | timed out | 180 | 180 |" in text and "Wall time 300 s of a 465 s budget." in text


def test_the_authors_report_joins_the_summary(tmp_path):
    """With --reference-repo the check's step `authors` leaves fastkd bench's report in OUT/authors; the summary
    carries it, one heading level down."""
    (tmp_path / "steps.jsonl").write_text(json.dumps(
        {"name": "authors", "budget_s": 300, "seconds": 200.0, "rc": 0, "timed_out": False,
         "log": "logs/authors.log"}) + "\n")
    (tmp_path / "authors").mkdir()
    (tmp_path / "authors" / "results.json").write_text(json.dumps({"authors": [{"method": "online_kd"}]}))
    (tmp_path / "authors" / "results.md").write_text("# fastkd bench --reference-repo — preset `gpu-quick`\n\n"
                                                     "| online_kd | `online_KD/train_space.py` (deecb4d) |\n")
    module = load_summary_module()
    assert module.main(["summary", str(tmp_path), "--mode", "gpu"]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["authors"] == {"authors": [{"method": "online_kd"}]}
    text = (tmp_path / "summary.md").read_text()
    assert "\n## fastkd bench --reference-repo — preset `gpu-quick`\n" in text
    assert text.rstrip().endswith("| online_kd | `online_KD/train_space.py` (deecb4d) |")
