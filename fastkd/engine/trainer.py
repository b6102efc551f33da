"""The training engine: builds every component once, runs a method's schedule on the fast path, evaluates,
logs and checkpoints so that `--resume` continues bit-exactly."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.profiler import record_function

from .. import __version__
from ..config import ExperimentConfig, dump_config
from ..data import ArrayDataset, EpochSampler, load_dataset
from ..methods import Method, build_method
from ..pipelines import build_pipeline, get_recipe
from .checkpoint import CHECKPOINT_VERSION, CheckpointError, copy_atomic, init_weights, load_checkpoint, save_atomic
from .metrics import CsvSummary, DeviceMeter, StepLog, topk_correct
from .runtime import Runtime, build_runtime, resolve_channels_last, rng_state, seed_everything, set_rng_state
from .steps import Learner, build_learner, ce_loss



@dataclass
class _Iteration:
    epoch: int
    step: int
    indices: torch.Tensor
    seed: int


def train_recipe_name(dataset: str, augment: str, method_recipe: str) -> str:
    """The method's reference recipe; on Tiny-ImageNet every reference script uses crop 64 + flip (spec 1.1-1.3)."""
    if augment == "none":
        return "none"
    return "tiny_online_kd" if dataset == "tiny_imagenet" else method_recipe


def _lr(learner: Learner) -> float:
    return float(learner.optimizer.param_groups[0]["lr"])


class Trainer:
    """Inventory (built in this order): runtime, data + sampler + pipelines, models + learners, method, logs."""

    cfg: ExperimentConfig
    runtime: Runtime
    train_set: ArrayDataset
    test_set: ArrayDataset
    sampler: EpochSampler
    method: Method
    learners: dict[str, Learner]

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, *, resume: bool = False, quiet: bool = False):
        self.cfg = cfg
        self.run_dir = run_dir
        self.quiet = quiet
        self.runtime = build_runtime(cfg.train)
        seed_everything(cfg.seed, cfg.train.deterministic)

        d = cfg.data
        self.train_set, self.test_set = load_dataset(d.dataset, d.root, test_fraction=d.test_fraction,
                                                     cache_dir=d.cache_dir)
        self.sampler = EpochSampler(len(self.train_set), d.batch_size, seed=cfg.seed, shuffle=d.shuffle)
        self.method = build_method(cfg, len(self.sampler))
        self.plan = self.method.plan
        models = self.method.build_models(cfg, self.train_set.num_classes)
        if cfg.init_from:
            init_weights(cfg.init_from, models)
        image_shape = (3, *self.train_set.images.shape[1:3])
        self.runtime = resolve_channels_last(self.runtime, list(models.values()), image_shape,
                                             batch=min(d.batch_size, 32))
        mean, std = self.method.normalization(d.dataset) or (self.train_set.mean, self.train_set.std)
        common = dict(mean=mean, std=std, device=self.runtime.device,
                      backend=d.pipeline, dtype=self.runtime.input_dtype, channels_last=self.runtime.channels_last)
        self.train_pipe = build_pipeline(self.train_set.images, self.train_set.labels,
                                         get_recipe(train_recipe_name(d.dataset, d.augment, self.method.train_recipe)),
                                         **common)
        self.test_pipe = build_pipeline(self.test_set.images, self.test_set.labels, get_recipe("none"), **common)
        self.learners = {name: build_learner(name, m, cfg.optim, cfg.train.epochs, self.runtime)
                         for name, m in models.items()}
        self.method.attach(self)

        self.epoch = 0
        self.batch_index = 0
        self.global_step = 0
        self._pending_best = False
        self.best: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.meter = DeviceMeter(self.runtime.device)
        self._stop_requested = False
        self._data_seconds = 0.0

        run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume(run_dir / "last.pt")
        (run_dir / "config.yaml").write_text(dump_config(cfg))
        self.csv = CsvSummary(run_dir / "metrics.csv")
        self.step_log = StepLog(run_dir / "steps.jsonl") if cfg.train.log_every_step else None
        self.tb = self._tensorboard() if cfg.train.tensorboard else None

    # ----------------------------------------------------------------------------------------- build
    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.run_dir / "tb"))

    # ------------------------------------------------------------------------------- step primitives
    def batch(self, indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented batch for (indices, seed): a pure function, so replays regenerate identical pixels."""
        start = time.perf_counter()
        with record_function("fastkd.data"):
            x, y = self.train_pipe(indices, seed)
        self._data_seconds += time.perf_counter() - start
        return x, y

    def record(self, kind: str, **losses: torch.Tensor) -> None:
        """Accumulate a step's losses on the device (`train_<kind>_<name>` means per epoch); no host sync."""
        for name, value in losses.items():
            self.meter.add(f"train_{kind}_{name}", value)
        if self.step_log is not None:
            self.step_log.add(self.global_step + 1, kind, losses)

    # ------------------------------------------------------------------------------------- training
    @property
    def total_epochs(self) -> int:
        return self.plan.total_epochs

    def fit(self) -> dict[str, Any]:
        """Train to the end (or to train.max_steps / Ctrl-C, with a checkpoint) and return the summary."""
        previous = signal.signal(signal.SIGINT, self._on_sigint) if _main_thread() else None
        try:
            self._loop()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if self.step_log is not None:
                self.step_log.flush()
            if self.tb is not None:
                self.tb.close()
        return self.summary()

    def _on_sigint(self, signum, frame) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True
        print("\ninterrupt: finishing this iteration, saving a checkpoint (Ctrl-C again to abort)", flush=True)

    def _loop(self) -> None:
        L = len(self.sampler)
        max_steps = self.cfg.train.max_steps
        while self.epoch < self.total_epochs:
            start_batch = self.batch_index
            epoch_start = time.perf_counter()
            self._data_seconds = 0.0
            samples = 0
            bar = self._progress(L, start_batch)
            for i in range(start_batch, L):
                indices = self.sampler.batch(self.epoch, i)
                step = self.global_step + 1
                self.method.run_iteration(_Iteration(self.epoch, step, indices, self.sampler.batch_seed(self.epoch, i)),
                                          self)
                self.global_step = step
                self.batch_index = i + 1
                samples += int(indices.numel())
                if bar is not None:
                    bar.update(1)
                if step % self.cfg.train.log_every == 0:
                    self._progress_read(bar, samples, epoch_start)
                if self._stop_requested or (max_steps is not None and step >= max_steps):
                    if bar is not None:
                        bar.close()
                    self.save("last.pt")
                    return
            if bar is not None:
                bar.close()
            if self.epoch + 1 == self.total_epochs:
                self.method.finish(self)
            self._end_epoch(samples, time.perf_counter() - epoch_start)
            self.epoch += 1
            self.batch_index = 0
            self.save("last.pt")

    def _end_epoch(self, samples: int, seconds: float) -> None:
        train = self.meter.read()
        self.meter.reset()
        if self.step_log is not None:
            self.step_log.flush()
        for learner in self.learners.values():
            learner.end_epoch()
        evaluate = (self.epoch + 1) % self.cfg.train.eval_every == 0 or self.epoch + 1 == self.total_epochs
        results = self.evaluate() if evaluate else {}
        row = {"epoch": self.epoch + 1, "phase": self.method.phase(self.epoch),
               "lr": _lr(next(iter(self.learners.values()))), **train, **results,
               "images_per_s": samples / seconds if seconds > 0 else None,
               "data_wait_share": self._data_seconds / seconds if seconds > 0 else None,
               **self._method_counters(), "epoch_seconds": seconds}
        self.csv.write(row)
        self.history.append(row)
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tb.add_scalar(key, value, self.epoch + 1)
        improved = False
        for key, top1 in results.items():
            if not key.endswith("_top1"):
                continue
            name = key.removeprefix("eval_").removesuffix("_top1")
            if top1 > self.best.get(name, -1.0):
                self.best[name] = top1
                improved |= name == self.method.main_model(self.epoch)
        self._pending_best = improved
        if not self.quiet:
            shown = " ".join(f"{k.removeprefix('eval_')}={v:.4f}" for k, v in results.items() if k.endswith("top1"))
            print(f"epoch {self.epoch + 1}/{self.total_epochs} {shown} {row['images_per_s'] or 0:.0f} img/s",
                  flush=True)

    def _method_counters(self) -> dict[str, int]:
        return {k: v for k, v in self.method.state_dict().items() if isinstance(v, int)}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Top-1/top-5 and mean CE of every output the method names, on the test split (one host read)."""
        return evaluate_outputs(lambda x: self.method.eval_outputs(self, x), self.method.eval_context(self),
                                self.test_pipe, len(self.test_set), self.cfg.data.eval_batch_size,
                                self.runtime.device)

    # ------------------------------------------------------------------------------------- progress
    def _progress(self, total: int, start: int):
        if not self.cfg.train.progress or self.quiet:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=start, desc=f"epoch {self.epoch + 1}/{self.total_epochs}",
                    unit="it", leave=False, dynamic_ncols=True)

    def _progress_read(self, bar, samples: int, epoch_start: float) -> None:
        if bar is None:
            return
        means = self.meter.read()
        elapsed = time.perf_counter() - epoch_start
        post = {k.removeprefix("train_").replace("_loss", ""): f"{v:.3f}" for k, v in means.items()
                if k.endswith("_loss")}
        post["img/s"] = f"{samples / max(elapsed, 1e-9):.0f}"
        bar.set_postfix(post, refresh=False)

    # ---------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION, "fastkd_version": __version__,
            "config": self.cfg.model_dump(mode="json"),
            "epoch": self.epoch, "batch_index": self.batch_index, "global_step": self.global_step,
            "best": dict(self.best), "history": self.history,
            "learners": {n: l.state_dict() for n, l in self.learners.items()},
            "method": self.method.state_dict(), "rng": rng_state(),
        }

    def save(self, name: str) -> Path:
        path = self.run_dir / name
        save_atomic(self.state_dict(), path)
        if name == "last.pt" and getattr(self, "_pending_best", False):
            copy_atomic(path, self.run_dir / "best.pt")
            self._pending_best = False
        return path

    def load_weights(self, state: dict, source: str | Path) -> None:
        """Model weights (and the method's own tensors, e.g. an EMA copy) from a fastkd run checkpoint."""
        for name, learner in self.learners.items():
            if name not in state["learners"]:
                raise CheckpointError(f"{source}: holds no {name} state; it belongs to another kind of run")
            learner.model.load_state_dict(state["learners"][name]["model"])
        self.method.load_state_dict(state["method"])

    def _resume(self, path: Path) -> None:
        state = load_checkpoint(path)
        if state.get("version") != CHECKPOINT_VERSION or "learners" not in state:
            raise CheckpointError(f"{path}: not a fastkd run checkpoint (version {state.get('version')!r}); "
                                  "start a new run without --resume")
        saved_method = state["config"].get("method")
        if saved_method != self.cfg.method:
            raise CheckpointError(f"{path}: was written by method {saved_method!r}, config says {self.cfg.method!r}")
        self.load_weights(state, path)
        for name, learner in self.learners.items():
            learner.load_state_dict(state["learners"][name])
        self.epoch, self.batch_index = state["epoch"], state["batch_index"]
        self.global_step = state["global_step"]
        self.best, self.history = dict(state["best"]), list(state["history"])
        set_rng_state(state["rng"])

    # -------------------------------------------------------------------------------------- summary
    def summary(self) -> dict[str, Any]:
        final = self.history[-1] if self.history else {}
        out = {"run_dir": str(self.run_dir), "epochs_done": self.epoch, "global_step": self.global_step,
               "finished": self.epoch >= self.total_epochs, **self._method_counters()}
        for name in self.best:
            out[f"{name}_best_top1"] = self.best.get(name)
            out[f"{name}_final_top1"] = final.get(f"eval_{name}_top1")
        (self.run_dir / "summary.json").write_text(json.dumps(out, indent=2))
        return out


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


@torch.no_grad()
def evaluate_outputs(outputs, context, pipe, num_samples: int, batch_size: int,
                     device: torch.device) -> dict[str, float]:
    """Score every named logits tensor `outputs(x)` returns over a split, inside `context` (model modes)."""
    order = torch.arange(num_samples)
    totals: dict[str, torch.Tensor] = {}
    with context:
        for start in range(0, num_samples, batch_size):
            x, y = pipe(order[start:start + batch_size], 0)
            for name, logits in outputs(x).items():
                logits = logits.float()
                acc = totals.setdefault(name, torch.zeros(3, device=device))
                acc[:2] += topk_correct(logits, y)
                acc[2] += ce_loss(logits, y) * y.numel()
    with record_function("fastkd.host_sync"):
        values = (torch.stack(list(totals.values())) / num_samples).tolist()
    results: dict[str, float] = {}
    for name, (top1, top5, loss) in zip(totals, values):
        results.update({f"eval_{name}_top1": top1, f"eval_{name}_top5": top5, f"eval_{name}_loss": loss})
    return results
