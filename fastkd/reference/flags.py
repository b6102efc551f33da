"""The reference scripts' command-line flags, spelled, typed and defaulted as each script spells them.

One table per script (docs/compat.md has the flag-by-flag mapping); the constants the scripts hard-code live
next to them. `fastkd.reference.compat` parses and translates with these tables.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable

SCRIPTS = ("train_space", "train_kd", "ema", "self_kd", "dropout", "run_net", "export")

FASTKD_FLAGS_HELP = """fastkd-only flags (full spelling only; everything else is the reference's):
  --print-config        print the resolved YAML config and exit
  --plan [--json]       print `fastkd plan` of the config and exit
  --data-root DIR       data folder (else self KD's --dataset_path, else $FASTKD_DATA, else ./data);
                        a missing data set is downloaded there, as the reference does
  --semantics standard  textbook semantics instead of the reference's (default: reference)
  --set KEY=VALUE ...   config overrides, e.g. --set train.epochs=1 model.downsample_factor=64
  --init-from PATH      start from a fastkd or reference checkpoint (docs/compat.md)
  --resume              continue the run in <output_dir>/<name>
  --quiet               no progress bar, header or summary table
"""

REFERENCE_WEIGHT_DECAY = 5e-4
REFERENCE_MOMENTUM = 0.9
REFERENCE_MILESTONES = [60, 120, 160]
"""`conf/global_settings.py` MILESTONES, also hard-coded in `dropout/train.py`."""
REFERENCE_GAMMA = 0.2
REFERENCE_LR_DECAY_EPOCHS = 200
"""`conf/global_settings.py` EPOCH: what `-lr_decay` silently switches the online-KD run length to
(docs/semantics.md R5)."""
IMAGENET_MILESTONES = [20, 40, 60]
IMAGENET_LR_DECAY_EPOCHS = 80
"""`conf/global_settings.py` MILESTONES_IMAGENET and EPOCH_IMAGENET: `-lr_decay` with `-dataset imagenet`."""

DEVICE_NOTE = "ignored: fastkd picks the device itself (train.device=auto; --set train.device=cpu forces the CPU)"
GPU_IDS_NOTE = "ignored: fastkd trains on one device it picks itself (train.device); there is no DataParallel"

def finite_float(text: str) -> float:
    """argparse type of the reference's float flags, refusing nan and inf (the reference would train on them)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; give a finite value")
    return value


# ------------------------------------------------------------------------------------------ flag tables
@dataclass(frozen=True)
class Flag:
    """One reference argparse argument, spelled, typed and defaulted exactly as the reference script does."""

    names: tuple[str, ...]
    default: Any = None
    type: Callable[[str], Any] | None = str
    store_true: bool = False
    required: bool = False
    choices: tuple[str, ...] | None = None
    effect: str | None = None
    """Set for flags without a fastkd counterpart: the one line printed when the flag is given."""

    @property
    def dest(self) -> str:
        long = next((n for n in self.names if n.startswith("--")), self.names[0])
        return long.lstrip("-").replace("-", "_")

    def reference_default(self) -> Any:
        """argparse converts string defaults with `type` (e.g. `-downsample_factor default='1.0'` -> 1.0)."""
        if isinstance(self.default, str) and self.type is not None:
            return self.type(self.default)
        return self.default


def no_effect(why: str) -> str:
    """The note for a flag the reference parses but never acts on."""
    return f"no effect in the reference either ({why})"


ONLINE_KD_FLAGS = (
    Flag(("-net_teacher",), "resnet18", required=True),
    Flag(("-net_student",), "resnet18", required=True),
    Flag(("-gpu",), True, store_true=True, effect=DEVICE_NOTE),
    Flag(("-b",), 128, int),
    Flag(("-warm",), 1, int, effect=no_effect("its warm-up scheduler is commented out")),
    Flag(("-lr",), 0.1, finite_float),
    Flag(("-lr_decay",), False, store_true=True),
    Flag(("-epoch",), 80, int),
    Flag(("-temp",), 3.0, finite_float),
    Flag(("-alpha",), 0.3, finite_float),
    Flag(("-beta",), 0.03, finite_float),
    Flag(("-interval_rate",), 1.0, finite_float),
    Flag(("-downsample_factor",), "1.0", finite_float),
    Flag(("-wandb_entity",), "none"),
    Flag(("-wandb_project",), "spaced_distillation"),
    Flag(("-feature_loss",), "dist"),
    Flag(("-dataset",), "cifar100"),
    Flag(("-gpu_ids",), "0,1", effect=GPU_IDS_NOTE),
    Flag(("-optimizer",), "SGD"),
)

EMA_FLAGS = (
    Flag(("-net",), "resnet18", required=True),
    Flag(("-gpu",), True, store_true=True, effect=DEVICE_NOTE),
    Flag(("-b",), 128, int),
    Flag(("-lr",), 0.01, finite_float),
    Flag(("-lr_decay",), False, store_true=True),
    Flag(("-epoch",), 80, int),
    Flag(("-alpha",), 0.999, finite_float),
    Flag(("-interval",), 1, finite_float),
    Flag(("-downsample_factor",), "1.0", finite_float,
         effect=no_effect("train_EMA.py always builds the network at full width")),
    Flag(("-wandb_entity",), "sgl0117"),
    Flag(("-wandb_project",), "SKD_V2"),
    Flag(("-dataset",), "cifar100"),
    Flag(("-gpu_ids",), "0", effect=GPU_IDS_NOTE),
    Flag(("-optimizer",), "SGD"),
)

SELF_KD_FLAGS = (
    Flag(("--model",), "resnet18"),
    Flag(("--dataset",), "cifar100"),
    Flag(("--epoch",), 80, int),
    Flag(("--loss_coefficient",), 0.3, finite_float),
    Flag(("--feature_loss_coefficient",), 0.03, finite_float),
    Flag(("--dataset_path",), "data"),
    Flag(("--autoaugment",), True, bool),  # type=bool: any non-empty string is True (docs/semantics.md §9)
    Flag(("--temperature",), 3.0, finite_float),
    Flag(("--batchsize",), 128, int),
    Flag(("--init_lr",), 0.01, finite_float),
    Flag(("--wandb_entity",), "none"),
    Flag(("--wandb_project",), "SKD"),
    Flag(("--interval_rate",), 1.0, finite_float),
    Flag(("--gpu_ids",), "0,1", effect=GPU_IDS_NOTE),
)

# Which networks each reference script builds (its own model tables); whether fastkd has one is the model
# registry's answer (fastkd.models.is_model, with the family's registry prefix).
ONLINE_KD_REFERENCE_NETS = ("resnet18", "resnet50", "resnet101", "resnet152", "mobilenet", "mobilenetv2",
                            "shufflenet", "shufflenetv2", "vit")
ONLINE_KD_REFERENCE_VGG = ("vgg11", "vgg13", "vgg16", "vgg19")
"""Built by models/nets.py with a keyword the VGG builders do not take: the reference crashes."""
ONLINE_KD_SHUFFLENETS = ("shufflenet", "shufflenetv2")
ONLINE_KD_STUDENT_OWN_NAMES = ("resnet18", "resnet50", "resnet101", "resnet152", "mobilenet", "mobilenetv2")
"""The -net_student names models/nets.py's student builder tests before it tests -net_teacher for the shufflenets."""
ONLINE_KD_REGISTRY_NAMES = {"vit": "vit_cifar"}
"""Reference -net_* names registered under another name in fastkd (the others are the same)."""
ONLINE_KD_VIT_DATASETS = ("cifar100",)
"""The fastkd data sets models/nets.py builds its ViT for (it has one more, imagenet; others build nothing)."""
EMA_REFERENCE_NETS = ("resnet18", "resnet50", "resnet101")
SELF_KD_REFERENCE_NETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wideresnet50",
                          "wideresnet101", "resnext101_32x8d")
"""self_KD/train.py's --model branches (resnext50_32x4d builds a resnet18, docs/semantics.md §9)."""
SELF_KD_REGISTRY_PREFIX = "selfkd_"
DROPOUT_REGISTRY_PREFIX = "dropout_"
DROPOUT_MODEL_TITLES = {"wideresnet": "WideResNet with MaxDropout"}

DROPOUT_DATASETS = ("cifar10", "cifar100", "svhn", "tiny_imagenet", "cub200")
DROPOUT_MODELS = ("resnet18", "resnet50", "resnet101", "wideresnet")
DROPOUT_METHODS = ("StandardDropout", "MaxDropout", "SpacedDropout", "MaxSpacedDropout")
UNSPACED_DROPOUT = {"SpacedDropout": "StandardDropout", "MaxSpacedDropout": "MaxDropout"}

DROPOUT_FLAGS = (
    Flag(("--dataset", "-d"), "cifar10", choices=DROPOUT_DATASETS),
    Flag(("--model", "-a"), "resnet18", choices=DROPOUT_MODELS),
    Flag(("--batch_size",), 128, int),
    Flag(("--epochs",), 80, int),
    Flag(("--learning_rate",), 0.01, finite_float),
    Flag(("--data_augmentation",), False, store_true=True,
         effect=no_effect("its transforms are fixed; the flag only appears in commented-out code")),
    Flag(("--cutout",), False, store_true=True,
         effect=no_effect("the per-image Cutout transform is never attached; only the run name changes")),
    Flag(("--cutout_input",), False, store_true=True),
    Flag(("--erasing_input",), False, store_true=True),
    Flag(("--n_holes",), 1, int),
    Flag(("--length",), 16.0, finite_float),
    Flag(("--no-cuda",), False, store_true=True, effect=DEVICE_NOTE),
    Flag(("--seed",), 0, int),
    Flag(("--run",), 0, int, effect=no_effect("dropout/train.py never reads it")),
    Flag(("--drop",), 0.3, finite_float),
    Flag(("--drop_method",), "MaxDropout", choices=DROPOUT_METHODS),
    Flag(("--space",), 10.0, finite_float),
    Flag(("--gpu_ids",), "0", effect=GPU_IDS_NOTE),
    Flag(("--wandb_entity",), "sgl0117"),
    Flag(("--wandb_project",), "SKD_V2"),
    Flag(("--lr_decay",), False, store_true=True),
)

