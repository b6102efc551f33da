"""JPEG batches from a file index (ImageNet): ``pipeline(indices, seed) -> (images, labels)``, replayable.

The host reads each file's header (its size), draws every random parameter of the batch from ``seed`` (crop
boxes by torchvision's RandomResizedCrop algorithm on each image's own size, flips, rotation angles), and a
backend applies them: this CPU twin (``torchvision.io.decode_image`` + torchvision's tensor ops, per sample on a
thread pool, whole batches prefetched in the background) or DALI (``dali_jpeg.py``: nvJPEG crop-on-decode). The
parameters depend only on (file sizes, seed), so both backends and every replay see the same crops; pixels
differ between the backends only by their JPEG decoders and resize filters (bounds in docs/semantics.md R27).
The recipes are the reference scripts' (R27): RandomResizedCrop(224) with the default scale and ratio,
horizontal flip, RandomRotation(15) for imagenet only, ImageNet normalisation; test Resize(256) + CenterCrop(224).
"""

from __future__ import annotations

import io
import re
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image

from ..errors import DataError
from . import torch_ops as ops
from .params import draw_resized_crops

if TYPE_CHECKING:
    from fastkd.data.imagenet import FileDataset

OnBadFile = Literal["error", "skip"]


@dataclass(frozen=True)
class JpegRecipe:
    """One ImageNet transform: training = RandomResizedCrop(size) -> flip -> rotation; test = Resize(resize_shorter)
    -> CenterCrop(size). Bilinear, antialiased, as torchvision's defaults."""

    name: str
    size: int = 224
    """Output side: the RandomResizedCrop size, or the test CenterCrop."""
    train: bool = False
    hflip: bool = False
    rotate_degrees: float = 0.0
    """Angle uniform in [-d, d] degrees, nearest neighbour, fill 0, size kept (torchvision's RandomRotation)."""
    resize_shorter: int = 256
    """Test transform: the shorter side before the centre crop."""
    resized_crop_scale: tuple[float, float] = (0.08, 1.0)
    resized_crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)

    @property
    def is_random(self) -> bool:
        return self.train


JPEG_RECIPES = {
    "imagenet": JpegRecipe("imagenet_train", train=True, hflip=True, rotate_degrees=15.0),
    "imagenet_100": JpegRecipe("imagenet_100_train", train=True, hflip=True),
    "test": JpegRecipe("imagenet_test"),
}
"""Training recipe per data set (the online-KD/EMA scripts rotate ImageNet, dropout's ImageNet-100 does not), and
the test transform of both."""


def jpeg_recipes(dataset: str, image_size: int | None = None, augment: bool = True) -> tuple[JpegRecipe, JpegRecipe]:
    """(train, test) recipes; ``image_size`` (data.image_size) scales both (test resize = size * 256/224) for
    cheap runs; ``augment=False`` (data.augment: none) trains on the test transform."""
    train, test = JPEG_RECIPES[dataset], JPEG_RECIPES["test"]
    if image_size is not None:
        train = replace(train, size=image_size)
        test = replace(test, size=image_size, resize_shorter=round(image_size * 256 / 224))
    return (train if augment else test), test


@dataclass(frozen=True)
class JpegParams:
    """The random choices of one batch, drawn on the host."""

    boxes: torch.Tensor
    """int64 (B, 4): (top, left, height, width) of the region that is resized; the whole image for the test
    transform."""
    flips: torch.Tensor
    """bool (B,)."""
    angles: torch.Tensor | None
    """float64 (B,) degrees counter-clockwise, or None without rotation."""


UNREADABLE_SIZE = (1, 1)
"""Size a skipped file stands in with, so the other samples' draws do not depend on which files are bad."""


def draw_jpeg_params(recipe: JpegRecipe, sizes: torch.Tensor, seed: int) -> JpegParams:
    """Boxes, flips and angles of a batch of images of ``sizes`` (B, 2) = (height, width), from ``seed``. Every
    sample consumes the same number of draws whatever its size, so rows can be dropped or sliced afterwards."""
    generator = torch.Generator().manual_seed(seed)
    if recipe.train:
        boxes = torch.cat([draw_resized_crops(recipe, 1, int(h), int(w), generator) for h, w in sizes.tolist()])
    else:
        boxes = torch.cat([torch.zeros_like(sizes), sizes], dim=1)
    flips = torch.rand(len(sizes), generator=generator) < 0.5
    angles = None
    if recipe.rotate_degrees:
        angles = (torch.rand(len(sizes), generator=generator, dtype=torch.float64) * 2 - 1) * recipe.rotate_degrees
    return JpegParams(boxes, flips if recipe.hflip else torch.zeros_like(flips), angles)


def resize_shorter(height: int, width: int, shorter: int) -> tuple[int, int]:
    """torchvision's Resize(int) output size: the shorter side becomes ``shorter``, the other truncated."""
    if height <= width:
        return shorter, int(shorter * width / height)
    return int(shorter * height / width), shorter


def centre_start(side: int, crop: int) -> int:
    """torchvision CenterCrop's offset: int(round((side - crop) / 2)) (halves to the even neighbour)."""
    return int(round((side - crop) / 2.0))


def output_geometry(recipe: JpegRecipe, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the (height, width) the decoded box is resized to and the (top, left) of the final crop."""
    if recipe.train:
        return torch.full((len(sizes), 2), recipe.size), torch.zeros(len(sizes), 2, dtype=torch.int64)
    targets = torch.tensor([resize_shorter(h, w, recipe.resize_shorter) for h, w in sizes.tolist()])
    starts = torch.tensor([[centre_start(h, recipe.size), centre_start(w, recipe.size)] for h, w in targets.tolist()])
    return targets, starts


class BadFile(Exception):
    """A file that cannot be read or decoded; ``str`` is the one-line reason."""


_TORCHVISION_PREFIX = re.compile(r"^\w+, \S+:\d+, ")


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _TORCHVISION_PREFIX.sub("", str(exc)).splitlines()[0] if str(exc) else type(exc).__name__


def read_encoded(path: str) -> tuple[np.ndarray, tuple[int, int]]:
    """The file's bytes and its (height, width) from the header (PIL parses only the header; it also recognises
    a PNG named .JPEG)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
        with Image.open(io.BytesIO(data.tobytes())) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadFile(f"{path}: cannot be read as an image ({_reason(exc)})") from None
    return data, (height, width)


def decode_rgb(data: np.ndarray, path: str) -> torch.Tensor:
    """uint8 (3, H, W): JPEG (grayscale and CMYK converted to RGB) or PNG, whatever the file name says."""
    try:
        return decode_image(torch.from_numpy(data), mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        raise BadFile(f"{path}: cannot be decoded ({_reason(exc)})") from None


class BadFiles:
    """What ``data.on_bad_file`` does with an unreadable file: ``error`` stops with one line naming it, ``skip``
    drops its row from the batch (every time it is drawn), notes it once and counts it."""

    def __init__(self, policy: OnBadFile) -> None:
        self.policy = policy
        self.skipped: set[str] = set()
        self._lock = threading.Lock()

    def handle(self, error: BadFile) -> None:
        if self.policy == "error":
            raise DataError(f"{error}; replace or remove it, or set data.on_bad_file=skip")
        with self._lock:
            path = str(error).split(": ", 1)[0]
            if path not in self.skipped:
                self.skipped.add(path)
                print(f"fastkd: note: skipping {error} (data.on_bad_file=skip)", file=sys.stderr, flush=True)


@dataclass
class HostBatch:
    """A batch read on the host: encoded bytes and sizes of every row, and which rows are readable."""

    encoded: list[np.ndarray | None]
    sizes: torch.Tensor
    readable: torch.Tensor


def read_batch(paths: list[str], pool: ThreadPoolExecutor | None, bad: BadFiles) -> HostBatch:
    """Bytes and header sizes of ``paths`` (in parallel on ``pool``); unreadable files per ``bad``."""
    def one(path: str):
        try:
            return read_encoded(path)
        except BadFile as error:
            bad.handle(error)
            return None, UNREADABLE_SIZE

    results = list(pool.map(one, paths)) if pool is not None else [one(p) for p in paths]
    encoded = [data for data, _ in results]
    return HostBatch(encoded, torch.tensor([size for _, size in results], dtype=torch.int64),
                     torch.tensor([data is not None for data in encoded]))


class JpegTwin:
    """The CPU backend. Each sample's whole chain (decode, crop + resize, flip + rotation as one gather, and on a CPU
    device the normalisation into its row of the batch) runs on one of ``workers`` threads: torchvision's decoder
    and torch's ops release the GIL. ``prefetch(indices, seed)`` starts a batch in the background so that decoding
    overlaps the training step; ``__call__`` then only collects it."""

    backend = "torch"
    takes_rows = True

    def __init__(self, dataset: FileDataset, recipe: JpegRecipe, *, mean, std, device: torch.device,
                 dtype: torch.dtype, channels_last: bool, workers: int = 4, prefetch: int = 2,
                 on_bad_file: OnBadFile = "error") -> None:
        self.dataset, self.recipe, self.device = dataset, recipe, device
        self.dtype, self.channels_last = dtype, channels_last
        self.normalize_on_host = device.type == "cpu"
        stats_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        side = recipe.size  # (S, S, 3) tables: ops.normalize's fast elementwise form
        self.mean = torch.tensor(mean, dtype=stats_dtype).expand(side, side, 3).contiguous()
        self.std = torch.tensor(std, dtype=stats_dtype).expand(side, side, 3).contiguous()
        self.bad = BadFiles(on_bad_file)
        self.prefetch_depth = prefetch
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="fastkd-decode") if workers > 0 else None
        self._background = ThreadPoolExecutor(1, thread_name_prefix="fastkd-prefetch") if prefetch > 0 else None
        self._pending: dict[tuple, Future] = {}

    @property
    def skipped_files(self) -> int:
        return len(self.bad.skipped)

    def _geometry(self, image: torch.Tensor, box: list[int], target: list[int], start: list[int], flip: bool,
                  angle: torch.Tensor | None) -> torch.Tensor:
        """uint8 (S, S, 3): RandomResizedCrop or Resize + CenterCrop, then flip and rotation (nearest, fill 0),
        the last two composed into one gather as the in-memory pipeline does (torch_ops.crop_flip_rotate)."""
        top, left, height, width = box
        image = TF.resized_crop(image, top, left, height, width, target, TF.InterpolationMode.BILINEAR,
                                antialias=True)
        size = self.recipe.size
        if not self.recipe.train:
            image = image[:, start[0]:start[0] + size, start[1]:start[1] + size]
        pixels = ops.with_fill_pixels(image.permute(1, 2, 0), (0, 0))
        return ops.crop_flip_rotate(pixels, (size, size), torch.zeros(1, dtype=torch.int64), None,
                                    torch.tensor([flip]), angle, 0)[0]

    def _sample(self, data: np.ndarray, path: str, box: list[int], target: list[int], start: list[int], flip: bool,
                angle: torch.Tensor | None, out: torch.Tensor) -> bool:
        """Write the sample into ``out`` (its batch row: uint8, or normalised on a CPU device); False if its file
        was skipped."""
        try:
            image = decode_rgb(data, path)
        except BadFile as error:
            self.bad.handle(error)
            return False
        pixels = self._geometry(image, box, target, start, flip, angle)
        if self.normalize_on_host:  # ops.normalize's arithmetic, written into the row
            out.copy_(pixels).mul_(1.0 / 255.0).sub_(self.mean).div_(self.std)
        else:
            out.copy_(pixels)
        return True

    def host_batch(self, indices: torch.Tensor, seed: int,
                   rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, S, S, 3) images after the geometry (normalised on a CPU device, else uint8) and the dataset
        positions of the rows kept (all but skipped files); ``rows``: only this block of the batch, whose
        parameters are drawn whole."""
        indices = indices.to(torch.int64).cpu()
        rows = rows or slice(0, len(indices))
        paths = [self.dataset.files[i] for i in indices.tolist()]
        own = read_batch(paths[rows], self._pool, self.bad)
        sizes = torch.tensor([UNREADABLE_SIZE] * len(paths), dtype=torch.int64)
        sizes[rows] = own.sizes
        for i in [i for i in range(len(paths)) if not rows.start <= i < rows.stop]:
            try:  # another rank's rows: their sizes fix the draws, their pixels are not needed
                sizes[i] = torch.tensor(read_encoded(paths[i])[1])
            except BadFile:
                pass
        params = draw_jpeg_params(self.recipe, sizes, seed)
        targets, starts = output_geometry(self.recipe, sizes)
        readable = [i for i in range(rows.start, rows.stop) if own.readable[i - rows.start]]
        size = self.recipe.size
        batch = torch.empty(len(readable), size, size, 3,
                            dtype=self.mean.dtype if self.normalize_on_host else torch.uint8)
        jobs = [(own.encoded[i - rows.start], paths[i], params.boxes[i].tolist(), targets[i].tolist(),
                 starts[i].tolist(), bool(params.flips[i]), None if params.angles is None else params.angles[i:i + 1],
                 batch[k]) for k, i in enumerate(readable)]
        decoded = list(self._pool.map(lambda job: self._sample(*job), jobs)) if self._pool else [
            self._sample(*job) for job in jobs]
        if not any(decoded):
            raise DataError(f"every file of a batch was skipped as unreadable (e.g. {paths[rows.start]}); check the "
                            "data set (data.on_bad_file=skip)")
        if not all(decoded):
            batch = batch[torch.tensor(decoded)]
        kept = [i for i, ok in zip(readable, decoded) if ok]
        return batch, indices[kept]

    def _finish(self, batch: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, 3, S, S) images in ``dtype`` on the device (channels_last memory when asked) and their labels."""
        if not self.normalize_on_host:
            batch = ops.normalize(ops.to_device(batch, self.device), self.mean.to(self.device),
                                  self.std.to(self.device))
        images = batch.permute(0, 3, 1, 2).to(self.dtype)
        return (images if self.channels_last else images.contiguous()), self.dataset.labels[positions].to(self.device)

    def _job(self, indices: torch.Tensor, seed: int, rows: slice | None):
        batch, positions = self.host_batch(indices, seed, rows)
        return self._finish(batch, positions) if self.normalize_on_host else (batch.pin_memory(), positions)

    @staticmethod
    def _key(indices: torch.Tensor, seed: int, rows: slice | None) -> tuple:
        return (indices.cpu().numpy().tobytes(), int(seed), None if rows is None else (rows.start, rows.stop))

    def prefetch(self, indices: torch.Tensor, seed: int, rows: slice | None = None) -> None:
        """Start decoding this batch in the background (at most ``prefetch`` batches are kept waiting)."""
        key = self._key(indices, seed, rows)
        if self._background is None or key in self._pending or len(self._pending) >= self.prefetch_depth:
            return
        self._pending[key] = self._background.submit(self._job, indices.clone(), seed, rows)

    def __call__(self, indices: torch.Tensor, seed: int,
                 rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised (b, 3, S, S) images in ``dtype`` and their labels; a pure function of (indices, seed)."""
        future = self._pending.pop(self._key(indices, seed, rows), None)
        result = future.result() if future is not None else self._job(indices, seed, rows)
        return result if self.normalize_on_host else self._finish(*result)
