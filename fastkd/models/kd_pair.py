"""The online-KD family's models: a teacher and a student in the reference's wrapper layout (docs/semantics.md
§3.1), each refused before training when it is built for another image side than the data set's."""

from __future__ import annotations

import torch.nn as nn

from ..config import DataConfig, ExperimentConfig
from ..data.readers import TINY_SIDE
from ..errors import ConfigError
from .cifar_resnet import StudentNet, TeacherNet
from .registry import create_model, width_divisor


def image_side(data: DataConfig) -> int:
    """The side of the images the models see."""
    if data.dataset in ("imagenet", "imagenet_100"):
        return data.image_size or 224
    return TINY_SIDE if data.dataset == "tiny_imagenet" else 32


def build_kd_pair(cfg: ExperimentConfig, num_classes: int, with_teacher: bool) -> dict[str, nn.Module]:
    """Teacher and student wrappers, or the plain student backbone `with_teacher=False`."""
    student_df = width_divisor(cfg.model.student, cfg.model.student_downsample_factor,
                               "model.student_downsample_factor")
    student = _fits_images(create_model(cfg.model.student, num_classes=num_classes, downsample_factor=student_df),
                           cfg, "model.student")
    if not with_teacher:
        return {"student": student}
    # As in the reference, only a resnet18 teacher receives downsample_factor.
    teacher_df = cfg.model.downsample_factor if cfg.model.teacher == "resnet18" else None
    teacher = TeacherNet(_fits_images(create_model(cfg.model.teacher, num_classes=num_classes,
                                                   downsample_factor=teacher_df), cfg, "model.teacher"))
    return {"teacher": teacher, "student": StudentNet(student, teacher.feature_size)}


def _fits_images(model: nn.Module, cfg: ExperimentConfig, key: str) -> nn.Module:
    """Refuse a fixed-size model (the small CIFAR ViT: a position embedding for 32x32 images) on a data set of
    another image side."""
    size = getattr(model, "image_size", None)
    side = image_side(cfg.data)
    if size is not None and size != side:
        raise ConfigError(f"{key}: {getattr(cfg.model, key.split('.')[1])} takes {size}x{size} images and "
                          f"{cfg.data.dataset} has {side}x{side}; use a CNN (resnet18, mobilenetv2, ...) for it")
    return model
