"""Augmentation recipes of the reference scripts (docs/semantics.md §2.1-2.5): what to apply, never the dataset
statistics."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class Recipe:
    """One training or test transform, applied per sample in this order:

    crop (pad, then a random ``H x W`` window) -> horizontal flip -> rotation -> AutoAugment -> Cutout -> normalize.
    The ViT recipe instead runs random-resized-crop -> flip -> RandAugment -> normalize -> random erasing.
    """

    name: str
    crop_padding: int = 0
    """RandomCrop padding in pixels on every side; 0 means no crop. Offsets are uniform integers in 0..2*padding."""
    crop_fill: int = 0
    """Grey level of the padding (0 online KD, 128 self KD)."""
    hflip: bool = False
    """Flip each sample horizontally with probability 0.5."""
    rotate_degrees: float = 0.0
    """Rotate each sample by an angle uniform in [-d, d] degrees, nearest neighbour, fill 0, output size kept."""
    autoaugment: Literal["cifar10"] | None = None
    """AutoAugment policy (docs/semantics.md §2.4): one of 25 sub-policies per sample, fill 128."""
    cutout_length: int = 0
    """Cutout box side (docs/semantics.md §2.5): one hole per sample, zeroed before normalisation; 0 means off."""
    resized_crop_size: int = 0
    """RandomResizedCrop output side (ViT recipe, docs/semantics.md §2.3); 0 means off."""
    resized_crop_scale: tuple[float, float] = (0.08, 1.0)
    resized_crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    randaugment: str | None = None
    """timm RandAugment config string, e.g. ``"rand-m9-mstd0.5-inc1"``."""
    random_erasing_prob: float = 0.0
    """timm RandomErasing probability (mode "pixel", one box), applied after normalisation."""
    resize: int = 0
    """Deterministic bilinear resize of the whole image to ``resize x resize`` (ViT test transform); 0 means off."""

    @property
    def is_random(self) -> bool:
        """Whether the output depends on the seed (test-time recipes do not)."""
        return bool(
            self.crop_padding
            or self.hflip
            or self.rotate_degrees
            or self.autoaugment
            or self.cutout_length
            or self.resized_crop_size
            or self.randaugment
            or self.random_erasing_prob
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the images this recipe produces from ``height x width`` inputs."""
        if self.resized_crop_size:
            return self.resized_crop_size, self.resized_crop_size
        if self.resize:
            return self.resize, self.resize
        return height, width


_RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(name="none"),
        Recipe(name="online_kd", crop_padding=4, crop_fill=0, hflip=True, rotate_degrees=15.0),
        Recipe(name="tiny_online_kd", crop_padding=4, crop_fill=0, hflip=True),
        Recipe(name="self_kd", crop_padding=4, crop_fill=128, hflip=True, autoaugment="cifar10", cutout_length=16),
        Recipe(
            name="vit",
            resized_crop_size=224,
            hflip=True,
            randaugment="rand-m9-mstd0.5-inc1",
            random_erasing_prob=0.25,
        ),
        Recipe(name="vit_test", resize=224),
    )
}


_DETERMINISTIC_TWINS = {"vit": "vit_test"}


def deterministic_recipe(train_recipe: str) -> str:
    """The recipe for the test set, and for training under ``data.augment: none``: the training recipe's fixed
    resize where it has one (the ViT test transform), else ``"none"`` (normalise only)."""
    return _DETERMINISTIC_TWINS.get(train_recipe, "none")


def available_recipes() -> list[str]:
    """Names accepted by :func:`get_recipe`."""
    return list(_RECIPES)


def get_recipe(name: str, image_size: int | None = None) -> Recipe:
    """The recipe registered under ``name``; an unknown name raises a ValueError listing the valid ones.

    ``image_size`` (``data.image_size``) replaces the output side of the recipes that resize (the ViT ones, 224 in
    the reference) for cheap runs; the other recipes keep their input size and ignore it.
    """
    try:
        recipe = _RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown augmentation recipe {name!r}; choose one of: {', '.join(_RECIPES)}") from None
    if image_size is None:
        return recipe
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
    if recipe.resized_crop_size:
        return replace(recipe, resized_crop_size=image_size)
    if recipe.resize:
        return replace(recipe, resize=image_size)
    return recipe
