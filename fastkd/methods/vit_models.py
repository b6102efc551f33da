"""The ViT family's models and AdamW parameter groups (docs/semantics.md §3.4, §5.4): a student and a teacher of
the student's own architecture, built as the reference's wrapper builds them, and refused at image sizes the patch
embedding would crop."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ..config import ExperimentConfig, ViTConfig
from ..engine.method import OptimizerGroup
from ..engine.steps import decay_param_groups
from ..errors import ConfigError, first_line
from ..models import create_model
from ..reference.keys import init_weights

NO_DECAY_NAMES = ("cls_token", "pos_embed", "dist_token")
"""Parameters the reference keeps out of weight decay by name (besides 1-D parameters and biases)."""


def build_vit_models(cfg: ExperimentConfig, num_classes: int, mode: str) -> dict[str, nn.Module]:
    """Student and (except base) a teacher of the same architecture. A DeiT KD student carries the distillation
    token and head; a DeiT teacher is the plain one-token DeiT the wrapper reduces it to."""
    name, vit = cfg.model.student, cfg.vit
    image_size = cfg.data.image_size or 224
    distilled = {"distilled": True} if name == "deit_tiny" and mode != "base" else {}
    student = _vit(name, num_classes, image_size, vit, **distilled)
    if mode == "base":
        return {"student": student}
    teacher = _vit(name, num_classes, vit.teacher_img_size or image_size, vit)
    if mode == "offline":
        init_weights(vit.teacher_weights, {"student": teacher})
        teacher.requires_grad_(False)
    return {"teacher": teacher, "student": student}


def vit_optimizer_groups(models: dict[str, nn.Module], weight_decay: float, shared: bool,
                         spaced: bool) -> list[OptimizerGroup]:
    """The AdamW parameter groups (no decay for 1-D params, biases, tokens and position embeddings): one group
    over every trained model when `shared` (the reference's online and spaced modes), one per model otherwise."""
    trained = [name for name, model in models.items() if any(p.requires_grad for p in model.parameters())]
    if shared:
        trained.sort(key=lambda name: name != "teacher")  # the teacher steps every iteration: it leads the LR
        return [OptimizerGroup(tuple(trained), decay_param_groups([models[name] for name in trained], weight_decay,
                                                                  NO_DECAY_NAMES))]
    # The LR follows the epoch even when a spacing longer than an epoch leaves one without a student step.
    return [OptimizerGroup((name,), decay_param_groups([models[name]], weight_decay, NO_DECAY_NAMES),
                           schedule_every_epoch=name == "student" and spaced)
            for name in trained]


def _vit(name: str, num_classes: int, image_size: int, vit: ViTConfig, **extra: Any) -> nn.Module:
    """A registered ViT at `image_size` with the configured drop path; vit.model_args may shrink or override."""
    kwargs = {"num_classes": num_classes, "img_size": image_size, "drop_path_rate": vit.drop_path_rate, **extra,
              **{key: tuple(value) if isinstance(value, list) else value for key, value in vit.model_args.items()}}
    try:
        model = create_model(name, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"vit.model_args: {name} does not take these arguments ({exc}); use its constructor's "
                          "arguments, e.g. depth") from None
    except (ValueError, AssertionError, RuntimeError, ZeroDivisionError) as exc:  # the constructor's own checks
        raise ConfigError(f"{name} cannot be built at image size {image_size} with vit.model_args="
                          f"{dict(vit.model_args)} ({type(exc).__name__}: {first_line(exc)}); change data.image_size "
                          "or vit.model_args (e.g. embed_dim divisible by num_heads, depth >= 1)") from None
    _check_patches(name, model, image_size)
    return model


def _check_patches(name: str, model: nn.Module, image_size: int) -> None:
    """Refuse an image size the patch embedding would crop (a 40-px image has 2x2 whole 16-px patches, its last 8
    rows and columns silently dropped) or cannot cover at all."""
    embed = getattr(model, "patch_embed", None)
    patch = getattr(embed, "patch_size", None)
    if patch is None:
        return
    side = patch[0] if isinstance(patch, (tuple, list)) else int(patch)
    overlapping = type(embed).__name__ != "PatchEmbed"  # PiT's convolutional embedding strides by half a patch
    if image_size < side or (not overlapping and image_size % side):
        raise ConfigError(f"data.image_size={image_size}: {name} cuts images into {side}-px patches, so it needs a "
                          f"multiple of {side} (e.g. {max(side, image_size - image_size % side)}); fastkd refuses "
                          "rather than crop")
