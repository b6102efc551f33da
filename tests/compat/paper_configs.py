"""The paper's experiment table for the compat tests; the table itself is `fastkd.reproduce.experiments` (the single
source `configs/paper/**` is generated from: `python -m fastkd.reproduce.experiments`)."""

from __future__ import annotations

from fastkd.reproduce.experiments import Experiment as PaperExperiment
from fastkd.reproduce.experiments import experiment_dict, experiments, paper_dir, render

PAPER_DIR = paper_dir()

__all__ = ["PAPER_DIR", "PaperExperiment", "experiment_dict", "experiments", "render"]
