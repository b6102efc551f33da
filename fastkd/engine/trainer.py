"""The training engine: builds every component once, runs a method's schedule on the fast path, evaluates,
logs and checkpoints so that `--resume` continues bit-exactly."""

from __future__ import annotations

import json
import shlex
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.profiler import record_function
from tqdm.auto import tqdm

from .. import __version__
from ..config import ExperimentConfig, dump_config
from ..data import ArrayDataset, EpochSampler, FileDataset, load_dataset
from ..data.fetch import ARCHIVES, fetch
from ..data.sampler import derive_seed
from ..errors import ConfigError, NonFiniteLossError, RunInterrupted, first_line
from ..pipelines import build_jpeg_pipeline, build_pipeline, deterministic_recipe, get_recipe, jpeg_recipes
from ..reference.keys import init_weights
from . import distributed
from .checkpoint import (CHECKPOINT_VERSION, RESUME_MAY_CHANGE, CheckpointError, check_run_checkpoint, copy_atomic,
                         load_checkpoint, prepare_run_dir, resume_conflicts, save_atomic, state_mismatch)
from .loggers import RunLog, build_run_log, check_log_packages
from .method import Method, build_method
from .metrics import DeviceMeter, topk_correct
from .runtime import Runtime, build_runtime, resolve_channels_last, rng_state, seed_everything, set_rng_state
from .steps import Batch, Learner, StepContext, build_learner, ce_loss, guard_nonfinite_steps, set_optimizer



@dataclass
class _Iteration:
    epoch: int
    step: int
    indices: torch.Tensor
    seed: int


class Trainer:
    """Inventory (built in this order): runtime, data + sampler + pipelines, models + learners, method, logs."""

    cfg: ExperimentConfig
    runtime: Runtime
    train_set: ArrayDataset | FileDataset
    test_set: ArrayDataset | FileDataset
    sampler: EpochSampler
    method: Method
    learners: dict[str, Learner]

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, *, resume: bool = False, quiet: bool = False):
        """Under torchrun every rank builds the same Trainer; only rank 0 writes (engine/distributed.py)."""
        join_process_group(cfg)
        if distributed.is_main():
            prepare_run_dir(run_dir)  # before any work: an unwritable folder fails now, not at the first save
        check_log_packages(cfg)  # a logger asked for whose package is missing fails now, not after data loading
        state = _resume_state(cfg, run_dir / "last.pt") if resume else None
        if state is not None and cfg.train.channels_last == "auto":
            cfg = _with_layout(cfg, state["config"]["train"]["channels_last"])
        self.cfg = cfg
        self.run_dir = run_dir
        self.quiet = quiet or not distributed.is_main()
        self.runtime = build_runtime(cfg.train)
        seed_everything(cfg.seed, cfg.train.deterministic)

        d = cfg.data
        if d.download and d.dataset != "digits":
            if d.dataset in ARCHIVES:  # ImageNet has no public archive: its reader names where to get it
                fetch(d.dataset, d.root)  # every rank may call it: they take turns on a lock, the first downloads
        self.train_set, self.test_set = load_dataset(d.dataset, d.root, test_fraction=d.test_fraction,
                                                     cache_dir=d.cache_dir, class_order=d.class_order)
        self.sampler = EpochSampler(len(self.train_set), d.batch_size, seed=cfg.seed, shuffle=d.shuffle,
                                    drop_last=d.drop_last)
        _check_distributed(cfg, len(self.train_set), len(self.test_set))
        self.method = build_method(cfg, len(self.sampler))
        self.plan = self.method.plan
        models = self.method.build_models(cfg, self.train_set.num_classes)
        if cfg.init_from:
            init_weights(cfg.init_from, models)
        self.runtime = resolve_channels_last(self.runtime, list(models.values()))
        cfg = self.cfg = _with_layout(cfg, self.runtime.channels_last)  # config.yaml and checkpoints keep the choice
        self.train_pipe, self.test_pipe = self._build_pipelines()
        self.learners = {name: build_learner(name, m, cfg.optim, cfg.train.epochs, self.runtime)
                         for name, m in models.items()}
        for group in self.method.optimizer_groups({name: learner.model for name, learner in self.learners.items()}):
            set_optimizer([self.learners[name] for name in group.learners], group.param_groups, cfg.optim,
                          cfg.train.epochs)
            self.learners[group.learners[0]].schedule_every_epoch = group.schedule_every_epoch
        # all a method sees of the engine
        self.context = StepContext(self.learners, self.batch, self.record, len(self.train_set))
        self.method.attach(self.context)
        if cfg.train.nonfinite == "skip":  # one guard per optimizer, shared ones included
            guard_nonfinite_steps(list(self.learners.values()))

        self.epoch = 0
        self.batch_index = 0
        self.global_step = 0
        self._pending_best = False
        self.best: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.meter = DeviceMeter(self.runtime.device, skip_nonfinite=cfg.train.nonfinite == "skip")
        self._stop_requested = False
        self._data_seconds = 0.0
        self._saved_step: int | None = None
        """global_step of the newest last.pt (None: none written yet)."""

        if state is not None:
            self._resume(state, run_dir / "last.pt")
        if distributed.is_main():
            (run_dir / "config.yaml").write_text(dump_config(cfg))
        resumed_at = (self.epoch, self.global_step, self.history) if state is not None else None
        self.log: RunLog = build_run_log(cfg, run_dir, quiet=self.quiet, resumed_at=resumed_at)

    def _build_pipelines(self):
        """(train, test) pipelines: over the in-memory uint8 split, or decoding JPEG files per batch (ImageNet,
        whose recipe is the data set's own for every CNN method, docs/semantics.md R27)."""
        d = self.cfg.data
        mean, std = self.method.normalization(d.dataset) or (self.train_set.mean, self.train_set.std)
        common = dict(mean=mean, std=std, device=self.runtime.device,
                      backend=d.pipeline, dtype=self.runtime.input_dtype, channels_last=self.runtime.channels_last)
        method_recipe = self.method.train_recipe(d.dataset)
        if isinstance(self.train_set, FileDataset):
            if method_recipe == "vit":
                raise ConfigError(f"method: {self.cfg.method} on {d.dataset}: the ViT recipe (RandAugment, random "
                                  "erasing) is not implemented for JPEG folders yet; use a CNN method")
            train_recipe, test_recipe = jpeg_recipes(d.dataset, d.image_size, augment=d.augment != "none")
            files = dict(workers=d.workers, on_bad_file=d.on_bad_file)
            return (build_jpeg_pipeline(self.train_set, train_recipe, **common, **files, prefetch=d.prefetch),
                    build_jpeg_pipeline(self.test_set, test_recipe, **common, **files, prefetch=0))
        test_recipe = get_recipe(deterministic_recipe(method_recipe), d.image_size)
        train_recipe = test_recipe if d.augment == "none" else get_recipe(method_recipe, d.image_size)
        return (build_pipeline(self.train_set.images, self.train_set.labels, train_recipe, **common),
                build_pipeline(self.test_set.images, self.test_set.labels, test_recipe, **common))

    def _prefetch(self, epoch: int, i: int) -> None:
        """Ask a pipeline that decodes in the background (JPEG files) for the next `data.prefetch` training
        batches, so that their decoding overlaps this step."""
        prefetch = getattr(self.train_pipe, "prefetch", None)
        if prefetch is None:
            return
        L = len(self.sampler)
        for ahead in range(1, self.cfg.data.prefetch + 1):
            e, j = divmod(epoch * L + i + ahead, L)
            if e >= self.total_epochs:
                return
            indices = self.sampler.batch(e, j)
            prefetch(indices, self.sampler.batch_seed(e, j), distributed.shard_rows(len(indices))
                     if distributed.is_active() else None)

    # ------------------------------------------------------------------------------- step primitives
    def batch(self, indices: torch.Tensor, seed: int) -> Batch:
        """The augmented batch for (indices, seed): a pure function, so replays regenerate identical pixels."""
        start = time.perf_counter()
        with record_function("fastkd.data"):
            batch = sharded_batch(self.train_pipe, indices, seed)
        self._data_seconds += time.perf_counter() - start
        return batch

    def record(self, kind: str, lr: float, **losses: torch.Tensor) -> None:
        """Accumulate a step's losses on the device (`train_<kind>_<name>` means per epoch); no host sync. `lr`,
        the LR the step used, goes to steps.jsonl."""
        for name, value in losses.items():
            self.meter.add(f"train_{kind}_{name}", value)
        if "loss" in losses:
            self.meter.watch(self.global_step + 1, kind, losses["loss"])
        self.log.add_step(self.global_step + 1, kind, lr, losses)

    # ------------------------------------------------------------------------------------- training
    @property
    def total_epochs(self) -> int:
        return self.plan.total_epochs

    def fit(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train to the end (or to `max_steps` global iterations, default train.max_steps, or Ctrl-C, with a
        checkpoint) and return the summary. A later `fit` continues from there: `fastkd bench` runs one epoch per
        call with `fit(max_steps=trainer.global_step + L)`.

        Raises RunInterrupted after Ctrl-C (once last.pt is saved) and NonFiniteLossError when a loss went NaN/inf
        under `train.nonfinite: stop` (nothing saved past the last good checkpoint)."""
        self.log.open(self.cfg.model_dump(mode="json"))
        previous = signal.signal(signal.SIGINT, self._on_sigint) if _main_thread() else None
        failed_alone = True  # an error this rank may have hit alone: no collective may follow it under torchrun
        failed = True
        try:
            self._loop(self.cfg.train.max_steps if max_steps is None else max_steps)
            failed_alone = failed = False
        except NonFiniteLossError as exc:  # every rank reads the same all-reduced meter, so all stop together
            failed_alone = False
            self.summary(stopped=str(exc))
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if not (failed_alone and distributed.is_active()):
                self.log.flush_steps()
            self.log.close(failed)
        summary = self.summary()
        if self._stop_requested and self.epoch < self.total_epochs:
            raise RunInterrupted(self._interrupted_message())
        return summary

    def _interrupted_message(self) -> str:
        where = f"interrupted at step {self.global_step} (epoch {self.epoch + 1} of {self.total_epochs})"
        if self._saved_step != self.global_step:
            return f"{where}; this run writes no checkpoints, so it cannot be continued"
        return (f"{where}; saved {self.run_dir / 'last.pt'}; continue with: "
                f"fastkd train --resume {shlex.quote(str(self.run_dir))}")

    def _on_sigint(self, signum, frame) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True
        print("\ninterrupt: finishing this iteration, saving a checkpoint (Ctrl-C again to abort)", flush=True)

    def _loop(self, max_steps: int | None) -> None:
        L = len(self.sampler)
        while self.epoch < self.total_epochs:
            start_batch = self.batch_index
            epoch_start = time.perf_counter()
            self._data_seconds = 0.0
            samples = 0
            bar = self._progress(L, start_batch)
            for i in range(start_batch, L):
                indices = self.sampler.batch(self.epoch, i)
                self._prefetch(self.epoch, i)
                step = self.global_step + 1
                self.method.run_iteration(_Iteration(self.epoch, step, indices, self.sampler.batch_seed(self.epoch, i)),
                                          self.context)
                self.global_step = step
                self.batch_index = i + 1
                samples += int(indices.numel())
                if bar is not None:
                    bar.update(1)
                if step % self.cfg.train.log_every == 0:
                    self._read_meter(bar, samples, epoch_start)
                interrupted = self._stop_now(step % self.cfg.train.log_every == 0)
                if interrupted or (max_steps is not None and step >= max_steps):
                    if bar is not None:
                        bar.close()
                    self.save("last.pt")
                    return
            if bar is not None:
                bar.close()
            if self.epoch + 1 == self.total_epochs:
                self.method.finish(self.context)
            self._end_epoch(samples, time.perf_counter() - epoch_start)
            self.epoch += 1
            self.batch_index = 0
            self.save("last.pt")
            if self._stop_now(True):
                return

    def _stop_now(self, may_agree: bool) -> bool:
        """Whether Ctrl-C stops the run here. Under torchrun the ranks get the signal at different iterations, so
        they agree (stop if any rank was asked) at log_every steps and epoch ends only."""
        if not distributed.is_active():
            return self._stop_requested
        if may_agree:
            self._stop_requested = distributed.any_rank(self._stop_requested)
            return self._stop_requested
        return False

    def _end_epoch(self, samples: int, seconds: float) -> None:
        self._settle_nonfinite()
        train = self.meter.read()
        self._check_finite()
        if self.cfg.train.nonfinite == "skip":
            train["nonfinite_skipped_steps"] = self.meter.nonfinite_count
        self.meter.reset()
        self.log.flush_steps()
        lr = self._epoch_lr()  # before the schedule steps: the LR this epoch trained with
        for learner in self.learners.values():
            learner.end_epoch()
        evaluate = (self.epoch + 1) % self.cfg.train.eval_every == 0 or self.epoch + 1 == self.total_epochs
        results = self.evaluate() if evaluate else {}
        row = {"epoch": self.epoch + 1, "phase": self.method.phase(self.epoch),
               "lr": lr, **train, **results,
               "images_per_s": samples / seconds if seconds > 0 else None,
               "data_wait_share": self._data_seconds / seconds if seconds > 0 else None,
               **self.method.counters(), "epoch_seconds": seconds}
        self.log.log_epoch(row)
        self.history.append(row)
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

    def _epoch_lr(self) -> float:
        """The LR of the first learner that trained in this epoch (offline KD's student phase: the student), read
        before the epoch's schedule step."""
        learners = list(self.learners.values())
        return next((learner for learner in learners if learner.stepped), learners[0]).lr

    @torch.no_grad()
    def evaluate(self, epochs_trained: int | None = None) -> dict[str, float]:
        """Top-1/top-5 and mean CE of every output the method names, on the test split (one host read).
        `epochs_trained` (default: the epoch now ending) seeds the shuffled order of `reference` semantics, which
        `data.shuffle: false` turns off (docs/semantics.md R18)."""
        epochs_trained = self.epoch + 1 if epochs_trained is None else epochs_trained
        order = evaluation_order(len(self.test_set), self.cfg.seed, epochs_trained,
                                 shuffled=self.cfg.semantics == "reference" and self.cfg.data.shuffle)
        return evaluate_outputs(lambda batch: self.method.eval_outputs(self.context, batch),
                                self.method.eval_context(self.context),
                                self.test_pipe, order, self.cfg.data.eval_batch_size, self.runtime.device)

    # ------------------------------------------------------------------------------------- progress
    def _progress(self, total: int, start: int):
        if not self.cfg.train.progress or self.quiet:
            return None

        return tqdm(total=total, initial=start, desc=f"epoch {self.epoch + 1}/{self.total_epochs}",
                    unit="it", leave=False, dynamic_ncols=True)

    def _read_meter(self, bar, samples: int, epoch_start: float) -> None:
        """The every-`log_every`-steps host read: log the steps' losses, stop on a non-finite loss, update the
        progress bar."""
        self.log.flush_steps()
        means = self.meter.read()
        self._check_finite()
        if bar is None:
            return
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
            "method": self.method.state_dict(), "rng": rng_state(), "world_size": distributed.world_size(),
        }

    def save(self, name: str) -> Path | None:
        """Write the checkpoint atomically; None under `train.checkpoints: false`."""
        if not self.cfg.train.checkpoints:
            return None
        self._settle_nonfinite()
        self.meter.read()
        self._check_finite()  # never replace a good checkpoint with weights that went non-finite
        path = self.run_dir / name
        rank_rng = distributed.gather_objects(rng_state())  # every rank takes part; rank 0 writes
        if distributed.is_main():
            state = self.state_dict()
            if len(rank_rng) > 1:
                state["rank_rng"] = rank_rng
            save_atomic(state, path)
        if name == "last.pt":
            self._saved_step = self.global_step
        if name == "last.pt" and getattr(self, "_pending_best", False):
            if distributed.is_main():
                copy_atomic(path, self.run_dir / "best.pt")
            self._pending_best = False
        return path

    def _settle_nonfinite(self) -> None:
        """Under `train.nonfinite: skip`, reset any learner whose state went non-finite since its last good step."""
        for learner in self.learners.values():
            if learner.skip_nonfinite is not None:
                learner.skip_nonfinite.settle()

    def _check_finite(self) -> None:
        """Under `train.nonfinite: stop`, end the run at the first non-finite loss or weight (no save after it)."""
        if self.cfg.train.nonfinite == "skip":
            return
        bad = self.meter.first_nonfinite
        if bad is not None:
            what = f"the {bad.name} training loss became {bad.value} at step {bad.step} " \
                   f"(epoch {(bad.step - 1) // len(self.sampler) + 1})"
        else:
            with record_function("fastkd.host_sync"):
                finite = torch.stack([torch.stack([torch.isfinite(p).all() for p in l.model.parameters()]).all()
                                      for l in self.learners.values()]).tolist()
            if all(finite):
                return
            names = [name for name, ok in zip(self.learners, finite) if not ok]
            what = f"the {' and '.join(names)} weights became non-finite by step {self.global_step}"
        kept = (f"{self.run_dir / 'last.pt'} keeps step {self._saved_step}" if self._saved_step is not None
                else "no checkpoint was written")
        raise NonFiniteLossError(f"{what}; the run stopped and {kept}; lower optim.lr (now {self.cfg.optim.lr:g}) "
                                 "or set train.nonfinite=skip to skip such steps")

    def load_weights(self, state: dict, source: str | Path) -> None:
        """Model weights (and the method's own tensors, e.g. an EMA copy) from a fastkd run checkpoint."""
        learners = state.get("learners")
        for name, learner in self.learners.items():
            saved = learners.get(name) if isinstance(learners, dict) else None
            if not isinstance(saved, dict) or "model" not in saved:
                held = ", ".join(learners) if isinstance(learners, dict) and learners else "none"
                raise CheckpointError(f"{source}: holds no {name} weights (models in it: {held}); it is not a "
                                      f"checkpoint of a {self.cfg.method} run: pass one, or set method= to its method")
            mismatch = state_mismatch(learner.model.state_dict(), saved["model"])
            if mismatch:
                raise CheckpointError(f"{source}: its {name} weights do not fit the configured model: {mismatch}; "
                                      "use the model.* settings it was trained with, or an intact checkpoint")
            learner.model.load_state_dict(saved["model"])
        try:
            self.method.load_state_dict(state["method"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise CheckpointError(f"{source}: its {self.cfg.method} state does not load ({first_line(exc)}); the "
                                  "checkpoint is damaged or from another fastkd version") from None

    def _resume(self, state: dict, path: Path) -> None:
        """Continue from a checked run checkpoint (the RunLog then forgets what was logged after it)."""
        self.load_weights(state, path)
        try:
            for name, learner in self.learners.items():
                learner.load_state_dict(state["learners"][name])
            set_rng_state(state["rank_rng"][distributed.rank()] if "rank_rng" in state else state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise CheckpointError(f"{path}: its optimizer, schedule or RNG state does not fit this run "
                                  f"({first_line(exc)}); resume from an intact last.pt, or start a new run from "
                                  f"its weights with init_from={path}") from None
        self.epoch, self.batch_index = state["epoch"], state["batch_index"]
        self.global_step = self._saved_step = state["global_step"]
        self.best, self.history = dict(state["best"]), list(state["history"])

    # -------------------------------------------------------------------------------------- summary
    def summary(self, stopped: str | None = None) -> dict[str, Any]:
        """Best/final accuracy per model, written to summary.json; `stopped` says why a run ended early."""
        final = self.history[-1] if self.history else {}
        out = {"run_dir": str(self.run_dir), "epochs_done": self.epoch, "global_step": self.global_step,
               "finished": self.epoch >= self.total_epochs and stopped is None, **self.method.counters()}
        if stopped is not None:
            out["stopped"] = stopped
        if getattr(self.train_pipe, "skipped_files", 0):  # data.on_bad_file: skip
            out["skipped_files"] = self.train_pipe.skipped_files
        for name in self.best:
            out[f"{name}_best_top1"] = self.best.get(name)
            out[f"{name}_final_top1"] = final.get(f"eval_{name}_top1")
        if distributed.is_main():
            (self.run_dir / "summary.json").write_text(json.dumps(out, indent=2))
        return out


def _with_layout(cfg: ExperimentConfig, channels_last: bool | str) -> ExperimentConfig:
    """A copy of `cfg` with train.channels_last set (the caller's config object is left as it was)."""
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"channels_last": channels_last})})


def _resume_state(cfg: ExperimentConfig, path: Path) -> dict:
    """The checkpoint a resumed run continues from, checked against `cfg` before any data or model is built."""
    state = load_checkpoint(path)
    check_run_checkpoint(state, path)
    saved_method = state["config"].get("method")
    if saved_method != cfg.method:
        raise CheckpointError(f"{path}: was written by a {saved_method} run but the config asks for {cfg.method}; "
                              f"resume with the run's own config.yaml, or start a new run")
    saved_world, world = state.get("world_size", 1), distributed.world_size()
    if saved_world != world:
        raise ConfigError(f"--resume {path.parent}: the run was trained by {saved_world} process(es) and this job has "
                          f"{world}; a resumed run continues exactly only with the same number: launch "
                          f"{saved_world} in total (torchrun --nnodes ... --nproc_per_node ...)")
    conflicts = resume_conflicts(state["config"], cfg.model_dump(mode="json"), state["epoch"])
    if conflicts:
        raise ConfigError(f"--resume {path.parent}: {'; '.join(conflicts)}: would change the run; a resumed run may "
                          f"change only {', '.join(RESUME_MAY_CHANGE)} (train.epochs not below the epochs done); "
                          "start a new run (another name=) for the rest")
    return state


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


EVALUATION_ORDER_STREAM = 0xE7A1
"""Separates the evaluation-order seeds from the sampler's training-order and augmentation seeds."""


def evaluation_order(num_samples: int, seed: int, epochs_trained: int, *, shuffled: bool) -> torch.Tensor:
    """The order the test split is evaluated in. The reference scripts build their test loaders with shuffle=True,
    so under `reference` (docs/semantics.md R18) the split is shuffled, seeded from the run seed and the number of
    epochs trained (repeatable and resumable); this matters where a prediction depends on its batch-mates
    (train-mode BN in the EMA evaluation, MaxDropout active at test time). `standard`, and `reference` with
    `data.shuffle: false` (the switch for exact comparisons with an unshuffled run), evaluate in order."""
    if not shuffled:
        return torch.arange(num_samples)
    generator = torch.Generator().manual_seed(derive_seed(seed, epochs_trained, EVALUATION_ORDER_STREAM))
    return torch.randperm(num_samples, generator=generator)


def _on_cuda(cfg: ExperimentConfig) -> bool:
    return cfg.train.device == "cuda" or (cfg.train.device == "auto" and torch.cuda.is_available())


def join_process_group(cfg: ExperimentConfig) -> None:
    """Under torchrun (or a Slurm task given torch.distributed's environment), join the run's process group with
    the backend its device needs; a no-op for one process or when already joined."""
    distributed.setup(_on_cuda(cfg), cfg.train.dist_timeout)


def _check_distributed(cfg: ExperimentConfig, train_size: int, test_size: int) -> None:
    """Refuse, in one line, what several processes cannot run with single-process semantics (yet)."""
    world = distributed.world_size()
    if world == 1:
        return
    for what, size, batch, drop_last in (("data.batch_size", train_size, cfg.data.batch_size, cfg.data.drop_last),
                                         ("data.eval_batch_size", test_size, cfg.data.eval_batch_size, False)):
        smallest = batch if drop_last else min(batch, size % batch or batch)
        if smallest < world:
            raise ConfigError(f"{what}={batch} gives a batch of {smallest} samples for {world} processes (every "
                              f"process needs at least one row); use a {what} whose batches of this split "
                              f"({size} samples) have >= {world} samples, or fewer processes")


def sharded_batch(pipe, indices: torch.Tensor, seed: int) -> Batch:
    """This rank's rows of the global batch (indices, seed): the pixels one process gets for those rows. A
    pipeline that `takes_rows` draws the whole batch's parameters and builds only these rows; any other (DALI
    over an in-memory split) builds the whole batch and is sliced."""
    total = len(indices)
    if not distributed.is_active():
        return Batch(*pipe(indices, seed), None, total)
    rows = distributed.shard_rows(total)
    if getattr(pipe, "takes_rows", False):
        return Batch(*pipe(indices, seed, rows), rows, total)
    x, y = pipe(indices, seed)
    return Batch(x[rows], y[rows], rows, total)


@torch.no_grad()
def evaluate_outputs(outputs, context, pipe, order: torch.Tensor, batch_size: int,
                     device: torch.device) -> dict[str, float]:
    """Score every named logits tensor `outputs(batch)` returns over a split, taken in batches in `order`, inside
    `context` (model modes). Under torchrun each batch is split over the ranks as in training (so batch-level
    statistics stay those of the whole batch) and the totals are summed over ranks."""
    num_samples = len(order)
    totals: dict[str, torch.Tensor] = {}
    with context:
        for start in range(0, num_samples, batch_size):
            batch = sharded_batch(pipe, order[start:start + batch_size], 0)
            y = batch.y
            for name, logits in outputs(batch).items():
                logits = logits.float()
                acc = totals.setdefault(name, torch.zeros(3, device=device))
                acc[:2] += topk_correct(logits, y)
                acc[2] += ce_loss(logits, y) * y.numel()
    with record_function("fastkd.host_sync"):
        values = (distributed.all_reduce_(torch.stack(list(totals.values()))) / num_samples).tolist()
    results: dict[str, float] = {}
    for name, (top1, top5, loss) in zip(totals, values):
        results.update({f"eval_{name}_top1": top1, f"eval_{name}_top5": top5, f"eval_{name}_loss": loss})
    return results
