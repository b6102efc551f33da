"""The Python half of bench/gpu_check.sh: the versions it prints, and its summary.json + summary.md.

    python bench/gpu_check.py versions OUT      # GPU, driver, torch/triton/DALI, where fastkd is imported from
    python bench/gpu_check.py pipelines OUT     # ImageNet JPEGs: DALI (nvJPEG on a GPU) vs the CPU twin
    python bench/gpu_check.py summary OUT --mode gpu|cpu-dry-run

`summary` reads OUT/steps.jsonl (one line per step: name, budget_s, seconds, rc, timed_out, log),
OUT/versions.json, OUT/pipelines.json, OUT/cuda-tests.xml (pytest's JUnit XML) and the bench's results.json /
plan.json under OUT/bench (and OUT/authors, from --reference-repo); it prints the markdown and exits 1 when a
correctness check failed (a failing or erroring CUDA test) or a step did not finish, else 0.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FAILURE_LINES = 6
"""Lines kept of each failure message and of a failed step's log."""


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def tail(path: Path, lines: int = FAILURE_LINES) -> list[str]:
    if not path.is_file():
        return []
    return path.read_text(errors="replace").splitlines()[-lines:]


def cuda_tests(junit: Path) -> dict[str, Any] | None:
    """Counts of the CUDA-marked tests, the reasons they were skipped, and the first lines of each failure."""
    if not junit.is_file():
        return None
    root = ElementTree.parse(junit).getroot()
    cases = list(root.iter("testcase"))
    failures, skip_reasons = [], {}
    for case in cases:
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        for kind in ("failure", "error"):
            for node in case.findall(kind):
                text = (node.get("message") or "") + "\n" + (node.text or "")
                failures.append({"test": name, "kind": kind,
                                 "first_lines": [line for line in text.strip().splitlines() if line.strip()][
                                     :FAILURE_LINES]})
        for node in case.findall("skipped"):
            reason = (node.get("message") or "").removeprefix("Skipped: ")
            skip_reasons[reason] = skip_reasons.get(reason, 0) + 1
    failed = sum(1 for f in failures if f["kind"] == "failure")
    errors = sum(1 for f in failures if f["kind"] == "error")
    skipped = sum(skip_reasons.values())
    return {"total": len(cases), "passed": len(cases) - failed - errors - skipped, "failed": failed, "errors": errors,
            "skipped": skipped, "skip_reasons": skip_reasons, "failures": failures,
            "seconds": float(root.find("testsuite").get("time", 0) if root.tag == "testsuites" else root.get("time", 0))}


def bench_summary(folder: Path) -> dict[str, Any] | None:
    """Per method: img/s of both sides, the ratio and the share of the GPU ceiling; the kernel speed-ups."""
    results, plan = read_json(folder / "results.json"), read_json(folder / "plan.json")
    if results is None:
        return None if plan is None else {"plan": plan}
    methods = []
    for row in results["methods"]:
        if row["status"] != "ok":
            methods.append({"method": row["method"], "status": row["status"], "reason": row.get("reason")})
            continue
        share = row.get("ceiling_share") or {}
        methods.append({"method": row["method"], "status": "ok", "setting": row["setting"],
                        "fastkd_images_per_s": row["fastkd"]["median_images_per_s"],
                        "reference_images_per_s": row["reference"]["median_images_per_s"],
                        "speedup": row["speedup"]["median"], "speedup_min": row["speedup"]["min"],
                        "speedup_max": row["speedup"]["max"], "ceiling_share_resnet18": share.get("resnet18"),
                        "ceiling_share_matmul": share.get("matmul"), "fastkd_runtime": row["fastkd_runtime"]})
    return {"plan": plan, "preset": results["preset"]["name"], "date": results["date"], "machine": results["machine"],
            "ceiling_matmul_gflops": results["ceiling"]["matmul"]["gflops"], "methods": methods,
            "kernels": results.get("kernels")}


def projection_summary(folder: Path) -> dict[str, Any] | None:
    """Per projected paper run: the projected wall time in both settings and their ratio."""
    results = read_json(folder / "results.json")
    if results is None:
        return None
    runs = []
    for row in results["projections"]:
        if row["status"] != "ok":
            runs.append({"key": row["key"], "title": row["title"], "status": row["status"], "reason": row["reason"]})
            continue
        runs.append({"key": row["key"], "title": row["title"], "status": "ok", "counts": row["counts"],
                     "speedup": row["speedup"], "settings": {
                         name: {"runtime": s["runtime"], "projected_seconds": s["projected_seconds"]["total"],
                                "teacher_step_ms": 1e3 * s["costs"]["teacher_step"],
                                "student_step_ms": 1e3 * s["costs"]["student_step"],
                                "breakdown": s["breakdown"]} for name, s in row["settings"].items()}})
    return {"preset": results["preset"], "date": results["date"], "runs": runs}


PIPELINE_SIZES = {"cuda": (8, 128), "cpu": (2, 16)}
"""(batches, batch size) timed per recipe and backend: the dry run on a CPU only checks the plumbing."""
PIPELINE_BOUNDS = {"mean_abs": 1.0, "share_over_4": 0.01}
"""DALI vs the CPU twin on the same crops, in grey levels: nvJPEG's IDCT and DALI's resize may move a level or two,
nearest-neighbour rotation rounds some pixel centres the other way (docs/semantics.md R27)."""


def pipelines(out: Path) -> dict[str, Any]:
    """ImageNet-like JPEGs (500x375, quality 90) through the JPEG pipelines: DALI's decoder ("mixed" = nvJPEG on a
    GPU, else libjpeg-turbo) against the CPU twin on the same (indices, seed), per recipe: the pixel differences
    and images/s. Skipped, with the reason, without DALI."""
    import tempfile

    import torch

    from fastkd.bench.data import write_imagenet_like
    from fastkd.data.imagenet import load_imagenet
    from fastkd.pipelines import available_backends, build_jpeg_pipeline, jpeg_recipes

    if "dali" not in available_backends():
        return {"status": "skipped", "reason": "NVIDIA DALI is not installed (pip install fastkd[dali])"}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    grey = dict(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255), device=device, channels_last=False)
    rows = []
    count, size = PIPELINE_SIZES[device]
    with tempfile.TemporaryDirectory() as scratch:
        root = write_imagenet_like(Path(scratch), 8, count * size // 8, val_per_class=1)
        dataset = load_imagenet("imagenet", str(root))[0]
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
        batches = [(order[i * size:(i + 1) * size], i) for i in range(count)]
        train, test = jpeg_recipes("imagenet")
        for recipe in (train, jpeg_recipes("imagenet_100")[0], test):
            built = {backend: build_jpeg_pipeline(dataset, recipe, backend=backend, **grey)
                     for backend in ("dali", "torch")}
            diff = (built["dali"](*batches[0])[0].float() - built["torch"](*batches[0])[0].float()).abs()
            row: dict[str, Any] = {"recipe": recipe.name, "max_abs": diff.max().item(),
                                   "mean_abs": diff.mean().item(), "share_over_4": (diff > 4).float().mean().item()}
            for backend, pipeline in built.items():
                start = time.perf_counter()
                for batch in batches:
                    images = pipeline(*batch)[0]
                if device == "cuda":
                    torch.cuda.synchronize()
                row[f"{backend}_images_per_s"] = count * size / (time.perf_counter() - start)
                del images
            row["within_bounds"] = all(row[key] <= bound for key, bound in PIPELINE_BOUNDS.items())
            rows.append(row)
    ok = all(row["within_bounds"] for row in rows)
    return {"status": "ok" if ok else "out of bounds", "device": device, "bounds": PIPELINE_BOUNDS, "rows": rows}


def summarize(out: Path, mode: str) -> dict[str, Any]:
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()] \
        if (out / "steps.jsonl").is_file() else []
    for step in steps:
        step["status"] = "timed out" if step["timed_out"] else ("ok" if step["rc"] == 0 else "failed")
        if step["status"] != "ok":
            step["log_tail"] = tail(out / step["log"])
    tests = cuda_tests(out / "cuda-tests.xml")
    problems = [f"step {s['name']} {s['status']} (rc {s['rc']})" for s in steps
                if s["status"] != "ok" and not (s["name"] == "cuda-tests" and tests and s["rc"] == 1)]
    if tests is not None and (tests["failed"] or tests["errors"]):
        problems.append(f"{tests['failed']} CUDA test(s) failed, {tests['errors']} errored")
    if tests is None and any(s["name"] == "cuda-tests" for s in steps):
        problems.append("the CUDA tests wrote no JUnit report")
    return {
        "mode": mode, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "ok": not problems, "problems": problems,
        "total_seconds": sum(s["seconds"] for s in steps), "budget_seconds": sum(s["budget_s"] for s in steps),
        "steps": steps, "versions": read_json(out / "versions.json"), "cuda_tests": tests,
        "bench": bench_summary(out / "bench"), "projection": projection_summary(out / "projection"),
        "pipelines": read_json(out / "pipelines.json"),
        "authors": read_json(out / "authors" / "results.json"),
        "authors_markdown": (out / "authors" / "results.md").read_text()
        if (out / "authors" / "results.md").is_file() else None,
    }


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def markdown(summary: dict[str, Any]) -> str:
    verdict = "PASS" if summary["ok"] else "FAIL: " + "; ".join(summary["problems"])
    lines = [f"# fastkd GPU check ({summary['mode']}), {summary['date']}: {verdict}", "",
             f"Wall time {summary['total_seconds']:.0f} s of a {summary['budget_seconds']} s budget.", ""]
    versions = summary["versions"] or {}
    if versions:
        lines += ["| component | version |", "|---|---|", *(f"| {k} | {v} |" for k, v in versions.items()), ""]
    lines += ["| step | status | seconds | budget |", "|---|---|---|---|"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']:.0f} | {s['budget_s']} |" for s in summary["steps"]]
    for step in summary["steps"]:
        if step.get("log_tail"):
            lines += ["", f"Last lines of {step['log']}:", "", "```", *step["log_tail"], "```"]
    tests = summary["cuda_tests"]
    if tests is not None:
        lines += ["", f"CUDA tests: {tests['passed']} passed, {tests['failed']} failed, {tests['errors']} errors, "
                      f"{tests['skipped']} skipped ({tests['seconds']:.0f} s)."]
        lines += [f"- skipped {count}x: {reason}" for reason, count in tests["skip_reasons"].items()]
        for failure in tests["failures"]:
            lines += ["", f"{failure['kind']}: `{failure['test']}`", "", "```", *failure["first_lines"], "```"]
    projection = summary.get("projection")
    if projection:
        lines += ["", f"Projected paper runs (`fastkd bench --projection`, preset `{projection['preset']}`, "
                      f"{projection['date']}):", "",
                  "| run | fastkd | reference settings (fp32, no compile) | speed-up | teacher / student step (fastkd) |",
                  "|---|---|---|---|---|"]
        for run in projection["runs"]:
            if run["status"] != "ok":
                lines.append(f"| {run['title']} | {run['status']}: {run['reason']} | | | |")
                continue
            fast, ref = run["settings"]["fastkd"], run["settings"]["reference settings"]
            lines.append(f"| {run['title']} | **{_minutes(fast['projected_seconds'])}** | "
                         f"{_minutes(ref['projected_seconds'])} | **{run['speedup']:.2f}x** | "
                         f"{fast['teacher_step_ms']:.2f} / {fast['student_step_ms']:.2f} ms |")
        for run in projection["runs"]:
            breakdown = run.get("settings", {}).get("fastkd", {}).get("breakdown")
            if breakdown:
                lines += ["", f"{run['key']}, fastkd, one profiled replay interval: "
                              + ", ".join(f"{part} {share:.1%}" for part, share in breakdown.items())]
    jpeg = summary.get("pipelines")
    if jpeg and jpeg["status"] == "skipped":
        lines += ["", f"JPEG pipelines: skipped ({jpeg['reason']})."]
    elif jpeg:
        lines += ["", f"JPEG pipelines on {jpeg['device']} ({jpeg['status']}; DALI vs the CPU twin in grey levels, "
                      f"bounds {jpeg['bounds']}):", "",
                  "| recipe | DALI img/s | twin img/s | max / mean abs | share > 4 |", "|---|---|---|---|---|"]
        lines += [f"| {r['recipe']} | {r['dali_images_per_s']:.0f} | {r['torch_images_per_s']:.0f} | "
                  f"{r['max_abs']:.0f} / {r['mean_abs']:.3f} | {r['share_over_4']:.2%} |" for r in jpeg["rows"]]
    bench = summary["bench"]
    if bench and bench.get("plan"):
        plan = bench["plan"]
        lines += ["", f"Bench preset `{plan['preset']}` planned ({plan['device']}): "
                      + ", ".join(f"{m['method']} {m['batch_size']} x {m['iters_per_epoch']}" for m in plan["methods"])]
    if bench and "methods" in bench:
        lines += ["", f"Bench `{bench['preset']}` ({bench['date']}; {bench['machine'].get('gpu') or 'no GPU'}; "
                      f"matmul ceiling {bench['ceiling_matmul_gflops']:.0f} GFLOP/s):", "",
                  "| method | fastkd img/s | reference img/s | speed-up (min–max) | share of ResNet-18 / matmul ceiling |",
                  "|---|---|---|---|---|"]
        for row in bench["methods"]:
            if row["status"] != "ok":
                lines.append(f"| {row['method']} | {row['status']}: {row['reason']} | | | |")
                continue
            lines.append(f"| {row['method']} | {row['fastkd_images_per_s']:.0f} | {row['reference_images_per_s']:.0f} "
                         f"| **{row['speedup']:.2f}x** ({row['speedup_min']:.2f}–{row['speedup_max']:.2f}) "
                         f"| {_pct(row['ceiling_share_resnet18'])} / {_pct(row['ceiling_share_matmul'])} |")
        kernels = bench.get("kernels")
        if kernels:
            lines += ["", "| kernel | shape | fastkd | baseline | speed-up |", "|---|---|---|---|---|"]
            for row in kernels["kd_loss"]:
                lines.append(f"| KD loss {row['soft']} ({row['fused_impl']}) | {row['batch']} x {row['classes']} "
                             f"| {row['fused_us']:.1f} us | unfused {row['unfused_us']:.1f} us "
                             f"| {row['speedup']:.2f}x |")
            for row in kernels["ema"]:
                lines.append(f"| flat EMA ({row['flat_impl']}) | {row['model']} | {row['flat_us']:.1f} us "
                             f"| loop {row['per_parameter_loop_us']:.1f} us, foreach_lerp {row['foreach_lerp_us']:.1f} us "
                             f"| {row['speedup_vs_loop']:.2f}x / {row['speedup_vs_foreach_lerp']:.2f}x |")
    if summary.get("authors_markdown"):  # `fastkd bench --reference-repo`'s own report, one heading level down
        lines += ["", *("#" + line if line.startswith("# ") else line
                        for line in summary["authors_markdown"].rstrip().splitlines())]
    return "\n".join(lines) + "\n"


def versions() -> dict[str, str]:
    """What the check ran on; a missing piece is named with why, never left out."""
    found: dict[str, str] = {"python": f"{platform.python_version()} ({sys.executable})"}
    smi = shutil.which("nvidia-smi")
    if smi is None:
        found["gpu, driver (nvidia-smi)"] = "none: nvidia-smi not found"
    else:
        query = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
        found["gpu, driver (nvidia-smi)"] = query.stdout.strip() or f"none: {query.stderr.strip()[:200]}"
    import torch

    found["torch"] = f"{torch.__version__} (CUDA {torch.version.cuda})"
    found["cuda device"] = (f"{torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)}"
                            if torch.cuda.is_available() else "none: torch.cuda.is_available() is False")
    for label, module in (("triton", "triton"), ("DALI", "nvidia.dali")):
        try:
            found[label] = importlib.import_module(module).__version__
        except ImportError as exc:
            found[label] = f"not installed ({exc})"
    import fastkd

    found["fastkd"] = f"{fastkd.__version__} (imported from {Path(fastkd.__file__).parent})"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("versions").add_argument("out", type=Path)
    commands.add_parser("pipelines").add_argument("out", type=Path)
    summary_parser = commands.add_parser("summary")
    summary_parser.add_argument("out", type=Path)
    summary_parser.add_argument("--mode", choices=("gpu", "cpu-dry-run"), required=True)
    args = parser.parse_args(argv)
    if args.command == "versions":
        found = versions()
        (args.out / "versions.json").write_text(json.dumps(found, indent=2))
        print("\n".join(f"{key}: {value}" for key, value in found.items()))
        return 0
    if args.command == "pipelines":
        result = pipelines(args.out)
        (args.out / "pipelines.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return 0 if result["status"] in ("ok", "skipped") else 1
    summary = summarize(args.out, args.mode)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    text = markdown(summary)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
