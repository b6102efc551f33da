"""Training loops with the reference code's hot-path structure (docs/semantics.md §10), one per method, for `fastkd
bench`.

Each loop owns its models, a DataLoader of per-sample PIL transforms and its optimizers; `train_epoch()` runs one
epoch exactly as the reference script would (fp32, NCHW, eager, host-side replay buffers, unfused losses,
`.item()` every step) and returns the images and iterations done. `buffer_peak_bytes` is the largest replay buffer
held. See bench/README.md for every deliberate difference from the reference scripts.
"""

from .common import EpochResult, StepLog
from .data import CifarPickleDataset, train_loader, train_transform
from .dropout import ReferenceDropoutResNet, SpacedDropout
from .ema import SpacedEMA, ema_interval, ema_update
from .online_kd import SpacedOnlineKD
from .self_kd import SpacedSelfKD, self_kd_loss, soft_cross_entropy
from .vit import SpacedViTKD, vit_train_loader

__all__ = [
    "CifarPickleDataset", "EpochResult", "ReferenceDropoutResNet", "SpacedDropout", "SpacedEMA", "SpacedOnlineKD",
    "SpacedSelfKD", "StepLog", "ema_interval", "ema_update", "self_kd_loss", "soft_cross_entropy", "train_loader",
    "train_transform", "SpacedViTKD", "vit_train_loader",
]
