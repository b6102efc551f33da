"""Small ImageNet-like folders of real image files for the tests: odd sizes, and the oddities ImageNet itself has
(a grayscale JPEG, a CMYK JPEG, a PNG named .JPEG), in the folder layout or torchvision's ImageNet layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

WNIDS = ("n01530575", "n01443537", "n02085620")
"""Deliberately not in sorted order on disk creation: the class index must follow the sorted wnids."""
ODD_FILES = {0: ("L", "JPEG"), 1: ("CMYK", "JPEG"), 2: ("RGB", "PNG")}
"""Image k of the first class: its PIL mode and the format its .JPEG file really holds."""


def _image(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """A smooth colour field plus noise: compresses like a photo, not like white noise."""
    coarse = Image.fromarray(rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.BILINEAR), dtype=np.float64)
    return Image.fromarray(np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8))


def write_imagenet(root: Path, *, per_class: int = 4, val_per_class: int = 2, layout: str = "folder",
                   seed: int = 0) -> Path:
    """``root/train/<wnid>/*.JPEG`` and ``root/val/...``: per class ``per_class`` training images of sizes
    between 40 and 130 pixels a side. ``layout="torchvision"`` adds meta.bin and puts the validation images flat in
    ``val/`` (labelled by meta.bin). The first class's first images are grayscale, CMYK and a PNG."""
    rng = np.random.default_rng(seed)
    val_wnids = []
    for split, count in (("train", per_class), ("val", val_per_class)):
        for wnid in WNIDS:
            folder = root / split / wnid if split == "train" or layout == "folder" else root / split
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                height, width = (int(v) for v in rng.integers(40, 130, 2))
                image = _image(rng, height, width)
                mode, fmt = ODD_FILES.get(k, ("RGB", "JPEG")) if wnid == WNIDS[0] and split == "train" else (
                    "RGB", "JPEG")
                name = f"{wnid}_{k}.JPEG" if split == "train" or layout == "folder" else \
                    f"ILSVRC2012_val_{len(val_wnids) + 1:08d}.JPEG"
                image.convert(mode).save(folder / name, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
                if split == "val" and layout == "torchvision":
                    val_wnids.append(wnid)
    if layout == "torchvision":
        torch.save(({w: (f"class {w}",) for w in WNIDS}, val_wnids), root / "meta.bin")
    return root
