"""What `fastkd bench` runs: presets (sizes per method, rounds, ceiling settings) and the method table (each
row's settings and the reference script it is measured against; what each method is comes from the method
registry, fastkd.config.methods)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..config.methods import MethodSpec, get_method
from ..errors import UsageError

NUM_CLASSES = 100


class BenchOptionError(UsageError):
    """A bad `fastkd bench` option; the message is one line naming it and the valid choices (the CLI exits 2)."""


@dataclass(frozen=True)
class Scale:
    """How big one round (= one epoch) of a method is."""

    batch_size: int
    train_images: int
    """N: L = ceil(N / batch_size) iterations per epoch."""
    width_divisor: float = 1.0
    """downsample_factor d of the CIFAR ResNets (widths int(w / sqrt(d))); 1 = the reference's full width."""
    image_size: int | None = None
    """ViT rows: the side the images are cropped/resized to (`data.image_size`; the reference's 224). None for
    the CIFAR ResNets, which train at 32 px; a ViT scale gets no ResNet-18 ceiling."""
    depth: int | None = None
    """ViT rows: transformer blocks (`vit.model_args={depth: ...}`); None = the architecture's own (DeiT-Ti: 12)."""

    @property
    def iters_per_epoch(self) -> int:
        return -(-self.train_images // self.batch_size)


@dataclass(frozen=True)
class KernelSizes:
    """The kernel micro-benchmarks of a preset: fused KD loss vs the unfused ops, flat EMA vs a per-parameter loop
    and vs `torch._foreach_lerp_`."""

    kd_shapes: tuple[tuple[int, int], ...]
    """(batch, classes) of the KD-loss forward+backward."""
    ema_models: tuple[str, ...]
    """Model names (fastkd.models registry) whose parameters the EMA update averages."""
    repeats: int
    """Timed calls per implementation (after as many warm-up calls); the median counts."""


@dataclass(frozen=True)
class ProjectionSizes:
    """`fastkd bench --projection` (fastkd.bench.projection): the data and models the paper runs' steps are timed
    on, and the shorter spacing used while timing."""

    cnn: Scale
    vit: Scale
    cnn_interval: float
    """kd.interval while timing: a replay every int(L * s) teacher steps."""
    vit_interval: float
    """vit.interval while timing: a replay every ceil(L * s) teacher steps."""
    test_images: int


@dataclass(frozen=True)
class AuthorsScale:
    """`fastkd bench --reference-repo`: the size of the authors' scripts' runs (fastkd.bench.authors). Each run is a
    fresh process capped at `iterations` training iterations of an epoch of L = train_images / batch_size (the cap
    stays below L, so no run reaches its evaluation); images/s is timed over iterations warmup_iterations + 1 ..
    iterations, which hold the same number of replay/EMA events on both sides at `interval`."""

    batch_size: int
    train_images: int
    test_images: int
    interval: float
    """The spacing flag of every row (-interval_rate, --interval_rate, -interval, --space, SPACE_INTERVAL)."""
    warmup_iterations: int
    iterations: int
    rounds: int
    warmup_rounds: int
    vit_image_size: int
    """MODEL.IMG_SIZE of the DeiT-Ti row (the configs' 224 on a GPU)."""


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    device: str
    rounds: int
    warmup_rounds: int
    workers: int
    """DataLoader workers of the reference side (the reference scripts use 4)."""
    persistent_workers: bool
    """Keep the reference's workers between epochs. The reference re-spawns them every epoch; in epochs of a few
    iterations that start-up would weigh tens of times more than in a 391-iteration CIFAR-100 epoch."""
    scales: dict[str, Scale]
    test_images: int
    matmul_size: int
    ceiling_steps: int
    """Timed steps per setting of the ceiling measurements (the fastest counts)."""
    sweep_threads: bool = True
    """Try 1 and all CPU threads for the ResNet-18 ceiling (off: the current thread count only)."""
    kernels: KernelSizes | None = None
    """Kernel micro-benchmarks to run after the ceiling (None: none)."""
    projection: ProjectionSizes | None = None
    """Sizes of `--projection` (None: the preset has none)."""
    authors: AuthorsScale | None = None
    """Sizes of `--reference-repo` (None: the preset has none)."""


# ========================================================================================= method table
# The settings of each row (the reference scripts' README values), by config key; the baselines read them back from
# the resolved fastkd config, so both sides always run the same setting.
ONLINE_KD = dict(temperature=3.0, alpha=0.3, beta=0.03)
"""online_KD/train_space.py's kd section (the kernel micro-benchmarks use its T and alpha)."""
SGD = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
SPACED_ONLINE_KD_RATE = 1.0
SELF_KD = dict(interval=1.0, temperature=3.0, alpha=0.3, beta=0.03)
"""self_KD/train.py: kd.alpha and kd.beta are its loss_coefficient (lambda) and feature_loss_coefficient (mu)."""
EMA = dict(interval=0.1, decay=0.999)
DROPOUT = dict(op="standard", rate=0.5, space=1.0)
"""SpacedDropout = inverted dropout (`dropout.op=standard`) at the sine rate."""
VIT = dict(interval=1.0, logit_weight=0.5, temperature=1.0)
"""The reference's DeiT-Ti space_1_0 config (DISTILLATION.LOGIT_WEIGHT, LOGIT_TEMP)."""
ADAMW = dict(name="adamw", lr=5e-4, weight_decay=0.05, schedule="warmup_cosine")
"""The pycls trainer's optimizer (OPTIM.BASE_LR, WEIGHT_DECAY): AdamW with warm-up cosine per epoch."""


@dataclass(frozen=True)
class BenchMethod:
    """One row of the suite: a fastkd method, its reference script and the setting both sides run. What the method
    is (its config section, its unspaced twin, whether it trains a teacher, CNN or ViT) is its MethodSpec in the
    method table (fastkd.config.methods); the row holds only the settings."""

    name: str
    """The fastkd method name (`method:` in a config)."""
    reference_script: str
    setting: str
    section: dict[str, Any]
    """Keys of the method's own config section (MethodSpec.section) and their values."""
    optim: dict[str, Any]
    """optim.* keys and their values."""
    extra: tuple[str, ...] = ()
    """Further overrides (the ViT's student architecture and drop_last)."""
    has_replay_buffer: bool = False
    """Both sides keep a replay buffer, whose peak size the row reports."""

    @property
    def spec(self) -> MethodSpec:
        return get_method(self.name)

    def fastkd_overrides(self, scale: Scale) -> list[str]:
        """The row's config overrides at `scale`: method, extra, section, optimizer, then the size (a CNN method's
        nets at the scale's width divisor, the teacher's too when it has one; a ViT's image size and depth)."""
        spec = self.spec
        if spec.family == "vit_kd":
            size = [f"data.image_size={scale.image_size}"]
            size += [] if scale.depth is None else [f"vit.model_args={{depth: {scale.depth}}}"]
        else:
            teacher = ["downsample_factor"] if "downsample_factor" in spec.model_keys else []
            size = [f"model.{key}={scale.width_divisor}" for key in (*teacher, "student_downsample_factor")]
        return [f"method={self.name}", *self.extra, *_assignments(spec.section, self.section),
                *_assignments("optim", self.optim), *size]

    def unspaced_twin(self, setting: str) -> BenchMethod:
        """The row of the method's unspaced twin (MethodSpec.unspaced): the same script and settings at spacing 0."""
        spec = self.spec
        spacing = spec.spacing.removeprefix(f"{spec.section}.")
        return replace(self, name=spec.unspaced, setting=setting, section={**self.section, spacing: 0.0})


def _assignments(section: str, values: dict[str, Any]) -> list[str]:
    """`section.key=value` overrides, booleans as YAML's true/false."""
    return [f"{section}.{key}={str(value).lower() if isinstance(value, bool) else value}"
            for key, value in values.items()]


_SPACED_ONLINE_KD = BenchMethod("spaced_online_kd", "online_KD/train_space.py", f"s = {SPACED_ONLINE_KD_RATE} (I = L)",
                                {"interval": SPACED_ONLINE_KD_RATE, **ONLINE_KD}, SGD, has_replay_buffer=True)
BENCH_METHODS: dict[str, BenchMethod] = {m.name: m for m in (
    _SPACED_ONLINE_KD,
    _SPACED_ONLINE_KD.unspaced_twin("s = 0 (online)"),
    BenchMethod("spaced_self_kd", "self_KD/train.py", f"s = {SELF_KD['interval']} (I = L)", SELF_KD,
                {"lr": SGD["lr"]}, has_replay_buffer=True),
    BenchMethod("spaced_ema", "online_KD/train_EMA.py", f"s = {EMA['interval']}, d = {EMA['decay']}", EMA,
                {"lr": SGD["lr"]}),
    BenchMethod("spaced_dropout", "dropout/train.py",
                f"SpacedDropout p = {DROPOUT['rate']}, space = {DROPOUT['space']}", DROPOUT,
                {"lr": SGD["lr"], "nesterov": True}),  # nesterov SGD as dropout/train.py
    BenchMethod("vit_spaced_kd", "vit/pycls/core/trainer.py (DeiT-Ti space_1_0)", f"DeiT-Ti, s = {VIT['interval']}",
                VIT, ADAMW, extra=("model.student=deit_tiny", "data.drop_last=true")),
)}


def _same_scale(scale: Scale, **overrides: Scale) -> dict[str, Scale]:
    """`scale` for every CNN row (the ViT rows' scales are overrides: they have an image size), then `overrides`."""
    scales = {name: scale for name, row in BENCH_METHODS.items() if row.spec.family != "vit_kd"}
    scales.update(overrides)
    return scales


PRESETS: dict[str, Preset] = {
    "cpu-small": Preset(
        name="cpu-small",
        description="this 2-core CPU: ResNet-18s at width/4, batch 128, 5 iterations per epoch (EMA: 10; self KD: "
                    "width/8, batch 64; ViT: 4-block DeiT-Ti at 32 px, batch 32); 3 rounds; < 10 min",
        device="cpu", rounds=3, warmup_rounds=1, workers=4, persistent_workers=True,
        scales=_same_scale(Scale(128, 640, 16.0), spaced_self_kd=Scale(64, 320, 64.0),
                           spaced_ema=Scale(128, 1280, 16.0), vit_spaced_kd=Scale(32, 128, image_size=32, depth=4)),
        test_images=100, matmul_size=2048, ceiling_steps=4,
        # L = 10, I = 4: iterations 5-8 hold one replay; full-width nets (what the scripts build) at batch 16
        authors=AuthorsScale(batch_size=16, train_images=160, test_images=16, interval=0.4, warmup_iterations=4,
                             iterations=8, rounds=3, warmup_rounds=1, vit_image_size=32),
    ),
    "gpu": Preset(
        name="gpu",
        description="full size on CUDA: CIFAR-100-sized epochs (50000 images, L = 391) of full-width ResNet-18s at "
                    "batch 128; 3 rounds",
        device="cuda", rounds=3, warmup_rounds=1, workers=4, persistent_workers=False,
        scales=_same_scale(Scale(128, 50000, 1.0), vit_spaced_kd=Scale(128, 49920, image_size=224)),
        test_images=1000, matmul_size=8192, ceiling_steps=20,
        kernels=KernelSizes(kd_shapes=((128, 100), (256, 1000), (128, 21843)), ema_models=("resnet18", "resnet50"),
                            repeats=100),
        projection=ProjectionSizes(cnn=Scale(128, 50000, 1.0), vit=Scale(128, 50000, image_size=224),
                                   cnn_interval=1.0, vit_interval=1.0, test_images=10000),
        authors=AuthorsScale(batch_size=128, train_images=128 * 100, test_images=1000, interval=0.25,
                             warmup_iterations=25, iterations=75, rounds=3, warmup_rounds=1, vit_image_size=224),
    ),
    "gpu-quick": Preset(
        name="gpu-quick",
        description="the GPU check's run on CUDA (bench/gpu_check.sh, ~3 min planned): full-width ResNet-18s at "
                    "batch 128, 30 iterations per epoch; 2 rounds; kernel micro-benchmarks",
        device="cuda", rounds=2, warmup_rounds=1, workers=4, persistent_workers=True,
        scales=_same_scale(Scale(128, 3840, 1.0), vit_spaced_kd=Scale(128, 1280, image_size=224)),
        test_images=256, matmul_size=8192, ceiling_steps=10,
        kernels=KernelSizes(kd_shapes=((128, 100), (256, 1000), (128, 21843)), ema_models=("resnet18", "resnet50"),
                            repeats=50),
        # replays every 100 (CNN) / 39 (ViT) steps while timing, on full-size data
        projection=ProjectionSizes(cnn=Scale(128, 50000, 1.0), vit=Scale(128, 50000, image_size=224),
                                   cnn_interval=0.256, vit_interval=0.1, test_images=10000),
        # L = 40, I = 10: iterations 11-30 hold two replays
        authors=AuthorsScale(batch_size=128, train_images=128 * 40, test_images=256, interval=0.25,
                             warmup_iterations=10, iterations=30, rounds=2, warmup_rounds=1, vit_image_size=224),
    ),
    "test": Preset(
        name="test",
        description="a seconds-long smoke run for the test suite (tiny nets, 1 round)",
        device="cpu", rounds=1, warmup_rounds=1, workers=2, persistent_workers=True,
        scales=_same_scale(Scale(16, 48, 64.0), vit_spaced_kd=Scale(16, 48, image_size=32, depth=2)),
        test_images=16, matmul_size=256, ceiling_steps=1, sweep_threads=False,
        kernels=KernelSizes(kd_shapes=((8, 10),), ema_models=("resnet18",), repeats=2),
        projection=ProjectionSizes(cnn=Scale(16, 64, 64.0), vit=Scale(16, 64, image_size=32, depth=2),
                                   cnn_interval=0.5, vit_interval=0.5, test_images=16),
        # L = 6, I = 2: iterations 3-4 hold one replay
        authors=AuthorsScale(batch_size=4, train_images=24, test_images=8, interval=0.34, warmup_iterations=2,
                             iterations=4, rounds=1, warmup_rounds=0, vit_image_size=32),
    ),
}
