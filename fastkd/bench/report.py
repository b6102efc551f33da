"""The markdown report of `fastkd bench` and the machine description it starts with."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .measure import BREAKDOWN_LABELS


def machine_description(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 ** 2, 1)
    description = {
        "cpu": cpu, "cpu_count": os.cpu_count(), "memory_gib": memory_gib, "torch_threads": torch.get_num_threads(),
        "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "python": platform.python_version(), "torch": torch.__version__, "fastkd": __version__,
        "git_commit": _git_commit(),
        "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    return description


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[2]), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _fmt_bytes(value: int | None) -> str:
    if value is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def _fmt_mb(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} MB"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def machine_line(m: dict[str, Any]) -> str:
    """The report's one-line description of the machine (`machine_description`)."""
    return (f"Machine: {m['cpu']} ({m['cpu_count']} logical CPUs, {m['memory_gib']} GiB)"
            + (f", GPU {m['gpu']}" if m["gpu"] else ", no GPU used")
            + f"; torch {m['torch']}, {m['torch_threads']} threads; fastkd {m['fastkd']}"
            + (f" (git {m['git_commit']})" if m["git_commit"] else "")
            + (f"; load average {m['load_average_at_start']:.2f} at the start"
               if m["load_average_at_start"] is not None else "") + ".")


def markdown_report(results: dict[str, Any]) -> str:
    c, p = results["ceiling"], results["preset"]
    lines = [
        f"# fastkd bench — preset `{p['name']}`, {results['date']}",
        "",
        machine_line(results["machine"]),
        "",
        f"Ceiling: matmul {c['matmul']['size']}² {c['matmul']['dtype']} **{c['matmul']['gflops']:.1f} GFLOP/s**; "
        "ResNet-18 forward+backward (no optimizer, no data), best of channels_last on/off × threads:",
        "",
        *(f"- {key}, {r['precision']}: **{r['best']['gflops']:.1f} GFLOP/s** = {r['best']['images_per_s']:.0f} img/s "
          f"(channels_last={'on' if r['best']['channels_last'] else 'off'}, threads={r['best']['threads']})"
          for key, r in c["resnet18"].items()),
        "",
        f"{results['rounds']} timed rounds per side after {p['warmup_rounds']} warm-up round(s), interleaved fastkd, "
        "reference, fastkd, ...; one round = one epoch of the synthetic CIFAR-100-layout data. Images/s = training "
        "images per second (each image is used by every model of the method). Speed-up = fastkd / reference, median "
        "of the per-round ratios (min–max).",
        "",
        "| method | setting | batch × L | fastkd img/s | reference img/s | speed-up (min–max) | fastkd overhead "
        "| fastkd GFLOP/s (share of ResNet-18 / matmul ceiling) | replay buffer fastkd / reference "
        "| host RSS growth fastkd / reference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["methods"]:
        if row["status"] != "ok":
            lines.append(f"| {row['method']} | {row['status']}: {row['reason']} |  |  |  |  |  |  |  |  |")
            continue
        f, r, s = row["fastkd"], row["reference"], row["speedup"]
        share = row["ceiling_share"]
        flops = "—" if row["fastkd_gflops"] is None else (
            f"{row['fastkd_gflops']:.1f} ({_pct(share['resnet18'])} / {_pct(share['matmul'])})")
        lines.append(
            f"| {row['method']} | {row['setting']} | {row['batch_size']} × {row['iters_per_epoch']} "
            f"| {f['median_images_per_s']:.1f} | {r['median_images_per_s']:.1f} "
            f"| **{s['median']:.2f}×** ({s['min']:.2f}–{s['max']:.2f}) | {_pct(row['fastkd_overhead_share'])} "
            f"| {flops} | {_fmt_bytes(f['replay_buffer_peak_bytes'])} / {_fmt_bytes(r['replay_buffer_peak_bytes'])} "
            f"| {_fmt_mb(f['host_rss_growth_mb'])} / {_fmt_mb(r['host_rss_growth_mb'])} |")
    parts = list(BREAKDOWN_LABELS.values()) + ["other"]
    lines += ["", "fastkd time breakdown (share of the wall time of one profiled round; labels exclusive of nested "
              "labels; overhead = everything but forward, backward and optimizer):", "",
              "| method | " + " | ".join(parts) + " |", "|---|" + "---|" * len(parts)]
    for row in results["methods"]:
        if row["status"] == "ok":
            lines.append(f"| {row['method']} | " + " | ".join(_pct(row["fastkd_breakdown"][k]) for k in parts) + " |")
    if any(row["status"] == "ok" and row["fastkd"]["device_peak_mb"] is not None for row in results["methods"]):
        lines += ["", "| method | device peak fastkd | device peak reference |", "|---|---|---|"]
        for row in results["methods"]:
            if row["status"] == "ok":
                lines.append(f"| {row['method']} | {_fmt_mb(row['fastkd']['device_peak_mb'])} "
                             f"| {_fmt_mb(row['reference']['device_peak_mb'])} |")
    lines += kernel_lines(results.get("kernels"))
    return "\n".join(lines) + "\n"


def kernel_lines(kernels: dict[str, Any] | None) -> list[str]:
    """The kernel micro-benchmark tables (none when the preset has no kernel sizes)."""
    if not kernels:
        return []
    lines = ["", f"Kernel micro-benchmarks (best of 3 blocks of {kernels['repeats']} back-to-back calls, per call):", "",
             "| KD loss fwd+bwd | soft term | fused | unfused ops | speed-up |", "|---|---|---|---|---|"]
    for row in kernels["kd_loss"]:
        lines.append(f"| {row['batch']} × {row['classes']} | {row['soft']} | {row['fused_us']:.1f} us "
                     f"({row['fused_impl']}) | {row['unfused_us']:.1f} us | **{row['speedup']:.2f}×** |")
    lines += ["", "| EMA update | tensors / parameters | flat buffer | per-parameter loop | torch._foreach_lerp_ "
              "| speed-up vs loop / vs foreach |", "|---|---|---|---|---|---|"]
    for row in kernels["ema"]:
        lines.append(f"| {row['model']} | {row['tensors']} / {row['parameters'] / 1e6:.1f} M | {row['flat_us']:.1f} us "
                     f"({row['flat_impl']}) | {row['per_parameter_loop_us']:.1f} us | {row['foreach_lerp_us']:.1f} us "
                     f"| **{row['speedup_vs_loop']:.2f}×** / **{row['speedup_vs_foreach_lerp']:.2f}×** |")
    return lines


def side_title(side: str) -> str:
    """How the `--reference-repo` report names a side (`fastkd_nproc2`: fastkd under torchrun, 2 processes)."""
    titles = {"reference": "authors' script", "fastkd": "fastkd compat", "fastkd_fp32": "fastkd compat, fp32, no compile"}
    return titles.get(side) or f"fastkd compat, {side.removeprefix('fastkd_nproc')} processes"


def authors_markdown(results: dict[str, Any]) -> str:
    """The `--reference-repo` report: per row the authors' script and `fastkd compat` with the same flags (and the
    extra fastkd sides of --like-for-like / --nproc)."""
    rows = results["authors"]
    extra = next((list(r["sides"])[2:] for r in rows if r["status"] == "ok"), [])
    lines = [
        f"# fastkd bench --reference-repo — preset `{results['preset']['name']}`, {results['date']}", "",
        machine_line(results["machine"]), "",
        "Clones: " + "; ".join(f"`{c['path']}` at {c['commit'][:12]}" + (" (with local changes)" if c["dirty"] else "")
                               for c in results["clones"]) + ".", "",
        f"Each run is a fresh process (the authors' script unmodified under the bench's shim, or `fastkd compat` with "
        f"the same flags), capped before the epoch's evaluation; {results['warmup_rounds']} warm-up and "
        f"{results['rounds']} timed round(s) per side, interleaved. img/s over the iterations after the warm-up "
        "iterations (each image counted once); first N = launch to the end of iteration N (start-up, data and "
        "models included); speed-up = fastkd / authors, median of the per-round ratios (min–max); peak RSS of the "
        "main process (DataLoader workers not included).", "",
        "| method | script (commit) | batch, N (timed) | authors img/s | fastkd img/s | speed-up (min–max) "
        + "".join(f"| {side_title(side)} img/s | speed-up " for side in extra)
        + "| first N: authors / fastkd | peak RSS authors / fastkd | device peak authors / fastkd |",
        "|---|---|---|---|---|---|" + "---|---|" * len(extra) + "---|---|---|",
    ]
    for row in rows:
        where = f"`{row['script']}` ({row['clone']['commit'][:7]})"
        if row["status"] != "ok":
            lines.append(f"| {row['method']} | {where} | {row['status']}: {row['reason']} |"
                         + " |" * (5 + 2 * len(extra)))
            continue
        sides, speed = row["sides"], row["speedup"]
        ref, fast = sides["reference"], sides["fastkd"]

        def ratio(side: str) -> str:
            s = speed[side]
            return f"**{s['median']:.2f}×** ({s['min']:.2f}–{s['max']:.2f})"

        lines.append(
            f"| {row['method']} | {where} | {row['batch_size']}, {row['iterations']} "
            f"({row['iterations'] - row['warmup_iterations']}) | {ref['median_images_per_s']:.1f} "
            f"| {fast['median_images_per_s']:.1f} | {ratio('fastkd')} "
            + "".join(f"| {sides[side]['median_images_per_s']:.1f} | {ratio(side)} " for side in extra)
            + f"| {ref['median_first_n_seconds']:.1f} s / {fast['median_first_n_seconds']:.1f} s "
            f"| {_fmt_mb(ref['host_rss_peak_mb'])} / {_fmt_mb(fast['host_rss_peak_mb'])} "
            f"| {_fmt_mb(ref['device_peak_mb'])} / {_fmt_mb(fast['device_peak_mb'])} |")
    return "\n".join(lines) + "\n"
