"""Batch pipelines: ``pipeline(indices, seed) -> (images, labels)`` on the training device, replayable bit-exactly.

Two backends implement the same recipes from the same host-drawn random parameters (``params.draw_params``):
``torch`` keeps the uint8 split on the device and augments with batched per-sample tensor ops; ``dali`` feeds the
pixels and the parameters to a DALI graph through ``external_source``. Example::

    from fastkd.pipelines import build_pipeline, get_recipe
    pipeline = build_pipeline(images, labels, get_recipe("online_kd"), mean=MEAN, std=STD, device="cuda")
    x, y = pipeline(torch.tensor([3, 1, 4]), seed=7)   # same call, same pixels
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from typing import Literal, Protocol

import torch

from ..errors import FastkdError

from .jpeg import JPEG_RECIPES, JpegRecipe, JpegTwin, OnBadFile, jpeg_recipes
from .recipes import Recipe, available_recipes, deterministic_recipe, get_recipe
from .torch_pipeline import TorchPipeline

DALI_INSTALL_HINT = ("NVIDIA DALI is not installed; install it with `pip install fastkd[dali]` (nvidia-dali-cuda130, "
                     "for a CUDA 13 torch) or `pip install fastkd[dali-cuda12]` (for a CUDA 12 torch)")


class DaliUnavailable(FastkdError, ImportError):
    """DALI was asked for but cannot run here (not installed, or built for another CUDA than torch): one line."""


class BatchPipeline(Protocol):
    backend: str

    def __call__(self, indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, h, w) normalized images and int64 labels on the device; a pure function of (indices, seed)."""
        ...


def dali_available() -> bool:
    return importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None


def dali_cuda_major() -> int | None:
    """The CUDA major version the installed DALI wheel is built for (nvidia-dali-cuda120 -> 12), None without one."""
    for dist in importlib.metadata.distributions():
        match = re.fullmatch(r"nvidia[-_]dali[-_]cuda(\d+)0", dist.metadata["Name"] or "")
        if match:
            return int(match.group(1))
    return None


def dali_cuda_mismatch() -> str | None:
    """Why DALI cannot share the GPU with this torch (its CUDA major differs from torch's), None when it can. The
    two would load two CUDA runtimes into one process; the fix is the DALI wheel of torch's CUDA major."""
    dali_major, torch_cuda = dali_cuda_major(), torch.version.cuda
    if dali_major is None or torch_cuda is None or int(torch_cuda.split(".")[0]) == dali_major:
        return None
    extra = "fastkd[dali]" if torch_cuda.startswith("13") else f"nvidia-dali-cuda{torch_cuda.split('.')[0]}0"
    return (f"DALI is built for CUDA {dali_major} but torch for CUDA {torch_cuda}; install the DALI of torch's CUDA "
            f"(`pip install {extra}`, or fastkd[dali-cuda12] for CUDA 12) or set data.pipeline=torch")


def dali_runs_whole(recipe: Recipe) -> bool:
    """Whether the DALI graph runs the whole recipe: the CNN recipes. For the ViT recipes (RandomResizedCrop,
    RandAugment, random erasing, resize) DALI does only the crop / resize / flip and the torch stages the rest,
    so ``auto`` keeps them on the torch backend, whose batched resize is also the closer one to PIL's."""
    return not (recipe.resized_crop_size or recipe.randaugment or recipe.random_erasing_prob or recipe.resize)


def available_backends() -> list[str]:
    """``["torch"]``, plus ``"dali"`` when ``nvidia.dali`` is importable."""
    return ["torch", "dali"] if dali_available() else ["torch"]


def _check_inputs(
    images: torch.Tensor, labels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be a uint8 (N, H, W, 3) tensor, got {images.dtype} {tuple(images.shape)}; "
            "convert with `torch.as_tensor(array).expand(..., 3)` for grey images"
        )
    if labels.ndim != 1 or len(labels) != len(images) or labels.dtype != torch.int64:
        raise ValueError(
            f"labels must be an int64 (N,) tensor with N = {len(images)} images, "
            f"got {labels.dtype} {tuple(labels.shape)}"
        )
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values each with std > 0, got mean={mean}, std={std}")


def build_pipeline(
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: Recipe,
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    device: torch.device | str = "cpu",
    backend: Literal["auto", "torch", "dali"] = "auto",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
) -> BatchPipeline:
    """A batch pipeline over an in-memory split.

    Args:
        images: uint8 (N, H, W, 3) on the CPU, the whole split.
        labels: int64 (N,).
        recipe: the augmentation (see :func:`get_recipe`).
        mean, std: per-channel statistics of the data set, on the 0..1 scale.
        device: where batches are returned (and, for the torch backend, where the split is held).
        backend: ``"auto"`` picks DALI when it is installed, ``device`` is CUDA and DALI implements the recipe
            (:func:`dali_runs_whole`), else torch: on a CPU the torch pipeline is the faster one
            (bench/bench_pipelines.py).
        dtype: float dtype of the returned images.
        channels_last: return images in channels_last memory format.
    """
    _check_inputs(images, labels, mean, std)
    device = torch.device(device)
    if backend == "auto":
        backend = ("dali" if device.type == "cuda" and dali_available() and dali_runs_whole(recipe)
                   and dali_cuda_mismatch() is None else "torch")
    if backend == "torch":
        return TorchPipeline(
            images, labels, recipe, mean=mean, std=std, device=device, dtype=dtype, channels_last=channels_last
        )
    if backend == "dali":
        if not dali_available():
            raise DaliUnavailable(DALI_INSTALL_HINT)
        if device.type == "cuda" and (mismatch := dali_cuda_mismatch()):
            raise DaliUnavailable(mismatch)
        from .dali_pipeline import DaliPipeline

        return DaliPipeline(
            images, labels, recipe, mean=mean, std=std, device=device, dtype=dtype, channels_last=channels_last
        )
    raise ValueError(f"unknown pipeline backend {backend!r}; choose one of: auto, torch, dali")


def build_jpeg_pipeline(
    dataset,
    recipe: JpegRecipe,
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    device: torch.device | str = "cpu",
    backend: Literal["auto", "torch", "dali"] = "auto",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
    workers: int = 4,
    prefetch: int = 2,
    on_bad_file: OnBadFile = "error",
):
    """``pipeline(indices, seed) -> (images, labels)`` over a file index (fastkd.data.FileDataset: ImageNet).

    ``auto`` = DALI's GPU decoder on CUDA when DALI is installed, else the CPU twin (jpeg.py), whose pixels the
    tests compare with torchvision's reference transforms (DALI's CPU decoder is faster on a CPU, bench/README.md). ``workers``: decoding threads; ``prefetch``: batches decoded
    ahead in the background (the twin); ``on_bad_file``: an unreadable image stops the run or is skipped.
    """
    device = torch.device(device)
    if backend == "auto":
        backend = "dali" if device.type == "cuda" and dali_available() else "torch"
    common = dict(mean=mean, std=std, device=device, dtype=dtype, channels_last=channels_last, workers=workers,
                  prefetch=prefetch, on_bad_file=on_bad_file)
    if backend == "torch":
        return JpegTwin(dataset, recipe, **common)
    if backend == "dali":
        if not dali_available():
            raise ImportError(DALI_INSTALL_HINT)
        from .dali_jpeg import DaliJpegPipeline

        return DaliJpegPipeline(dataset, recipe, **common)
    raise ValueError(f"unknown pipeline backend {backend!r}; choose one of: auto, torch, dali")


__all__ = [
    "BatchPipeline",
    "JPEG_RECIPES",
    "JpegRecipe",
    "Recipe",
    "available_backends",
    "available_recipes",
    "build_jpeg_pipeline",
    "build_pipeline",
    "dali_runs_whole",
    "deterministic_recipe",
    "get_recipe",
    "jpeg_recipes",
]
