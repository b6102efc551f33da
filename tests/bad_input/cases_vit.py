"""Bad ViT settings: model arguments the model cannot take, image sizes its patches would crop or cannot cover, a
batch larger than the data with drop_last, and a spacing interval so long that no replay happens. Each is refused
in one line before training starts."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from case import BadInput, tiny_config, write_yaml

TINY_VIT_CONFIG = """\
name: tiny-vit
method: vit_spaced_kd
output_dir: runs
model: {student: deit_tiny}
data: {dataset: digits, image_size: 32, batch_size: 64, eval_batch_size: 360}
vit: {model_args: {depth: 1, embed_dim: 32, num_heads: 2}, teacher_img_size: 32, interval: 1.0}
optim: {warmup_epochs: 0}
train: {epochs: 1, device: cpu, max_steps: 1, progress: false, tensorboard: false}
"""
"""A DeiT-Ti of one block of width 32 at 32 px on the bundled digits (L = 23): valid, one step long."""


def _vit(*overrides: str) -> Callable[[Path], list[str]]:
    def argv(folder: Path) -> list[str]:
        write_yaml(folder, TINY_VIT_CONFIG)
        return ["train", "c.yaml", *overrides]
    return argv


CASES: list[BadInput] = [
    BadInput("vit-image-size-crops-patches", "config", _vit("data.image_size=40"),
             r"data\.image_size=40: deit_tiny cuts images into 16-px patches, so it needs a multiple of 16 \(e\.g\. "
             r"32\); fastkd refuses rather than crop"),
    BadInput("vit-image-size-below-patch", "config", _vit("data.image_size=8"),
             r"data\.image_size=8: deit_tiny cuts images into 16-px patches"),
    BadInput("vit-model-args-width-not-divisible-by-heads", "config",
             _vit("vit.model_args={embed_dim: 30, num_heads: 4}"),
             r"deit_tiny cannot be built at image size 32 with vit\.model_args=.*AssertionError: dim should be "
             r"divisible by num_heads"),
    BadInput("vit-model-args-zero-heads", "config", _vit("vit.model_args={num_heads: 0}"),
             r"cannot be built .*ZeroDivisionError"),
    BadInput("vit-model-args-negative-depth", "config", _vit("vit.model_args={depth: -1}"),
             r"cannot be built .*RuntimeError: number of steps must be non-negative"),
    BadInput("vit-model-args-unknown-argument", "config", _vit("model.student=pvt_tiny"),
             r"vit\.model_args: pvt_tiny does not take these arguments"),
    BadInput("vit-pvt-image-too-small", "config", _vit("model.student=pvt_tiny", "data.image_size=16",
                                                        "vit.teacher_img_size=16", "vit.model_args={}"),
             r"pvt_tiny cannot be built at image size 16 .*ValueError: image size 16 is too small"),
    BadInput("vit-drop-last-batch-larger-than-data", "config", _vit("data.drop_last=true", "data.batch_size=4096"),
             r"data\.batch_size=4096 with data\.drop_last=true: the batch is larger than the training set"),
    BadInput("vit-student-in-a-cnn-method", "config",
             lambda folder: ["train", str(tiny_config(folder)), "model.student=deit_tiny"],
             r"model\.student=deit_tiny: a vision transformer, but spaced_online_kd trains CNNs .*vit_spaced_kd"),
    BadInput("vit-student-in-ema", "config",
             lambda folder: ["train", str(tiny_config(folder)), "method=ema", "model.student=pit_ti"],
             r"model\.student=pit_ti: a vision transformer, but ema trains CNNs"),
    BadInput("vit-interval-without-replay", "config", _vit("vit.interval=1e12"),
             r"vit\.interval=1e\+12: .*more than the run's 23 steps .* so the student would never train"),
]
