"""Typed experiment schema: one YAML file per experiment, `section.key=value` overrides, one-line errors.

Run ``python -m fastkd.config FILE [key=value ...]`` to print the resolved config.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A bad config file, key or value; the message is one line meant for the user."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    dataset: Literal["digits", "cifar10", "cifar100", "tiny_imagenet"] = "digits"
    """Which data set; `digits` is scikit-learn's bundled set resized to 32x32 RGB (no download)."""
    root: Optional[str] = None
    """Folder holding `cifar-10-batches-py/`, `cifar-100-python/` or `tiny-imagenet-200/` (or that folder itself)."""
    augment: Literal["default", "none"] = "default"
    """`default` = the method's reference recipe; `none` = normalize only (for exact comparisons)."""
    shuffle: bool = True
    """Shuffle the training set each epoch (seeded); `false` walks it in order."""
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(512, ge=1)
    pipeline: Literal["auto", "torch", "dali"] = "auto"
    """Augmentation backend: `auto` picks DALI on CUDA when installed, else the device-resident torch pipeline."""
    test_fraction: float = Field(0.2, gt=0, lt=1)
    """Held-out share for `digits` (the other data sets ship their own test split)."""
    cache_dir: Optional[str] = None
    """Where decoded Tiny-ImageNet arrays are cached (default: `<root>/.fastkd-cache`)."""


class ModelConfig(_Section):
    teacher: str = "resnet18"
    student: str = "resnet18"
    downsample_factor: float = Field(1.0, gt=0)
    """Teacher width divisor d (widths int(w/sqrt(d))); as in the reference only a resnet18 teacher gets it."""
    student_downsample_factor: float = Field(1.0, gt=0)
    """fastkd extension: width divisor for the student, and for the one model of self KD, EMA and dropout (the
    reference always builds them at full width)."""


class KDConfig(_Section):
    interval: float = Field(1.0, ge=0)
    """Spacing s in epochs: the teacher runs I = int(L*s) iterations ahead of the student (0 = online)."""
    temperature: float = Field(3.0, gt=0)
    alpha: float = Field(0.3, ge=0, le=1)
    """Weight of the soft term: loss = (1-alpha)*CE + alpha*soft + beta*feature."""
    beta: float = Field(0.03, ge=0)
    feature_loss: Literal["dist", "mse", "l1", "smoothl1", "none"] = "dist"
    """`dist` = the reference's unsquared torch.dist; under `semantics: standard` the default becomes `mse`."""


class EMAConfig(_Section):
    decay: float = Field(0.999, ge=0, lt=1)
    """EMA decay d: ema <- d*ema + (1-d)*param (the reference's `-alpha`)."""
    interval: float = Field(1.0, ge=0)
    """Spacing s in epochs: update every int(s*L) iterations; 0 = every step; > 500 = random intervals (spec 5)."""


class DropoutConfig(_Section):
    op: Literal["standard", "max"] = "max"
    """Which dropout op sits after each of the 4 ResNet stages: inverted dropout, or MaxDropout (spec 2.4)."""
    rate: float = Field(0.3, ge=0, le=1)
    """Peak drop rate p (the reference's `--drop`)."""
    space: float = Field(1.0, ge=0)
    """Period in epochs of p_t = p*|sin(pi*t/S)|, S = int(space*L); S >= 500 iterations = random rates (spec 6).
    It also spaces the `cutout_input` box under either method (0 = constant box), as the reference's --space."""
    cutout_input: bool = False
    """Also cut one box out of every training batch (the reference's `--cutout_input`, spaced length l_t)."""
    length: int = Field(16, ge=0)
    """Cutout box side for `cutout_input`."""


class OptimConfig(_Section):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "cosine", "multistep"] = "constant"
    """The reference's online KD keeps the LR constant (its MultiStepLR is never stepped)."""
    milestones: list[int] = [60, 120, 160]
    gamma: float = Field(0.2, gt=0)


class TrainConfig(_Section):
    epochs: int = Field(80, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """`auto` = bf16 autocast on CUDA, fp32 on CPU (bf16 is slower than fp32 on CPUs without avx512_bf16)."""
    compile: Literal["auto", "on", "off"] = "auto"
    """`auto` = torch.compile on CUDA only (on CPU it did not measure faster here)."""
    channels_last: Union[bool, Literal["auto"]] = "auto"
    """`auto` = on for CUDA; on CPU measured once at start (forward+backward of the models in both layouts): on
    this 2-core CPU channels_last is ~1.5x faster for full-width ResNet-18 but ~7x slower for narrow ones (batch
    norm). `deterministic: true` resolves `auto` to off on CPU so repeated runs take the same kernels."""
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
    max_steps: Optional[int] = Field(None, ge=1)
    """Stop (with a checkpoint) after this many global iterations; for smoke tests and exact-resume checks."""
    progress: bool = True
    tensorboard: bool = True
    """Also log to TensorBoard when it is installed."""


METHODS = ("no_kd", "online_kd", "spaced_online_kd", "offline_kd", "self_kd", "spaced_self_kd", "ema", "spaced_ema",
           "dropout", "spaced_dropout")


class ExperimentConfig(_Section):
    name: str = "experiment"
    method: Literal["no_kd", "online_kd", "spaced_online_kd", "offline_kd", "self_kd", "spaced_self_kd", "ema",
                    "spaced_ema", "dropout", "spaced_dropout"] = "spaced_online_kd"
    """The online-KD family uses `kd` (+ `model.teacher`); self KD uses `kd` (interval, temperature, alpha = the
    reference's loss_coefficient, beta = feature_loss_coefficient); EMA uses `ema`; dropout uses `dropout`."""
    semantics: Literal["reference", "standard"] = "reference"
    """`reference` = what the authors' code computes, quirks included; `standard` = textbook definitions."""
    seed: int = 0
    output_dir: str = "runs"
    init_from: Optional[str] = None
    """Start teacher/student from this checkpoint (fastkd or reference key layout)."""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    kd: KDConfig = KDConfig()
    ema: EMAConfig = EMAConfig()
    dropout: DropoutConfig = DropoutConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _method_matches_interval(self) -> "ExperimentConfig":
        if self.method == "spaced_online_kd" and self.kd.interval == 0:
            raise ValueError("kd.interval: spaced_online_kd needs kd.interval > 0 (use method: online_kd for 0)")
        if self.method == "spaced_self_kd" and self.kd.interval == 0:
            raise ValueError("kd.interval: spaced_self_kd needs kd.interval > 0 (use method: self_kd for 0)")
        if self.method == "spaced_dropout" and self.dropout.space == 0:
            raise ValueError("dropout.space: spaced_dropout needs dropout.space > 0 (the reference divides by zero; "
                             "use method: dropout for a constant rate)")
        return self


def _format_error(source: str, err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        return f"{source}: unknown key '{key}' (check the spelling; `python -m fastkd.config` prints every key)"
    if kind == "literal_error":
        allowed = err.get("ctx", {}).get("expected", "")
        return f"{source}: {key}: {value!r} is not allowed; choose one of {allowed}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{source}: {key}: {msg} (got {value!r})" if kind != "value_error" else f"{source}: {msg}"


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.epochs=10")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings (values parsed as YAML scalars) onto a nested dict."""
    for text in overrides:
        path, value = _parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return raw


def validate(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc.errors()[0])) from None


def load_config(path: str | Path | None, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment file (None = all defaults), apply overrides, validate."""
    raw: dict[str, Any] = {}
    source = "overrides"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return validate(apply_overrides(raw, list(overrides)), source)


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = load_config(args[0] if args and "=" not in args[0] else None,
                          [a for a in args if "=" in a])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(dump_config(cfg), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
