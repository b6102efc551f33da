"""The PNG charts of `fastkd bench` (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .measure import BREAKDOWN_LABELS
from .report import _fmt_bytes, side_title


def write_charts(results: dict[str, Any], out: Path) -> list[Path]:
    """throughput.png (images/s with min–max over rounds), breakdown.png (fastkd time shares), memory.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["methods"] if r["status"] == "ok"]
    names = [r["method"] for r in rows]
    x = np.arange(len(rows))
    paths = []

    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(rows) + 2), 4))
    for offset, side, colour in ((-0.2, "fastkd", "tab:blue"), (0.2, "reference", "tab:grey")):
        values = [r[side]["median_images_per_s"] for r in rows]
        low = [v - min(r[side]["images_per_s"]) for v, r in zip(values, rows)]
        high = [max(r[side]["images_per_s"]) - v for v, r in zip(values, rows)]
        ax.bar(x + offset, values, 0.4, yerr=[low, high], capsize=3, label=side, color=colour)
    for i, r in enumerate(rows):
        ax.annotate(f"{r['speedup']['median']:.2f}×", (i, max(r["fastkd"]["median_images_per_s"],
                                                             r["reference"]["median_images_per_s"])),
                    ha="center", va="bottom", xytext=(0, 6), textcoords="offset points")
    ax.set_xticks(x, names)
    ax.set_ylabel("training images / s")
    ax.set_title(f"fastkd vs reference-style loop ({results['preset']['name']})")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "throughput.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    parts = list(BREAKDOWN_LABELS.values()) + ["other"]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.6 * len(rows) + 1.5)))
    left = np.zeros(len(rows))
    for part in parts:
        shares = np.array([r["fastkd_breakdown"][part] for r in rows])
        ax.barh(x, shares, left=left, label=part)
        left += shares
    ax.set_yticks(x, names)
    ax.set_xlabel("share of a fastkd round")
    ax.set_xlim(0, 1)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("fastkd time breakdown")
    fig.tight_layout()
    paths.append(out / "breakdown.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, (ax_buf, ax_rss) = plt.subplots(1, 2, figsize=(max(8, 2.4 * len(rows) + 2), 4))
    for offset, side, colour in ((-0.2, "fastkd", "tab:blue"), (0.2, "reference", "tab:grey")):
        buffers = [r[side]["replay_buffer_peak_bytes"] for r in rows]
        growth = [r[side]["host_rss_growth_mb"] or 0 for r in rows]
        # Methods without a replay buffer get no bar; an empty buffer is drawn at 1 byte (log axis) and labelled.
        heights = [np.nan if b is None else max(b, 1) for b in buffers]
        bars = ax_buf.bar(x + offset, heights, 0.4, label=side, color=colour)
        ax_buf.bar_label(bars, labels=["" if b is None else _fmt_bytes(b) for b in buffers], fontsize="x-small")
        ax_rss.bar(x + offset, growth, 0.4, label=side, color=colour)
    if any(r[side]["replay_buffer_peak_bytes"] is not None for r in rows for side in ("fastkd", "reference")):
        ax_buf.set_yscale("log")  # a log axis with no positive value (no row has a buffer) cannot be drawn
    ax_buf.set_ylabel("bytes (log)")
    ax_buf.set_title("replay buffer at the replay event (no bar: no buffer)")
    ax_rss.set_title("host RSS growth in a round (main process)")
    ax_rss.set_ylabel("MB")
    for ax in (ax_buf, ax_rss):
        ax.set_xticks(x, names, rotation=20)
        ax.legend()
    fig.tight_layout()
    paths.append(out / "memory.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def write_authors_chart(results: dict[str, Any], out: Path) -> Path | None:
    """authors.png: images/s of the authors' scripts and of `fastkd compat` per row (min–max over rounds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["authors"] if r["status"] == "ok"]
    if not rows:
        return None
    sides = list(rows[0]["sides"])
    width = 0.8 / len(sides)
    x = np.arange(len(rows))
    colours = {"reference": "tab:grey", "fastkd": "tab:blue", "fastkd_fp32": "tab:cyan"}  # torchrun sides: cycle
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(rows) + 2), 4))
    for k, side in enumerate(sides):
        values = [r["sides"][side]["median_images_per_s"] for r in rows]
        low = [v - min(r["sides"][side]["images_per_s"]) for v, r in zip(values, rows)]
        high = [max(r["sides"][side]["images_per_s"]) - v for v, r in zip(values, rows)]
        ax.bar(x + (k - (len(sides) - 1) / 2) * width, values, width, yerr=[low, high], capsize=3,
               label=side_title(side), color=colours.get(side))
    for i, r in enumerate(rows):
        top = max(r["sides"][side]["median_images_per_s"] for side in sides)
        ax.annotate(f"{r['speedup']['fastkd']['median']:.2f}×", (i, top), ha="center", va="bottom", xytext=(0, 6),
                    textcoords="offset points")
    ax.set_xticks(x, [r["method"] for r in rows], rotation=15)
    ax.set_ylabel("training images / s")
    ax.set_title(f"fastkd compat vs the authors' scripts ({results['preset']['name']})")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = out / "authors.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
