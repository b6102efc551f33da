"""The typed experiment schema: one pydantic model per config section, each key with its bounds and description."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .methods import get_method, method_names

MAX_SEED = 2**32 - 1
"""numpy's legacy seeding (used by the reference code paths) takes seeds in [0, 2**32 - 1]."""
MAX_DOWNSAMPLE_FACTOR = 4096.0
"""Widths are int(w / sqrt(d)) with w >= 64: beyond d = 64**2 a layer would have no channels."""


class _Section(BaseModel):
    # Every float must be finite (inf/nan are never a meaningful setting); docstrings become field descriptions.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False,
                              use_attribute_docstrings=True)


class DataConfig(_Section):
    dataset: Literal["digits", "cifar10", "cifar100", "tiny_imagenet", "imagenet", "imagenet_100"] = "digits"
    """Which data set; `digits` is scikit-learn's bundled set resized to 32x32 RGB (no download). `imagenet` and
    `imagenet_100` are read as JPEG files and decoded per batch (docs/semantics.md R27)."""
    root: Optional[str] = None
    """Folder holding `cifar-10-batches-py/`, `cifar-100-python/`, `tiny-imagenet-200/`, `imagenet/` or
    `imagenet-100/` (or that folder itself); unset = `$FASTKD_DATA`, else `./data`."""
    download: bool = False
    """Fetch the data set into the data root from its official archive (MD5-checked) when it is not there yet,
    as the reference scripts do (`fastkd compat` sets it); `fastkd data fetch` does the same by hand. ImageNet
    has no public archive and is never downloaded."""
    augment: Literal["default", "none"] = "default"
    """`default` = the method's reference recipe; `none` = normalize only (for exact comparisons)."""
    shuffle: bool = True
    """Shuffle the training set each epoch (seeded); `false` walks it in order, and also evaluates the test set in
    order under `semantics: reference` (whose evaluation is otherwise a seeded shuffle, docs/semantics.md R18)."""
    batch_size: int = Field(128, ge=1)
    """Training batch size B; it sets L = ceil(N/B) iterations per epoch and with it every spacing interval."""
    eval_batch_size: int = Field(512, ge=1)
    """Batch size of test-set evaluation."""
    pipeline: Literal["auto", "torch", "dali"] = "auto"
    """Augmentation backend: `auto` picks DALI on CUDA when installed, else the device-resident torch pipeline."""
    test_fraction: float = Field(0.2, gt=0, lt=1)
    """Held-out share for `digits` (the other data sets ship their own test split)."""
    cache_dir: Optional[str] = None
    """Where decoded Tiny-ImageNet arrays and ImageNet file indexes are cached (default: `<data set>/.fastkd-cache`)."""
    workers: int = Field(4, ge=0)
    """ImageNet: decoding threads of the CPU pipeline (DALI's `num_threads`); 0 decodes on the calling thread."""
    prefetch: int = Field(2, ge=0)
    """ImageNet, CPU pipeline: training batches decoded ahead in the background while the step runs (0 = none)."""
    on_bad_file: Literal["error", "skip"] = "error"
    """ImageNet: an unreadable or undecodable image stops the run with one line naming it (`error`), or its row is
    dropped from every batch that draws it, noted once per file (`skip`)."""
    image_size: Optional[int] = Field(None, ge=8)
    """Side of the images the ViT and ImageNet recipes produce (crop/resize target); unset = the reference's 224.
    Smaller values make cheap runs (e.g. 32 on a CPU)."""
    drop_last: bool = False
    """Drop the last partial training batch, as the ViT reference's loader does (L = floor(N/B): 390 on CIFAR)."""
    class_order: Literal["wnids_file", "sorted"] = "wnids_file"
    """Tiny-ImageNet class index: line of `wnids.txt` (the CNN scripts) or position among the sorted class folder
    names (the ViT code)."""


class ModelConfig(_Section):
    teacher: str = "resnet18"
    """Teacher architecture of the online-KD family (a registered model name, e.g. resnet18, resnet50)."""
    student: str = "resnet18"
    """Student architecture, and the one model of self KD, EMA and dropout."""
    downsample_factor: float = Field(1.0, gt=0, le=MAX_DOWNSAMPLE_FACTOR)
    """Teacher width divisor d (widths int(w/sqrt(d))); as in the reference only a resnet18 teacher gets it."""
    student_downsample_factor: float = Field(1.0, gt=0, le=MAX_DOWNSAMPLE_FACTOR)
    """fastkd extension: width divisor for the student, and for the one model of self KD, EMA and dropout (the
    reference always builds them at full width)."""


class KDConfig(_Section):
    interval: float = Field(1.0, ge=0)
    """Spacing s in epochs: the teacher runs I = int(L*s) iterations ahead of the student (0 = online)."""
    temperature: float = Field(3.0, gt=0)
    """Softmax temperature T of the soft targets."""
    alpha: float = Field(0.3, ge=0, le=1)
    """Weight of the soft term: loss = (1-alpha)*CE + alpha*soft + beta*feature."""
    beta: float = Field(0.03, ge=0)
    """Weight of the feature term (and self KD's feature_loss_coefficient)."""
    feature_loss: Literal["dist", "mse", "l1", "smoothl1", "ce", "none"] = "dist"
    """`dist` = the reference's unsquared torch.dist; under `semantics: standard` the default becomes `mse`.
    `ce` = cross-entropy with the raw teacher features as soft targets (the reference's `-feature_loss CE`)."""


class EMAConfig(_Section):
    decay: float = Field(0.999, ge=0, lt=1)
    """EMA decay d: ema <- d*ema + (1-d)*param (the reference's `-alpha`)."""
    interval: float = Field(1.0, ge=0)
    """Spacing s in epochs: update every int(s*L) iterations; 0 = every step; > 500 = random intervals
    (docs/semantics.md §6)."""


class DropoutConfig(_Section):
    op: Literal["standard", "max"] = "max"
    """Which dropout op sits after each of the 4 ResNet stages: inverted dropout, or MaxDropout (docs/semantics.md
    §3.3)."""
    rate: float = Field(0.3, ge=0, le=1)
    """Peak drop rate p (the reference's `--drop`)."""
    space: float = Field(1.0, ge=0)
    """Period in epochs of p_t = p*|sin(pi*t/S)|, S = int(space*L); S >= 500 iterations = random rates
    (docs/semantics.md §7).
    It also spaces the `cutout_input` box under either method (0 = constant box), as the reference's --space."""
    cutout_input: bool = False
    """Also cut one box out of every training batch (the reference's `--cutout_input`, spaced length l_t)."""
    length: int = Field(16, ge=0)
    """Cutout box side for `cutout_input`."""


class OptimConfig(_Section):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    """Optimizer of every trained model."""
    lr: float = Field(0.01, gt=0)
    """Initial learning rate."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD momentum."""
    nesterov: bool = False
    """SGD Nesterov momentum (needs momentum > 0)."""
    weight_decay: float = Field(5e-4, ge=0)
    """L2 weight decay (decoupled for adamw)."""
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    """Adam/AdamW (beta1, beta2), each in [0, 1)."""
    eps: float = Field(1e-8, gt=0)
    """Adam/AdamW epsilon."""
    schedule: Literal["constant", "cosine", "multistep", "warmup_cosine"] = "constant"
    """The reference's online KD keeps the LR constant (its MultiStepLR is never stepped); `warmup_cosine` is the
    ViT trainer's per-epoch timm CosineLRScheduler (linear warm-up from warmup_factor*lr, cosine to min_lr)."""
    min_lr: float = Field(5e-6, ge=0)
    """Final LR of `warmup_cosine` (the ViT trainer's OPTIM.MIN_LR)."""
    warmup_epochs: int = Field(20, ge=0)
    """Linear warm-up epochs of `warmup_cosine`."""
    warmup_factor: float = Field(1e-3, gt=0, le=1)
    """`warmup_cosine` starts at warmup_factor*lr (5e-7 for the ViT trainer's 5e-4)."""
    milestones: list[Annotated[int, Field(ge=1)]] = [60, 120, 160]
    """Epochs at which `multistep` multiplies the LR by `gamma` (increasing)."""
    gamma: float = Field(0.2, gt=0)
    """LR factor at each `multistep` milestone."""

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, milestones: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ValueError("must be strictly increasing, e.g. [60, 120, 160]")
        return milestones

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "OptimConfig":
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError("optim.nesterov: Nesterov momentum needs optim.name=sgd and optim.momentum > 0 "
                             "(set optim.nesterov=false or give a momentum)")
        return self


class ViTConfig(_Section):
    """The ViT trainer's distillation settings (methods vit_online_kd, vit_offline_kd, vit_spaced_kd)."""

    interval: float = Field(1.0, gt=0)
    """Spacing s in epochs of vit_spaced_kd: a replay every S = ceil(L*s) teacher steps."""
    logit_weight: float = Field(0.5, ge=0, le=1)
    """w in (1-w)*CE + w*KD."""
    temperature: float = Field(1.0, gt=0)
    """T of the logit KD term KL(p_t||p_s)*T^2/(B*C)."""
    teacher_weights: Optional[str] = None
    """Checkpoint of the frozen teacher of vit_offline_kd (a fastkd run checkpoint or a student state_dict)."""
    teacher_img_size: Optional[int] = Field(None, ge=8)
    """Input size of the teacher (replay and offline inputs are bilinearly resized to it); unset = the student's."""
    drop_path_rate: float = Field(0.1, ge=0, lt=1)
    """Stochastic depth rate of student and teacher (linear over blocks)."""
    model_args: dict[str, Union[int, list[int]]] = {}
    """Extra model constructor arguments that shrink a ViT for tests or cheap runs, e.g. {depth: 2, embed_dim: 32,
    num_heads: 2}."""


class TrainConfig(_Section):
    epochs: int = Field(80, ge=1)
    """Training epochs (of the student, for the online-KD family)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` = CUDA when visible, else the CPU."""
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """`auto` = bf16 autocast on CUDA, fp32 on CPU (bf16 is slower than fp32 on CPUs without avx512_bf16)."""
    compile: Literal["auto", "on", "off"] = "auto"
    """`auto` = torch.compile on CUDA only (on CPU it did not measure faster here)."""
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    """torch.compile's mode. `reduce-overhead` replays each compiled forward/backward as a CUDA graph (one launch
    instead of hundreds: the small-batch CIFAR steps are launch-bound on a GPU) and compiles static shapes, one
    graph per batch shape; `max-autotune` also searches GEMM/conv kernels (long compiles)."""
    channels_last: Union[bool, Literal["auto"]] = "auto"
    """`auto` = on for CUDA; off for float64; on CPU on iff every conv/batch norm has >= 16 channels (channels_last
    is up to ~1.5x faster for wide ResNets but up to ~7x slower for narrow ones; a fixed rule, never a timing).
    Resolved once when a run starts and saved in its config.yaml and checkpoints; --resume and eval reuse it."""
    float64: bool = False
    """Run models, data and losses in float64: for exact oracle comparisons (fp32 trajectories of small nets
    drift apart by more than 1e-5 within a few steps from summation order alone). Slow; needs amp off."""
    deterministic: bool = False
    """Bitwise-repeatable runs (deterministic algorithms; on CPU runs are then repeatable to the bit)."""
    log_every: int = Field(50, ge=1)
    """Steps between host reads of the device-side metric accumulators (no sync in between)."""
    log_every_step: bool = False
    """Write every step's losses to `steps.jsonl` (reads them once per `log_every` steps, never per step)."""
    eval_every: int = Field(1, ge=1)
    """Epochs between test-set evaluations (the last epoch is always evaluated)."""
    max_steps: Optional[int] = Field(None, ge=1)
    """Stop (with a checkpoint) after this many global iterations; for smoke tests and exact-resume checks."""
    checkpoints: bool = True
    """Write last.pt (every epoch end and at a stop) and best.pt. `false` writes none, so the run cannot be
    resumed: for timing runs (`fastkd bench`, the time probes of `fastkd reproduce --dry-run`)."""
    nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN/inf training loss: `stop` ends the run (exit 1, the last good checkpoint kept); `skip` leaves that
    optimizer step out (weights, buffers and optimizer state unchanged) and counts it in metrics.csv."""
    progress: bool = True
    """Show a progress bar with ETA and images/s."""
    tensorboard: Union[bool, Literal["auto"]] = "auto"
    """Also log every metrics.csv row to TensorBoard (`tb/` in the run folder): `auto` = when it is installed;
    `true` without it stops the run at start (`pip install 'fastkd[tensorboard]'`)."""
    sync_bn: Literal["auto", "on", "off"] = "auto"
    """Batch norm under torchrun (N > 1 processes): `on` = statistics of the global batch, as one process
    (nn.SyncBatchNorm on CUDA, an all-reduce batch norm on CPU); `off` = each process normalises its own rows
    and keeps its own running statistics (per-replica statistics, as the reference's nn.DataParallel runs;
    checkpoints hold rank 0's); `auto` = on. No effect in a single process."""
    dist_timeout: float = Field(600.0, gt=0)
    """Seconds any collective may wait under torchrun before the job fails (a dead or stuck rank ends the job
    instead of hanging it)."""

    @field_validator("channels_last", "tensorboard", mode="before")
    @classmethod
    def _bool_or_auto(cls, value: Any) -> Any:
        # Checked before the union so the error names the three choices, not each union member separately.
        if value is True or value is False or value == "auto":
            return value
        raise ValueError("must be true, false or auto")

    @field_validator("compile", "sync_bn", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        # YAML reads a bare on/off (also on the command line) as a boolean.
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_off(cls, value: Any) -> Any:
        # `train.amp=off` reaches the schema as YAML's boolean false.
        return "off" if value is False else value


WANDB_NAME_FORBIDDEN = "/\\#?%:"
"""Characters wandb refuses in project and entity names (refused here, before any run starts)."""
WANDB_NAME_MAX = 128


class WandbConfig(_Section):
    """Weights & Biases logging (`pip install 'fastkd[wandb]'`): on when `project` is set; rank 0 logs every
    metrics.csv row against `epoch` and, with train.log_every_step, every steps.jsonl row against `step`."""

    project: Optional[str] = None
    """wandb project; setting it turns wandb logging on."""
    entity: Optional[str] = None
    """wandb entity (user or team) the project belongs to; unset = your default entity."""
    name: Optional[str] = None
    """wandb run name; unset = the run's `name`."""
    mode: Optional[Literal["online", "offline", "disabled"]] = None
    """`offline` writes the wandb run into the run folder for a later `wandb sync` (no network); `disabled` logs
    nothing to wandb; unset = the WANDB_MODE environment variable, else online."""

    @field_validator("project", "entity")
    @classmethod
    def _wandb_name(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (not value or len(value) > WANDB_NAME_MAX
                                  or any(c in value for c in WANDB_NAME_FORBIDDEN)):
            raise ValueError(f"must be a wandb name: 1 to {WANDB_NAME_MAX} characters, none of "
                             f"{' '.join(WANDB_NAME_FORBIDDEN)}")
        return value

    @model_validator(mode="after")
    def _needs_project(self) -> "WandbConfig":
        if self.project is None:
            for key in ("entity", "name", "mode"):
                if getattr(self, key) not in (None, "disabled"):
                    raise ValueError(f"log.wandb.{key}: wandb logs only when a project is set; set "
                                     f"log.wandb.project too (or leave log.wandb.{key} out)")
        return self


class LogConfig(_Section):
    """Where a run's numbers go besides metrics.csv and steps.jsonl (TensorBoard: train.tensorboard)."""

    wandb: WandbConfig = WandbConfig()

class ExperimentConfig(_Section):
    name: str = "experiment"
    """Run folder name (a plain folder name: no '/', not starting with '.'); the run lives in `output_dir/name`."""
    method: str = "spaced_online_kd"
    """A method of the method table (`fastkd.config.methods`; the error for any other value lists them). The online-KD
    family uses `kd` (+ `model.teacher`); self KD uses `kd` (interval, temperature, alpha = the reference's
    loss_coefficient, beta = feature_loss_coefficient); EMA uses `ema`; dropout uses `dropout`."""
    semantics: Literal["reference", "standard"] = "reference"
    """`reference` = what the authors' code computes (docs/semantics.md R1-R26); `standard` = textbook definitions."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed of initialization, shuffling and augmentation."""
    output_dir: str = Field("runs", min_length=1)
    """Parent folder of the run folder `output_dir/name`."""
    init_from: Optional[str] = None
    """Start teacher/student from this checkpoint (fastkd or reference key layout)."""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    kd: KDConfig = KDConfig()
    ema: EMAConfig = EMAConfig()
    dropout: DropoutConfig = DropoutConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    vit: ViTConfig = ViTConfig()
    log: LogConfig = LogConfig()

    @field_validator("method")
    @classmethod
    def _registered_method(cls, method: str) -> str:
        names = method_names()
        if method not in names:
            # Reported like a Literal choice: "method: 'x' is not allowed; choose one of 'no_kd', ... or '...'".
            quoted = [repr(name) for name in names]
            expected = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return method

    @field_validator("name")
    @classmethod
    def _plain_folder_name(cls, name: str) -> str:
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            raise ValueError("must be a plain folder name (not empty, no '/', not starting with '.'), e.g. name=run1; "
                             "use output_dir=... to choose where it goes")
        return name

    @model_validator(mode="after")
    def _spacing_is_positive(self) -> "ExperimentConfig":
        spec = get_method(self.method)
        if spec.spacing is not None:
            section, key = spec.spacing.split(".")
            if getattr(getattr(self, section), key) == 0:
                raise ValueError(f"{spec.spacing}: {self.method} needs {spec.spacing} > 0 (use method: "
                                 f"{spec.unspaced} for 0)")
        return self
