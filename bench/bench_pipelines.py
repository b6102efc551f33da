"""Images/s of fastkd's batch pipelines against the reference's PIL DataLoader, on CIFAR-100-shaped data and on
ImageNet-like JPEG files.

    OMP_NUM_THREADS=1 python -m pytest bench/bench_pipelines.py --benchmark-enable -p no:cacheprovider

Data: 50000 random uint8 32x32x3 images held in memory. Each round pulls 40 batches of 128. The reference loader is
a torchvision DataLoader with 4 worker processes applying the reference transforms to PIL images (docs/semantics.md
§2.1, §2.2), timed in steady state (workers started and warmed before the clock). For the self-KD recipe,
torchvision's CIFAR-10 AutoAugment stands in for the reference's PIL port of the same policy table. fastkd's pipelines run in
this process on the CPU: the torch backend on one thread, DALI CPU-only with two threads. Prints images/s and
the speed-up over the PIL loader at the end.

ImageNet rows (group ``imagenet``): 512 generated JPEGs of 500x375 at quality 90 (~100 KB, like ImageNet's), 4
batches of 128 per round. The reference is its ImageNet loader: PIL open + convert("RGB") and RandomResizedCrop(224),
flip, RandomRotation(15), ToTensor, Normalize in 4 DataLoader workers. fastkd: the JPEG twin (torchvision decode on
``data.workers`` = 4 threads, the next batch prefetched while one is collected, as the trainer does) and DALI's CPU
decoder with 4 threads.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fastkd.bench.data import write_imagenet_like
from fastkd.data.imagenet import load_imagenet
from fastkd.pipelines import available_backends, build_jpeg_pipeline, build_pipeline, get_recipe, jpeg_recipes

NUM_IMAGES, BATCH, BATCHES_PER_ROUND = 50000, 128, 40
JPEG_CLASSES, JPEG_PER_CLASS, JPEG_BATCHES_PER_ROUND = 4, 128, 4
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR100_MEAN, CIFAR100_STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
_images_per_second: dict[tuple[str, str], float] = {}


@pytest.fixture(scope="module")
def cifar_like() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (NUM_IMAGES, 32, 32, 3), dtype=np.uint8), rng.integers(0, 100, NUM_IMAGES)


@pytest.fixture(scope="module", autouse=True)
def report(request):
    """After the module: images/s per pipeline and the speed-up over the PIL DataLoader."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not _images_per_second:
        return
    lines = ["", "Pipeline throughput (images/s, median round) and speed-up over the PIL DataLoader:"]
    for (recipe, name), rate in sorted(_images_per_second.items()):
        reference = _images_per_second.get((recipe, "pil_dataloader_4_workers"))
        ratio = f"{rate / reference:6.2f}x" if reference else "   n/a"
        lines.append(f"  {recipe:10s} {name:26s} {rate:10.0f}  {ratio}")
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        for line in lines:  # module teardown output is captured otherwise
            reporter.write_line(line)


def _record(benchmark, recipe: str, name: str, batches: int = BATCHES_PER_ROUND) -> None:
    if benchmark.stats is not None:
        _images_per_second[(recipe, name)] = BATCH * batches / benchmark.stats.stats.median


# ---------------------------------------------------------------- the reference: PIL transforms in workers


class _Cutout:
    """The reference's Cutout (docs/semantics.md §2.5): one 16x16 hole of zeros on the CHW tensor, centre uniform."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        _, height, width = image.shape
        y, x = np.random.randint(height), np.random.randint(width)
        mask = np.ones((height, width), np.float32)
        mask[max(0, y - 8):min(height, y + 8), max(0, x - 8):min(width, x + 8)] = 0.0
        return image * torch.from_numpy(mask)


REFERENCE_TRANSFORMS = {
    "online_kd": T.Compose([
        T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.RandomRotation(15), T.ToTensor(),
        T.Normalize(CIFAR100_MEAN, CIFAR100_STD),
    ]),
    "self_kd": T.Compose([
        T.RandomCrop(32, padding=4, fill=128), T.RandomHorizontalFlip(),
        T.AutoAugment(T.AutoAugmentPolicy.CIFAR10, fill=[128, 128, 128]), T.ToTensor(), _Cutout(),
        T.Normalize(CIFAR10_MEAN, CIFAR10_STD),
    ]),
}


class _PilDataset(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


@pytest.mark.parametrize("recipe", ("online_kd", "self_kd"))
def test_pil_dataloader(benchmark, cifar_like, recipe):
    images, labels = cifar_like
    loader = DataLoader(_PilDataset(images, labels, REFERENCE_TRANSFORMS[recipe]), batch_size=BATCH, shuffle=True,
                        num_workers=4, persistent_workers=True, prefetch_factor=2)
    batches = iter(loader)
    for _ in range(8):  # start the workers and fill their queues
        next(batches)

    def pull():
        for _ in range(BATCHES_PER_ROUND):
            next(batches)

    benchmark.group = recipe
    benchmark.pedantic(pull, rounds=3, iterations=1)
    _record(benchmark, recipe, "pil_dataloader_4_workers")


# ---------------------------------------------------------------- fastkd pipelines


@pytest.mark.parametrize("recipe", ("online_kd", "self_kd"))
@pytest.mark.parametrize("backend", ("torch", "dali"))
def test_fastkd_pipeline(benchmark, cifar_like, recipe, backend):
    if backend not in available_backends():
        pytest.skip("NVIDIA DALI is not installed (pip install fastkd[dali])")
    images, labels = cifar_like
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if recipe == "self_kd" else (CIFAR100_MEAN, CIFAR100_STD)
    pipeline = build_pipeline(torch.from_numpy(images), torch.from_numpy(labels), get_recipe(recipe),
                              mean=mean, std=std, device="cpu", backend=backend)
    order = torch.randperm(NUM_IMAGES, generator=torch.Generator().manual_seed(0))
    pipeline(order[:BATCH], seed=0)  # build (DALI) and warm up

    def pull():
        for i in range(BATCHES_PER_ROUND):
            pipeline(order[i * BATCH:(i + 1) * BATCH], seed=i)

    benchmark.group = recipe
    benchmark.pedantic(pull, rounds=3, iterations=1)
    _record(benchmark, recipe, f"fastkd_{backend}")


# ---------------------------------------------------------------- ImageNet: JPEG files decoded per batch


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    root = write_imagenet_like(tmp_path_factory.mktemp("imagenet"), JPEG_CLASSES, JPEG_PER_CLASS, val_per_class=1)
    return load_imagenet("imagenet", str(root))[0]


class _PilFiles(Dataset):
    """torchvision's ImageFolder/ImageNet `__getitem__`: open the file with PIL, convert to RGB, transform."""

    def __init__(self, files: list[str], labels: torch.Tensor, transform) -> None:
        self.files, self.labels, self.transform = files, labels.tolist(), transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as image:
            return self.transform(image.convert("RGB")), self.labels[i]


IMAGENET_TRANSFORM = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.RandomRotation(15),
                                T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def test_pil_dataloader_imagenet(benchmark, imagenet_like):
    loader = DataLoader(_PilFiles(imagenet_like.files, imagenet_like.labels, IMAGENET_TRANSFORM), batch_size=BATCH,
                        shuffle=True, num_workers=4, persistent_workers=True, prefetch_factor=2)

    def batches():
        while True:
            yield from loader

    stream = batches()
    for _ in range(4):  # start the workers and fill their queues
        next(stream)

    def pull():
        for _ in range(JPEG_BATCHES_PER_ROUND):
            next(stream)

    benchmark.group = "imagenet"
    benchmark.pedantic(pull, rounds=3, iterations=1)
    _record(benchmark, "imagenet", "pil_dataloader_4_workers", JPEG_BATCHES_PER_ROUND)


@pytest.mark.parametrize("backend", ("torch", "dali"))
def test_fastkd_jpeg_pipeline(benchmark, imagenet_like, backend):
    if backend not in available_backends():
        pytest.skip("NVIDIA DALI is not installed (pip install fastkd[dali])")
    pipeline = build_jpeg_pipeline(imagenet_like, jpeg_recipes("imagenet")[0], mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                   device="cpu", backend=backend, workers=4, prefetch=1)
    order = torch.randperm(len(imagenet_like), generator=torch.Generator().manual_seed(0))
    batches = [(order[i * BATCH:(i + 1) * BATCH], i) for i in range(JPEG_BATCHES_PER_ROUND)]
    pipeline(*batches[0])  # build (DALI) and warm up
    prefetch = getattr(pipeline, "prefetch", lambda *batch: None)

    def pull():
        prefetch(*batches[0])
        for i, batch in enumerate(batches):
            if i + 1 < len(batches):
                prefetch(*batches[i + 1])
            pipeline(*batch)

    benchmark.group = "imagenet"
    benchmark.pedantic(pull, rounds=3, iterations=1)
    _record(benchmark, "imagenet", f"fastkd_{backend}", JPEG_BATCHES_PER_ROUND)
