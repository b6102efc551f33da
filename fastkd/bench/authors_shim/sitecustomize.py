"""Runtime shim for `fastkd bench --reference-repo`: lets an authors' training script run unmodified on this machine
and times it. Python imports this file at start-up because `fastkd.bench.authors` puts its folder first on the
subprocess's PYTHONPATH; it does nothing unless FASTKD_SHIM_OUT is set. The same shim times the `fastkd compat` side.

Every patch, and why (none edits a file of the clone; the script runs with the run's temporary folder as its working
directory, so its relative `./checkpoints`, `./wandb`, `work_dirs/` and pycls' `./data` land there, and
PYTHONDONTWRITEBYTECODE keeps bytecode out of the clone):

1. `wandb` is replaced by a local no-op module: the scripts call `wandb.init/log/finish` and `wandb.run.get_url()`
   unconditionally, and a benchmark must need no account, no network and no wandb service process.
2. The authors' absolute paths (`/data/datasets/CIFAR`, `/data/datasets/tiny-imagenet-200`, `/data/datasets/ImageNet`
   -> FASTKD_SHIM_DATA_ROOT; their result folders under `/data/sunguanglong/` -> the run's folder) are redirected where
   they are used: torchvision dataset roots, `open`, `os.makedirs`, `os.path.exists`, `glob.glob` and `torch.save`.
3. With FASTKD_SHIM_SYNTHETIC_DATA=1, torchvision's CIFAR MD5 checks accept files that exist: synthetic pickles in
   the real layout can never match the real files' checksums, and `download=True` would try the network.
4. Without a CUDA device, `.cuda()` of modules and tensors returns them on the CPU, `torch.cuda.current_device()`
   returns 0 and `torch.cuda.synchronize()` does nothing: the scripts call them unconditionally (self KD even after
   choosing the CPU itself).
5. `PIL.ImageOps.posterize` with 0 bits returns the black image older Pillow returned: the ViT row's timm
   RandAugment (`rand-m9-mstd0.5-inc1`) asks for 0 bits at magnitude 10, which newer Pillow (13 here) refuses with a
   ValueError that kills a DataLoader worker, so the unmodified pycls run would crash at random there.
6. The iteration cap and timestamps: each request of a batch from the training loader (the first DataLoader the
   script iterates; on the fastkd side `EpochSampler.batch`) is timestamped; request k + 1 marks the end of
   iteration k. After FASTKD_SHIM_ITERATIONS iterations the shim synchronises the device, writes the timestamps,
   the peak host RSS and the device peak to FASTKD_SHIM_OUT (JSON; under torchrun rank 0 writes, every rank stops)
   and ends the process with SystemExit(0), before the epoch's evaluation. The device is synchronised at the stamps that bound the timed window.
"""

from __future__ import annotations

import builtins
import glob
import json
import os
import resource
import sys
import time
import types

_OUT = os.environ.get("FASTKD_SHIM_OUT")
_SIDE = os.environ.get("FASTKD_SHIM_SIDE")
# The heavy imports happen only in the bench's subprocesses, and only what each side patches (at module level, so
# a process that merely has this folder on its path pays nothing).
if _OUT and _SIDE == "fastkd":
    import torch

    from fastkd.data.sampler import EpochSampler
elif _OUT:
    import torch
    import torchvision.datasets as tv_datasets
    import torchvision.datasets.cifar as tv_cifar
    from PIL import Image, ImageOps
    from torch.utils.data import dataloader


def _redirect_table() -> list[tuple[str, str]]:
    data = os.environ["FASTKD_SHIM_DATA_ROOT"]
    scratch = os.environ.get("FASTKD_SHIM_SCRATCH", os.getcwd())
    return [("/data/datasets/CIFAR", data), ("/data/datasets/tiny-imagenet-200", os.path.join(data, "tiny-imagenet-200")),
            ("/data/datasets/ImageNet", os.path.join(data, "ImageNet")),
            ("/data/sunguanglong", os.path.join(scratch, "authors-results"))]


def _redirect(path):
    """The path with an authors' absolute prefix replaced (as a str); anything else unchanged."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    if isinstance(text, str):
        for prefix, target in _REDIRECTS:
            if text == prefix or text.startswith(prefix + "/"):
                return target + text[len(prefix):]
    return path


def _wrap_first_arg(owner, name: str) -> None:
    original = getattr(owner, name)

    def wrapper(path, *args, **kwargs):
        return original(_redirect(path), *args, **kwargs)

    wrapper.__wrapped__ = original
    setattr(owner, name, wrapper)


def _install_paths() -> None:
    for owner, name in ((builtins, "open"), (os, "makedirs"), (os.path, "exists"), (glob, "glob")):
        _wrap_first_arg(owner, name)


def _install_wandb() -> None:
    class _Run:
        id = name = "offline"

        def get_url(self) -> None:
            return None

        def log(self, *args, **kwargs) -> None:
            return None

        def finish(self, *args, **kwargs) -> None:
            return None

    module = types.ModuleType("wandb")
    module.__doc__ = "fastkd bench shim: wandb as a local no-op"
    module.run = None
    module.config = {}

    def init(*args, **kwargs):
        module.run = _Run()
        return module.run

    module.init = init
    module.log = module.finish = module.watch = module.save = lambda *args, **kwargs: None
    sys.modules["wandb"] = module


def _install_torch() -> None:
    _wrap_first_arg_at(torch, "save", 1)
    vision_init = tv_datasets.VisionDataset.__init__

    def dataset_init(self, root=None, *args, **kwargs):
        vision_init(self, _redirect(root), *args, **kwargs)

    tv_datasets.VisionDataset.__init__ = dataset_init
    if os.environ.get("FASTKD_SHIM_SYNTHETIC_DATA") == "1":
        tv_cifar.check_integrity = lambda path, md5=None: os.path.isfile(path)  # the data and meta files' checks
    _install_cpu_cuda()
    _install_posterize_zero_bits()


def _install_posterize_zero_bits() -> None:
    posterize = ImageOps.posterize

    def any_bits(image: Image.Image, bits: int) -> Image.Image:
        return image.point(lambda _: 0) if bits <= 0 else posterize(image, bits)

    ImageOps.posterize = any_bits


def _wrap_first_arg_at(owner, name: str, index: int) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        args = list(args)
        if len(args) > index:
            args[index] = _redirect(args[index])
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def _install_cpu_cuda() -> None:
    """`.cuda()` -> the CPU when no CUDA device is visible (checked at the first call, after the script has set
    CUDA_VISIBLE_DEVICES itself)."""
    module_cuda, tensor_cuda = torch.nn.Module.cuda, torch.Tensor.cuda
    current_device, synchronize = torch.cuda.current_device, torch.cuda.synchronize

    def module_to_cuda(self, *args, **kwargs):
        return module_cuda(self, *args, **kwargs) if torch.cuda.is_available() else self

    def tensor_to_cuda(self, *args, **kwargs):
        return tensor_cuda(self, *args, **kwargs) if torch.cuda.is_available() else self

    def device_index() -> int:
        return current_device() if torch.cuda.is_available() else 0

    def wait(*args, **kwargs) -> None:
        if torch.cuda.is_available():
            synchronize(*args, **kwargs)

    torch.nn.Module.cuda = module_to_cuda
    torch.cuda.synchronize = wait
    torch.Tensor.cuda = tensor_to_cuda
    torch.cuda.current_device = device_index


class _Clock:
    """Timestamps of the batch requests of the training loader (stamps[k] = end of iteration k, stamps[0] = the
    first request); ends the process after the cap. The device is synchronised at the two stamps that bound the
    timed window (after `warmup` and after `iterations` iterations), so queued GPU work counts where it belongs."""

    def __init__(self, out: str, warmup: int, iterations: int):
        self.out = out
        self.warmup = warmup
        self.iterations = iterations
        self.stamps: list[float] = []
        self.loader_id: int | None = None

    def tick(self) -> None:
        done = len(self.stamps)
        if done in (self.warmup, self.iterations):
            _synchronize()
        self.stamps.append(time.monotonic())
        if done == self.iterations:
            self._finish()

    def _finish(self) -> None:
        device_peak = None
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            device_peak = torch.cuda.max_memory_allocated() / 2 ** 20
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank stops here; rank 0 reports
            with open(self.out, "w") as fh:
                json.dump({"stamps": self.stamps, "host_rss_peak_mb": rss_kb / 1024, "device_peak_mb": device_peak},
                          fh)
        sys.stdout.flush()
        raise SystemExit(0)


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _install_reference_clock(clock: _Clock) -> None:
    iterator_next = dataloader._BaseDataLoaderIter.__next__

    def timed_next(self):
        if clock.loader_id is None:
            clock.loader_id = id(self._dataset)
        if id(self._dataset) == clock.loader_id:
            clock.tick()
        return iterator_next(self)

    dataloader._BaseDataLoaderIter.__next__ = timed_next


def _install_fastkd_clock(clock: _Clock) -> None:
    batch = EpochSampler.batch

    def timed_batch(self, epoch: int, i: int):
        clock.tick()
        return batch(self, epoch, i)

    EpochSampler.batch = timed_batch


if _OUT:
    _REDIRECTS = _redirect_table()
    _clock = _Clock(_OUT, int(os.environ["FASTKD_SHIM_WARMUP"]), int(os.environ["FASTKD_SHIM_ITERATIONS"]))
    if _SIDE == "fastkd":
        _install_fastkd_clock(_clock)
    else:
        _install_paths()
        _install_wandb()
        _install_torch()
        _install_reference_clock(_clock)
