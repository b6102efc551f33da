"""`fastkd demo`: Spaced online KD vs online KD on the bundled digits data, a table and a plot."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .config import load_config
from .engine.checkpoint import ensure_writable_folder
from .engine.trainer import Trainer
from .runs import demo_config_path, print_summary


def run_demo(out: Path, epochs: int | None = None, quiet: bool = False) -> list[tuple[str, dict]]:
    ensure_writable_folder(out, "demo output folder")
    overrides = [f"output_dir={out}"] + ([f"train.epochs={epochs}"] if epochs is not None else [])
    variants = [
        ("spaced online KD (s=1)", ["name=demo-spaced"]),
        ("online KD (s=0)", ["name=demo-online", "method=online_kd", "kd.interval=0"]),
    ]
    rows, histories = [], {}
    start = time.perf_counter()
    for label, extra in variants:
        cfg = load_config(demo_config_path(), overrides + extra)
        run_dir = out / cfg.name
        shutil.rmtree(run_dir, ignore_errors=True)  # the demo always starts fresh
        trainer = Trainer(cfg, run_dir, quiet=quiet)
        if not quiet:
            print(f"\n== {label}: {trainer.runtime.describe()}", flush=True)
        summary = trainer.fit()
        rows.append((label, summary))
        histories[label] = trainer.history
    seconds = time.perf_counter() - start
    plot = _plot(histories, out / "demo.png")
    print_summary(rows)
    print(f"demo finished in {seconds:.0f} s; plot: {plot}")
    return rows


def _plot(histories: dict[str, list[dict]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for (label, history), color in zip(histories.items(), ("tab:blue", "tab:orange")):
        epochs = [row["epoch"] for row in history]
        for model, style in (("student", "-"), ("teacher", ":")):
            values = [100 * row[f"eval_{model}_top1"] if row.get(f"eval_{model}_top1") is not None else None
                      for row in history]
            ax.plot(epochs, values, style, color=color, marker="o" if model == "student" else None,
                    markersize=3, label=f"{label} - {model}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title("fastkd demo: digits 32x32, narrow ResNet-18 teacher and student")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
