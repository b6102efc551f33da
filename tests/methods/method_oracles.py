"""Shared plumbing of the method oracle tests: tiny CIFAR-100 runs of the engine in float64, the same data as
plain tensors for the eager oracles, and comparisons of their step logs, evaluations and final weights.

The oracles themselves live in each test file and use nothing from fastkd.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import pickle
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from datasets_on_disk import write_cifar100
from fastkd.config import load_config
from fastkd.engine.trainer import Trainer

CIFAR100_STATS = ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
N_TRAIN, N_TEST, BATCH, EVAL_BATCH = 18, 12, 4, 5   # L = 5 (last batch 2); 3 test batches (5, 5, 2)
L = 5
LR = 0.01
SEED = 7
TOL = dict(rtol=1e-5, atol=1e-5)


def write_data(tmp_path: Path) -> Path:
    return write_cifar100(tmp_path / "data", n_train=N_TRAIN, n_test=N_TEST)


def batches(root: Path, split: str, size: int, stats=CIFAR100_STATS,
            order: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The split (in `order`, default in file order), normalised in float64, cut into batches of `size` (the last
    one short)."""
    with open(root / "cifar-100-python" / split, "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    mean = torch.tensor(stats[0], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(stats[1], dtype=torch.float64).view(1, 3, 1, 1)
    x = (torch.tensor(raw[b"data"]).view(-1, 3, 32, 32).double() / 255.0 - mean) / std
    y = torch.tensor(raw[b"fine_labels"])
    if order is not None:
        x, y = x[order], y[order]
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]


def eval_batches(root: Path, semantics: str, epochs_trained: int, stats=CIFAR100_STATS, data_shuffle: bool = False):
    """The test split as evaluated after `epochs_trained` epochs: like the reference's shuffle=True test loaders,
    `reference` shuffles it (randperm seeded by blake2b of "seed,epochs,0xE7A1" as a 63-bit integer) when the run
    shuffles its training set (`data_shuffle`; :func:`engine` runs do not); otherwise file order."""
    order = None
    if semantics == "reference" and data_shuffle:
        digest = hashlib.blake2b(f"{SEED},{epochs_trained},{0xE7A1}".encode(), digest_size=8).digest()
        order = torch.randperm(N_TEST, generator=torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1))
    return batches(root, "test", EVAL_BATCH, stats, order)


def engine(tmp_path: Path, root: Path, method: str, semantics: str, epochs: int, extra=()) -> Trainer:
    """A float64 engine run on the written data: no augmentation, no shuffling, every step logged."""
    cfg = load_config(None, [
        "name=oracle", f"output_dir={tmp_path / 'runs'}", f"method={method}", f"semantics={semantics}", f"seed={SEED}",
        "data.dataset=cifar100", f"data.root={root}", "data.augment=none", "data.shuffle=false",
        f"data.batch_size={BATCH}", f"data.eval_batch_size={EVAL_BATCH}", "data.pipeline=torch",
        "model.student_downsample_factor=256", f"optim.lr={LR}", f"train.epochs={epochs}", "train.device=cpu",
        "train.log_every_step=true", "train.progress=false", "train.tensorboard=false", "train.float64=true",
        *extra,
    ])
    return Trainer(cfg, tmp_path / "runs" / "oracle", quiet=True)


def eager_copy(model: nn.Module) -> nn.Module:
    """An independent contiguous copy of an engine model (same weights and buffers) for the oracle."""
    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


def sgd(model: nn.Module, nesterov: bool = False) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def engine_steps(run_dir: Path, fields: dict[str, tuple[str, ...]]) -> list[tuple[str, list[float]]]:
    """steps.jsonl as (kind, [values of that kind's fields]) in order."""
    rows = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    return [(r["kind"], [r[f] for f in fields[r["kind"]]]) for r in rows]


def engine_evals(run_dir: Path, names: tuple[str, ...]) -> list[list[float]]:
    """Per epoch: top-1 and mean CE of each named output, from metrics.csv."""
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [[float(r[f"eval_{n}_{m}"]) for n in names for m in ("top1", "loss")] for r in rows]


def score(logits_per_batch: list[torch.Tensor], test: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """[top-1, mean CE] over the split from the logits of each test batch."""
    correct = sum(int((z.argmax(1) == y).sum()) for z, (_, y) in zip(logits_per_batch, test))
    loss = sum(float(F.cross_entropy(z, y, reduction="sum")) for z, (_, y) in zip(logits_per_batch, test))
    n = sum(len(y) for _, y in test)
    return [correct / n, loss / n]


def assert_logs_match(got: list[tuple[str, list[float]]], expected: list[tuple[str, list[float]]],
                      min_steps: int = 30) -> None:
    assert [k for k, _ in got] == [k for k, _ in expected]
    assert len(expected) >= min_steps
    torch.testing.assert_close(torch.tensor([v for _, vs in got for v in vs], dtype=torch.float64),
                               torch.tensor([v for _, vs in expected for v in vs], dtype=torch.float64), **TOL)


def assert_states_match(engine_model: nn.Module, oracle_model: nn.Module, what: str) -> None:
    """Every parameter and buffer (BN running statistics included) within the tolerance."""
    engine_state = engine_model.state_dict()
    for key, value in oracle_model.state_dict().items():
        torch.testing.assert_close(engine_state[key], value, **TOL, msg=lambda m: f"{what} {key}: {m}")
