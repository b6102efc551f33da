"""The reproduction report: per family and data set a markdown and a CSV table (architectures x variants, best and
final top-1 as mean +- std over seeds, gains over the baseline, the papers' published numbers), and PNG plots of
accuracy vs the interval s and of test accuracy per epoch."""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ..engine.checkpoint import ensure_writable_folder
from ..errors import OutputError, UsageError
from .experiments import FAMILIES
from .grid import Run, load_grid


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    n: int

    def cell(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f} (n={self.n})"


def stat(values: list[float]) -> Stat | None:
    """Mean and sample standard deviation (0 for one seed) of accuracies in percent."""
    if not values:
        return None
    return Stat(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


def gain(variant: Stat | None, baseline: Stat | None) -> Stat | None:
    """Difference of the means; its std is that of a difference of two independent means."""
    if variant is None or baseline is None:
        return None
    spread = math.sqrt(variant.std ** 2 / variant.n + baseline.std ** 2 / baseline.n)
    return Stat(variant.mean - baseline.mean, spread, min(variant.n, baseline.n))


def paper_numbers() -> list[dict]:
    return yaml.safe_load((resources.files("fastkd.reproduce") / "paper_results.yaml").read_text())


def _signed(s: Stat | None) -> str:
    return "" if s is None else f"{s.mean:+.2f} ± {s.std:.2f}"


def _cell(s: Stat | None) -> str:
    return "" if s is None else s.cell()


class FamilyReport:
    """The finished runs of one family on one data set, grouped by (arch, variant)."""

    def __init__(self, family: str, dataset: str, runs: list[Run]):
        self.spec = FAMILIES[family]
        self.family, self.dataset = family, dataset
        order = {v: i for i, v in enumerate(dict.fromkeys(r.variant for r in sorted(runs, key=_table_order)))}
        self.variants = sorted({r.variant for r in runs}, key=order.get)
        self.archs = sorted({r.arch for r in runs}, key=lambda a: (len(a), a))
        self.runs = runs
        self.summaries = {r.id: s for r in runs if (s := finished_summary(Path(r.run_dir))) is not None}
        self.info = {r.variant: r for r in runs}

    def values(self, arch: str, variant: str, output: str, which: str) -> list[float]:
        key = f"{output}_{which}_top1"
        return [100 * s[key] for r in self.runs if r.arch == arch and r.variant == variant
                and (s := self.summaries.get(r.id)) is not None and s.get(key) is not None]

    def stat(self, arch: str, variant: str, output: str | None = None, which: str = "best") -> Stat | None:
        return stat(self.values(arch, variant, output or self.spec.headline_output, which))

    def spaced_variants(self) -> list[str]:
        return [v for v in self.variants if self.info[v].baseline in self.variants]

    # ------------------------------------------------------------------------------------------ tables
    def markdown(self, plots: list[str]) -> str:
        head = self.spec.headline_output
        lines = [f"## {self.spec.title}: {self.dataset}", "",
                 f"Test top-1 (%) of `{head}`, mean ± std over seeds (n = finished seeds). "
                 f"{len(self.summaries)} of {len(self.runs)} runs finished.", ""]
        for which in ("best", "final"):
            lines += [f"**{which} top-1**", "", _row(["arch", *self.variants]), _row(["---"] * (1 + len(self.variants)))]
            lines += [_row([a, *(_cell(self.stat(a, v, which=which)) for v in self.variants)]) for a in self.archs]
            lines.append("")
        spaced = self.spaced_variants()
        if spaced:
            papers = [p for p in paper_numbers() if p["family"] == self.family and p["dataset"] == self.dataset]
            cols = [f"{v} − {self.info[v].baseline}" for v in spaced]
            lines += ["**gain over the baseline, best top-1 (points)**", "",
                      _row(["arch", *cols, "paper"]), _row(["---"] * (2 + len(cols)))]
            for a in self.archs:
                known = [p for p in papers if p.get("arch") == a]
                lines.append(_row([a, *(_signed(gain(self.stat(a, v), self.stat(a, self.info[v].baseline)))
                                        for v in spaced), "; ".join(f"{p['value']:+.2f}" for p in known)]))
            for p in papers:
                if not p.get("arch"):
                    lines.append(_row(["paper, architecture not stated", *[""] * len(cols), f"{p['value']:+.2f}"]))
            lines.append("")
            lines += [f"- paper: {p['quantity']}: {p['value']:+.2f} ({p['source']})" for p in papers]
            lines += ["- gain ± is the std of a difference of two means: sqrt(sd_a²/n_a + sd_b²/n_b)", ""]
        if self.spec.extra_outputs:
            outputs = [*self.spec.extra_outputs, head]
            lines += ["**every evaluated output, best top-1**", "", _row(["arch", "variant", *outputs]),
                      _row(["---"] * (2 + len(outputs)))]
            lines += [_row([a, v, *(_cell(self.stat(a, v, o)) for o in outputs)])
                      for a in self.archs for v in self.variants]
            lines.append("")
        lines += [f"![{Path(p).stem}]({p})" for p in plots] + [""]
        return "\n".join(lines)

    def csv_rows(self) -> list[dict]:
        rows = []
        outputs = [*self.spec.extra_outputs, self.spec.headline_output]
        papers = [p for p in paper_numbers() if p["family"] == self.family and p["dataset"] == self.dataset]
        for a in self.archs:
            for v in self.variants:
                info = self.info[v]
                for output in outputs:
                    for which in ("best", "final"):
                        s = self.stat(a, v, output, which)
                        g = gain(s, self.stat(a, info.baseline, output, which)) if info.baseline else None
                        paper = [p for p in papers if output == self.spec.headline_output and which == "best"
                                 and info.baseline and p.get("arch") in (None, a)]
                        rows.append({"family": self.family, "dataset": self.dataset, "arch": a, "variant": v,
                                     "interval": info.interval, "output": output, "metric": f"{which}_top1",
                                     "mean": s and round(s.mean, 4), "std": s and round(s.std, 4), "n": s and s.n,
                                     "baseline": info.baseline, "gain_mean": g and round(g.mean, 4),
                                     "gain_std": g and round(g.std, 4),
                                     "paper": "; ".join(str(p["value"]) for p in paper),
                                     "paper_source": "; ".join(p["source"] for p in paper)})
        return rows

    # ------------------------------------------------------------------------------------------- plots
    def plot_interval(self, path: Path) -> Path | None:
        """Best top-1 vs s per architecture (error bars: std over seeds); reference variants as horizontal lines."""
        spaced = [v for v in self.variants if self.info[v].interval is not None]
        if len(spaced) < 2:
            return None
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for a, color in zip(self.archs, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
            points = [(self.info[v].interval, s) for v in spaced if (s := self.stat(a, v))]
            if points:
                ax.errorbar([p[0] for p in points], [p[1].mean for p in points], yerr=[p[1].std for p in points],
                            marker="o", capsize=4, color=color, label=f"{a} ({self.spec.headline_output})")
            for v, style in zip(self.spec.reference_lines, ("--", ":")):
                if v in self.variants and (s := self.stat(a, v)):
                    ax.axhline(s.mean, linestyle=style, color=color, alpha=0.8, label=f"{a} {v} ({s.mean:.2f})")
        ax.set_xlabel("interval s (epochs; s = 0: unspaced baseline)")
        ax.set_ylabel("best test top-1 accuracy (%)")
        ax.set_title(f"{self.spec.title}, {self.dataset}: accuracy vs interval (mean ± std over seeds)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        return _save(fig, path)

    def plot_epochs(self, path: Path) -> Path | None:
        """Test top-1 per epoch (mean over seeds, band: ± std), one panel per architecture, one line per variant."""
        column = f"eval_{self.spec.headline_output}_top1"
        curves: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
        for r in self.runs:
            if r.id in self.summaries and (series := _read_column(Path(r.run_dir) / "metrics.csv", column)):
                curves[(r.arch, r.variant)].append(series)
        if not curves:
            return None
        plt = _pyplot()
        fig, axes = plt.subplots(1, len(self.archs), figsize=(5.5 * len(self.archs), 4), dpi=110, squeeze=False)
        for ax, a in zip(axes[0], self.archs):
            for v in self.variants:
                series = curves.get((a, v))
                if not series:
                    continue
                length = min(len(s) for s in series)
                mean = [statistics.fmean(s[i] for s in series) for i in range(length)]
                std = [statistics.stdev([s[i] for s in series]) if len(series) > 1 else 0.0 for i in range(length)]
                epochs = list(range(1, length + 1))
                ax.plot(epochs, mean, marker="o", markersize=3, label=f"{v} (n={len(series)})")
                ax.fill_between(epochs, [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)],
                                alpha=0.2)
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"test top-1 accuracy of {self.spec.headline_output} (%)")
            ax.set_title(f"{a}: {self.spec.title}, {self.dataset}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        return _save(fig, path)


def _table_order(run: Run) -> int:
    return next((i for i, e in enumerate(FAMILIES[run.family].build())
                 if e.variant == run.variant and e.arch == run.arch), 0)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def finished_summary(run_dir: Path) -> dict | None:
    """summary.json of a finished run (None while it is unfinished or has none); one that is damaged, or holds
    an accuracy that is not a number in [0, 1], is refused in one line rather than reported wrong."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    redo = "delete it and run the grid again (the run resumes from its last.pt and writes it anew)"
    try:
        summary = json.loads(path.read_text())
    except OSError as exc:
        raise OutputError(f"{path}: cannot read it ({exc.strerror})") from None
    except ValueError:
        summary = None
    if not isinstance(summary, dict):
        raise UsageError(f"{path}: damaged (not a JSON object); {redo}")
    for key, value in summary.items():
        if key.endswith(("_top1", "_top5")) and value is not None and \
                not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1):
            raise UsageError(f"{path}: {key}={value!r} is not an accuracy in [0, 1]; {redo}")
    return summary if summary.get("finished") else None


def _read_column(path: Path, column: str) -> list[float]:
    try:
        with open(path, newline="") as fh:
            return [100 * float(row[column]) for row in csv.DictReader(fh) if row.get(column)]
    except (OSError, ValueError):
        return []


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def write_report(out: Path) -> Path:
    """OUT/report/: report.md (every family and data set), one CSV and the PNGs per family and data set."""
    runs = load_grid(out)
    if not runs:
        raise UsageError(f"--report {out}: no grid.json there; pass the --out folder of a fastkd reproduce run")
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs.values():
        groups[(run.family, run.dataset)].append(run)
    folder = out / "report"
    ensure_writable_folder(folder, "report folder")
    sections = ["# fastkd reproduce: results", "",
                f"From {out}. Accuracies in %; n = seeds whose run finished (unfinished and failed runs are left out).",
                ""]
    for (family, dataset) in sorted(groups, key=lambda k: (list(FAMILIES).index(k[0]), k[1])):
        report = FamilyReport(family, dataset, groups[(family, dataset)])
        stem = f"{family}_{dataset}"
        plots = [p.name for p in (report.plot_interval(folder / f"{stem}_interval.png"),
                                  report.plot_epochs(folder / f"{stem}_epochs.png")) if p is not None]
        text = report.markdown(plots)
        (folder / f"{stem}.md").write_text(text)
        rows = report.csv_rows()
        with open(folder / f"{stem}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        sections.append(text)
    (folder / "report.md").write_text("\n".join(sections))
    return folder / "report.md"
