"""The self-KD reference's per-image PIL augmentations: CIFAR10Policy (docs/semantics.md §2.4) and Cutout
(docs/semantics.md §2.5).

The sub-policy table and the magnitude ranges are read from `fastkd.pipelines.policies` (plain data); the image
operations here are the PIL ones the reference calls, one image at a time, with Python's `random`.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from fastkd.pipelines.policies import CIFAR10_POLICY, unsigned_magnitude

FILL = (128, 128, 128)


def _sign() -> int:
    return random.choice([-1, 1])


def _rotate(img: Image.Image, degrees: float) -> Image.Image:
    rotated = img.convert("RGBA").rotate(degrees)
    return Image.composite(rotated, Image.new("RGBA", rotated.size, (128,) * 4), rotated).convert(img.mode)


def _apply(img: Image.Image, op: str, magnitude: float) -> Image.Image:
    if op == "shear_x":
        return img.transform(img.size, Image.AFFINE, (1, magnitude * _sign(), 0, 0, 1, 0), Image.BICUBIC,
                             fillcolor=FILL)
    if op == "shear_y":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, magnitude * _sign(), 1, 0), Image.BICUBIC,
                             fillcolor=FILL)
    if op == "translate_x":
        return img.transform(img.size, Image.AFFINE, (1, 0, magnitude * _sign(), 0, 1, 0), fillcolor=FILL)
    if op == "translate_y":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, magnitude * _sign()), fillcolor=FILL)
    if op == "rotate":
        return _rotate(img, magnitude)
    if op in ("color", "contrast", "sharpness", "brightness"):
        enhancer = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast,
                    "sharpness": ImageEnhance.Sharpness, "brightness": ImageEnhance.Brightness}[op]
        return enhancer(img).enhance(1 + magnitude * _sign())
    if op == "posterize":
        return ImageOps.posterize(img, int(magnitude))
    if op == "solarize":
        return ImageOps.solarize(img, magnitude)
    if op == "autocontrast":
        return ImageOps.autocontrast(img)
    if op == "equalize":
        return ImageOps.equalize(img)
    if op == "invert":
        return ImageOps.invert(img)
    raise ValueError(f"unknown AutoAugment op {op!r}")


class CIFAR10Policy:
    """One of the 25 sub-policies per image, chosen uniformly; each applies op1 w.p. p1, then op2 w.p. p2."""

    def __call__(self, img: Image.Image) -> Image.Image:
        p1, op1, m1, p2, op2, m2 = CIFAR10_POLICY[random.randint(0, len(CIFAR10_POLICY) - 1)]
        w, h = img.size
        for p, op, m in ((p1, op1, m1), (p2, op2, m2)):
            if random.random() < p:
                img = _apply(img, op, unsigned_magnitude(op, m, h, w))
        return img


class Cutout:
    """Zero `n_holes` boxes of side up to `length` (clipped at the border) in a CHW tensor, before Normalize."""

    def __init__(self, n_holes: int, length: int):
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1], img.shape[2]
        mask = np.ones((h, w), np.float32)
        for _ in range(self.n_holes):
            y, x = np.random.randint(h), np.random.randint(w)
            y1, y2 = np.clip(y - self.length // 2, 0, h), np.clip(y + self.length // 2, 0, h)
            x1, x2 = np.clip(x - self.length // 2, 0, w), np.clip(x + self.length // 2, 0, w)
            mask[y1:y2, x1:x2] = 0.0
        return img * torch.from_numpy(mask).expand_as(img)
