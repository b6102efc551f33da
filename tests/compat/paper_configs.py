"""The paper's experiment table for the compat tests; the table itself is `fastkd.reproduce.experiments` (the single
source `configs/paper/**` is generated from: `python -m fastkd.reproduce.experiments`)."""

from __future__ import annotations

from fastkd.reproduce.experiments import FAMILIES
from fastkd.reproduce.experiments import Experiment as PaperExperiment
from fastkd.reproduce.experiments import experiment_dict, paper_dir, render
from fastkd.reproduce.experiments import experiments as all_experiments

PAPER_DIR = paper_dir()


def experiments() -> list[PaperExperiment]:
    """The experiments of the CNN reference scripts; the ViT (run_net) grid is checked by test_run_net.py."""
    return all_experiments(tuple(name for name in FAMILIES if name != "vit"))

__all__ = ["PAPER_DIR", "PaperExperiment", "experiment_dict", "experiments", "render"]
