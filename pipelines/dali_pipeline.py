"""DALI twins of the recipes, for in-memory splits: ``external_source`` feeds the batch pixels and the host-drawn
random parameters, DALI ops apply them (on the GPU with ``device="gpu"``, or CPU-only with ``device_id=None``).

Replay determinism: no DALI random operator is used. Every random quantity of a batch (crop start, flip bit,
rotation angle, AutoAugment op and parameter, Cutout box) is an explicit per-sample input computed by
``params.draw_params(recipe, B, H, W, seed)``, the same draws the torch backend applies, so (indices, seed) fixes
the output on both backends.

Numerics follow torchvision's tensor kernels, as the torch backend does: float32 products and sums that torchvision
fuses (``add_(alpha=...)``) are evaluated exactly in float64 and rounded once; truncation to uint8 is ``floor``
after clamping. Nearest-neighbour warps round at pixel-centre ties differently from ``grid_sample``, and DALI's
bilinear warp rounds its result itself, so rotations differ from torchvision in a few pixels per hundred thousand
and shears by at most one grey level (tests/pipelines/test_dali_pipeline.py measures both).

The ViT recipes take the same parameters: DALI crops, resizes (cubic, or linear for the test transform) and flips,
and the torch stages (``torch_pipeline.PixelStages``) apply RandAugment, normalisation and the per-sample erasing
noise, which DALI cannot draw from host parameters. DALI resamples in float and replicates the crop's edges, so its
crops are within 8 grey levels of the torch backend's (tests/pipelines/test_vit_recipe.py).
"""

from __future__ import annotations


import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.math as dmath
import nvidia.dali.types as types
import torch
from nvidia.dali import pipeline_def
from nvidia.dali.data_node import DataNode
from nvidia.dali.plugin.pytorch import feed_ndarray
from nvidia.dali.plugin.pytorch import fn as torch_fn
from torchvision.transforms.v2.functional import equalize as tv_equalize

from . import torch_ops
from .params import AutoAugmentParams, BatchParams, draw_params
from .policies import IDENTITY, OPS
from .recipes import Recipe
from .torch_pipeline import PixelStages

AUTOAUGMENT_FILL = 128
_GREY_WEIGHTS = [float(np.float32(w)) for w in torch_ops._GREY_WEIGHTS]
_SHARPNESS_KERNEL = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / np.float32(13)
_WARP_OPS = {"rotate": types.INTERP_NN, "translate_x": types.INTERP_NN, "translate_y": types.INTERP_NN,
             "shear_x": types.INTERP_LINEAR, "shear_y": types.INTERP_LINEAR}


# ---------------------------------------------------------------------------------------------------------------
# Host side: per-sample inputs from the batch parameters.


def _dali_matrices(matrices: torch.Tensor, height: int, width: int) -> np.ndarray:
    """torchvision's inverse matrices (centred pixel frame) as DALI ``warp_affine`` matrices (corner frame)."""
    linear, shift = matrices[:, :, :2], matrices[:, :, 2]
    centre = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    corner_shift = shift + centre - linear @ centre
    return torch.cat([linear, corner_shift[:, :, None]], dim=2).to(torch.float32).numpy()


def _autoaugment_feeds(params: AutoAugmentParams, height: int, width: int) -> dict[str, np.ndarray]:
    """Per stage: op id, float32 parameter, exact 1 - parameter, posterize mask, warp matrix."""
    feeds = {}
    batch = len(params.op_ids)
    for stage in range(2):
        op_ids, values = params.op_ids[:, stage], params.values[:, stage]
        factor = values.to(torch.float32)
        bits = torch.where(op_ids == OPS.index("posterize"), values, 8.0).to(torch.int64).clamp(0, 8)
        matrices = torch.eye(2, 3, dtype=torch.float64).repeat(batch, 1, 1)
        for op, op_matrices in _warp_matrices(op_ids, values, height, width).items():
            matrices[op_ids == OPS.index(op)] = op_matrices
        feeds |= {
            f"aa{stage}_op": op_ids.to(torch.int32).numpy(),
            f"aa{stage}_factor": factor.numpy(),
            # torchvision computes 1 - factor in Python (float64), then the kernel rounds it to float32
            f"aa{stage}_one_minus": (1.0 - values).to(torch.float32).double().numpy(),
            f"aa{stage}_mask": (((1 << bits) - 1) << (8 - bits)).to(torch.uint8).numpy(),
            f"aa{stage}_matrix": _dali_matrices(matrices, height, width),
        }
    return feeds


def _warp_matrices(op_ids: torch.Tensor, values: torch.Tensor, height: int, width: int) -> dict[str, torch.Tensor]:
    """torchvision-frame inverse matrices of the samples whose op is a warp, keyed by op."""
    matrices = {}
    for op in _WARP_OPS:
        chosen = values[op_ids == OPS.index(op)]
        if not len(chosen):
            continue
        zeros = torch.zeros(len(chosen), 2, dtype=torch.float64)
        if op == "rotate":
            matrices[op] = torch_ops.rotation_matrices(chosen)
        elif op.startswith("translate"):
            shift = zeros.clone()
            shift[:, 0 if op == "translate_x" else 1] = chosen
            matrices[op] = torch_ops.inverse_affine_matrices(zeros[:, 0], shift, zeros, zeros)
        else:
            shear = zeros.clone()
            shear[:, 0 if op == "shear_x" else 1] = chosen
            corner = torch.tensor([[-0.5 * width, -0.5 * height]], dtype=torch.float64).expand(len(chosen), 2)
            matrices[op] = torch_ops.inverse_affine_matrices(zeros[:, 0], zeros, shear, corner)
    return matrices


def torch_finishes(recipe: Recipe) -> bool:
    """Whether DALI does only the geometry (crop / resize / flip) and the torch stages (``PixelStages``) the rest:
    the ViT recipes, whose RandAugment and per-sample erasing noise DALI cannot take from host-drawn parameters."""
    return bool(recipe.resized_crop_size or recipe.resize)


def parameter_feeds(recipe: Recipe, params: BatchParams, height: int, width: int) -> dict[str, np.ndarray]:
    """The ``external_source`` arrays (one row per sample) that drive the DALI graph for one batch."""
    feeds: dict[str, np.ndarray] = {}
    if params.resized_crops is not None:
        feeds["crop_anchor"] = params.resized_crops[:, :2].to(torch.float32).numpy()
        feeds["crop_shape"] = params.resized_crops[:, 2:].to(torch.float32).numpy()
    if params.crop_offsets is not None:
        feeds["crop_start"] = (params.crop_offsets - recipe.crop_padding).to(torch.int32).numpy()
    if params.flips is not None:
        feeds["flip"] = params.flips.to(torch.int32).numpy()
    if params.angles is not None:
        feeds["angle"] = params.angles.to(torch.float32).numpy()
    if params.autoaugment is not None:
        feeds |= _autoaugment_feeds(params.autoaugment, height, width)
    if params.cutout_centres is not None:
        half = recipe.cutout_length // 2
        limits = torch.tensor([height, width])
        top_left = (params.cutout_centres - half).clamp(min=0)
        bottom_right = torch.minimum(params.cutout_centres + half, limits)
        feeds["cutout_anchor"] = top_left.to(torch.float32).numpy()
        feeds["cutout_shape"] = (bottom_right - top_left).to(torch.float32).numpy()
    return feeds


# ---------------------------------------------------------------------------------------------------------------
# The graph: plain functions over DataNodes, usable on CPU and GPU data alike.


def _to_uint8(values: DataNode) -> DataNode:
    """Clamp to 0..255 and truncate, like torchvision's ``clamp_(0, 255).to(torch.uint8)``."""
    return fn.cast(dmath.floor(dmath.clamp(values, 0.0, 255.0)), dtype=types.UINT8)


def _fused_multiply_add(base: DataNode, other: DataNode, alpha: DataNode) -> DataNode:
    """float32 ``base + alpha * other`` rounded once (torchvision's ``add_(other, alpha=...)``), exact via float64."""
    wide = fn.cast(base, dtype=types.FLOAT64) + fn.cast(other, dtype=types.FLOAT64) * alpha
    return fn.cast(wide, dtype=types.FLOAT)


def _float64(value: float) -> DataNode:
    return types.Constant(value, dtype=types.FLOAT64)


def _greyscale_floor(images: DataNode) -> DataNode:
    """torchvision's greyscale ``r*w0 (+ g*w1) (+ b*w2)`` with fused adds, floored: (H, W, 1) float32."""
    r, g, b = images[:, :, 0], images[:, :, 1], images[:, :, 2]
    grey = fn.cast(fn.cast(r, dtype=types.FLOAT64) * _float64(_GREY_WEIGHTS[0]), dtype=types.FLOAT)
    grey = _fused_multiply_add(grey, g, _float64(_GREY_WEIGHTS[1]))
    grey = _fused_multiply_add(grey, b, _float64(_GREY_WEIGHTS[2]))
    return fn.expand_dims(dmath.floor(grey), axes=[2], new_axis_names="C")


def _blend(images: DataNode, degenerate: DataNode, stage: dict[str, DataNode]) -> DataNode:
    return _to_uint8(_fused_multiply_add(images * stage["factor"], degenerate, stage["one_minus"]))


def _contrast(images: DataNode, stage: dict[str, DataNode], height: int, width: int) -> DataNode:
    # Sum then divide: the float32 sum of integer grey levels is exact, the quotient correctly rounded (= torch.mean).
    mean = fn.reductions.sum(_greyscale_floor(images), axis_names="HWC", keep_dims=True) / float(height * width)
    return _blend(images, mean, stage)


def _sharpness(images: DataNode, stage: dict[str, DataNode], interior: DataNode) -> DataNode:
    """Blend with the rounded 3x3 smoothing on the interior; the 1-pixel border keeps its input (as torchvision)."""
    blurred = dmath.floor(fn.filter(images, _SHARPNESS_KERNEL, dtype=types.FLOAT) + 0.5)
    as_float = fn.cast(images, dtype=types.FLOAT)
    sharpened = _to_uint8(_fused_multiply_add(as_float, blurred - as_float, stage["one_minus"]))
    return interior * sharpened + (interior ^ types.Constant(1, dtype=types.UINT8)) * images


def _solarize(images: DataNode, stage: dict[str, DataNode]) -> DataNode:
    keep = images < stage["factor"]
    return keep * images + (keep ^ True) * (types.Constant(255, dtype=types.UINT8) - images)


def _autocontrast(images: DataNode) -> DataNode:
    """torchvision's per-channel stretch: (x - min) / ((max - min) / 255), identity for flat channels."""
    low = fn.cast(fn.reductions.min(images, axis_names="HW", keep_dims=True), dtype=types.FLOAT)
    high = fn.cast(fn.reductions.max(images, axis_names="HW", keep_dims=True), dtype=types.FLOAT)
    flat = fn.cast(high == low, dtype=types.FLOAT)
    inv_scale = (high - low) * float(np.float32(1.0 / 255.0)) * (1.0 - flat) + flat
    return _to_uint8((fn.cast(images, dtype=types.FLOAT) - low * (1.0 - flat)) / inv_scale)


def _equalize_sample(image: torch.Tensor) -> torch.Tensor:
    """torchvision's (PIL's) equalize on one HWC sample: DALI's own equalize follows OpenCV's formula instead."""
    return tv_equalize(image.permute(2, 0, 1)).permute(1, 2, 0).contiguous()


def _equalize_sample_numpy(image: np.ndarray) -> np.ndarray:
    return _equalize_sample(torch.from_numpy(image)).numpy()


def _equalize(images: DataNode, device: str) -> DataNode:
    """Per-sample equalize through Python: torch tensors on the GPU, numpy on the CPU (the torch variant of DALI's
    Python operator opens a CUDA stream even for CPU data)."""
    if device == "gpu":
        return torch_fn.torch_python_function(
            images, function=_equalize_sample, batch_processing=False, output_layouts="HWC", device="gpu"
        )
    return fn.python_function(images, function=_equalize_sample_numpy, batch_processing=False, output_layouts="HWC")


def _apply_op(op: str, images: DataNode, stage: dict[str, DataNode], ctx: dict) -> DataNode:
    if op == "invert":
        return types.Constant(255, dtype=types.UINT8) - images
    if op in ("contrast",):
        return _contrast(images, stage, ctx["height"], ctx["width"])
    if op == "color":
        return _blend(images, _greyscale_floor(images), stage)
    if op == "brightness":
        return _to_uint8(images * stage["factor"])
    if op == "sharpness":
        return _sharpness(images, stage, ctx["interior"])
    if op == "posterize":
        return images & stage["mask"]
    if op == "solarize":
        return _solarize(images, stage)
    if op == "autocontrast":
        return _autocontrast(images)
    if op == "equalize":
        return _equalize(images, ctx["device"])
    if _WARP_OPS[op] == types.INTERP_NN:
        return fn.warp_affine(images, matrix=stage["matrix"], interp_type=types.INTERP_NN, fill_value=AUTOAUGMENT_FILL)
    return _bilinear_warp_with_fill(images, stage["matrix"], ctx["ones"])


def _bilinear_warp_with_fill(images: DataNode, matrix: DataNode, ones: DataNode) -> DataNode:
    """torchvision's bilinear warp with a fill colour: warp with zero padding, warp an all-ones mask alike, then
    ``(warped - fill) * mask + fill`` rounded. (The warped image already carries the mask weights, so border
    pixels lean towards the image more than a plain fill-padded interpolation, which DALI's own fill would give.)"""
    warped = fn.warp_affine(images, matrix=matrix, interp_type=types.INTERP_LINEAR, fill_value=0, dtype=types.FLOAT)
    mask = fn.warp_affine(ones, matrix=matrix, interp_type=types.INTERP_LINEAR, fill_value=0, dtype=types.FLOAT)
    blended = (warped - float(AUTOAUGMENT_FILL)) * mask + float(AUTOAUGMENT_FILL)
    return fn.cast(_round_half_even(dmath.clamp(blended, 0.0, 255.0)), dtype=types.UINT8)


def _round_half_even(values: DataNode) -> DataNode:
    """torch.round: to nearest, ties to even (bilinear weights of 1/2 make ties common)."""
    rounded = dmath.floor(values + 0.5)
    tie = fn.cast((rounded - values) == 0.5, dtype=types.FLOAT)
    odd = rounded - 2.0 * dmath.floor(rounded * 0.5)
    return rounded - tie * odd


def _select_op(low: int, high: int, images: DataNode, stage: dict[str, DataNode], ctx: dict) -> DataNode:
    """Apply op ``stage["op"]`` (in low..high) per sample by halving the id range with DALI conditionals."""
    if low == high:
        return images if low == IDENTITY else _apply_op(OPS[low], images, stage, ctx)
    middle = (low + high) // 2
    if stage["op"] <= middle:
        images = _select_op(low, middle, images, stage, ctx)
    else:
        images = _select_op(middle + 1, high, images, stage, ctx)
    return images


def augment(
    images: DataNode,
    inputs: dict[str, DataNode],
    recipe: Recipe,
    *,
    height: int,
    width: int,
    device: str,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    output_dtype: types.DALIDataType,
    output_layout: str,
) -> DataNode:
    """The recipe as a DALI graph on an HWC uint8 batch, driven by ``inputs`` (see :func:`parameter_feeds`); for
    the recipes :func:`torch_finishes`, the uint8 batch after its geometry."""
    if "crop_anchor" in inputs:  # RandomResizedCrop: crop, then resize the crop alone (its edges replicated)
        images = fn.slice(images, inputs["crop_anchor"], inputs["crop_shape"], axis_names="HW",
                          normalized_anchor=False, normalized_shape=False)
        size = [recipe.resized_crop_size] * 2
        images = fn.resize(images, size=size, interp_type=types.INTERP_CUBIC, antialias=True)
    if recipe.resize:
        images = fn.resize(images, size=[recipe.resize] * 2, interp_type=types.INTERP_LINEAR, antialias=True)
    if "crop_start" in inputs:
        images = fn.slice(images, start=inputs["crop_start"], shape=[height, width], axis_names="HW",
                          out_of_bounds_policy="pad", fill_values=recipe.crop_fill)
    if "flip" in inputs:
        images = fn.flip(images, horizontal=inputs["flip"])
    if torch_finishes(recipe):
        return images
    if "angle" in inputs:
        images = fn.rotate(images, angle=inputs["angle"], interp_type=types.INTERP_NN, fill_value=0, keep_size=True)
    if recipe.autoaugment:
        interior = np.zeros((height, width, 1), dtype=np.uint8)
        interior[1:-1, 1:-1] = 1
        ones = fn.constant(fdata=1.0, shape=[height, width, 1], layout="HWC", dtype=types.FLOAT, device=device)
        ctx = {"height": height, "width": width, "device": device, "interior": types.Constant(interior), "ones": ones}
        for stage in range(2):
            names = ("op", "factor", "one_minus", "mask", "matrix")
            stage_inputs = {name: inputs[f"aa{stage}_{name}"] for name in names}
            images = _select_op(IDENTITY, len(OPS) - 1, images, stage_inputs, ctx)
    if "cutout_anchor" in inputs:
        images = fn.erase(images, anchor=inputs["cutout_anchor"], shape=inputs["cutout_shape"], axis_names="HW",
                          fill_value=0)
    return fn.crop_mirror_normalize(
        images,
        mean=[255.0 * m for m in mean],
        std=[255.0 * s for s in std],
        dtype=output_dtype,
        output_layout=output_layout,
    )


_FEED_TYPES = {
    "crop_anchor": types.FLOAT, "crop_shape": types.FLOAT,
    "crop_start": types.INT32, "flip": types.INT32, "angle": types.FLOAT, "cutout_anchor": types.FLOAT,
    "cutout_shape": types.FLOAT,
}
for _stage in range(2):
    _FEED_TYPES |= {f"aa{_stage}_op": types.INT32, f"aa{_stage}_factor": types.FLOAT,
                    f"aa{_stage}_one_minus": types.FLOAT64, f"aa{_stage}_mask": types.UINT8,
                    f"aa{_stage}_matrix": types.FLOAT}


def in_memory_pipeline(
    recipe: Recipe,
    feed_names: list[str],
    *,
    height: int,
    width: int,
    device: str,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    output_dtype: types.DALIDataType,
    output_layout: str,
    batch_size: int,
    num_threads: int,
    device_id: int | None,
):
    """A built DALI pipeline fed by ``external_source``: ``images`` (HWC uint8 batch) plus ``feed_names``."""

    @pipeline_def(enable_conditionals=bool(recipe.autoaugment), exec_dynamic=True, prefetch_queue_depth=1)
    def graph():
        images = fn.external_source(name="images", layout="HWC", dtype=types.UINT8, device=device)
        inputs = {name: fn.external_source(name=name, dtype=_FEED_TYPES[name]) for name in feed_names}
        return augment(images, inputs, recipe, height=height, width=width, device=device, mean=mean, std=std,
                       output_dtype=output_dtype, output_layout=output_layout)

    pipe = graph(batch_size=batch_size, num_threads=num_threads, device_id=device_id)
    pipe.build()
    return pipe


# ---------------------------------------------------------------------------------------------------------------
# The BatchPipeline.


class DaliPipeline:
    """``pipeline(indices, seed) -> (images, labels)``: the split stays in (device) memory as uint8 NHWC, the
    batch is gathered by torch and augmented by DALI."""

    backend = "dali"

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        recipe: Recipe,
        *,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        device: torch.device,
        dtype: torch.dtype,
        channels_last: bool,
        num_threads: int = 2,
    ) -> None:
        self.recipe = recipe
        self.device = device
        self.dtype = dtype
        self.channels_last = channels_last
        self.num_threads = num_threads
        self.dali_device = "gpu" if device.type == "cuda" else "cpu"
        self.device_id = (device.index or 0) if device.type == "cuda" else None
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.mean, self.std = mean, std
        # DALI cannot normalise into float64, so float64 (exact-comparison) runs take its uint8 output and normalise
        # it like the torch backend does: both backends then hand the models bit-identical pixels.
        _, height, width, _ = images.shape
        self.stages = PixelStages(recipe, recipe.output_size(height, width), mean=mean, std=std, device=device,
                                  dtype=dtype, channels_last=channels_last) if torch_finishes(recipe) else None
        self.float64_tables = None
        if dtype == torch.float64 and self.stages is None:
            _, height, width, _ = images.shape
            shape = (*recipe.output_size(height, width), 3)
            self.float64_tables = tuple(torch.tensor(stats, dtype=torch.float64, device=device).expand(shape)
                                        .contiguous() for stats in (mean, std))
        self._pipe = None
        self._capacity = 0

    def _pipeline(self, batch_size: int, feed_names: list[str]):
        """The DALI pipeline, rebuilt only when a batch is larger than any before (DALI batches may be smaller)."""
        if self._pipe is None or batch_size > self._capacity:
            _, height, width, _ = self.images.shape
            self._pipe = in_memory_pipeline(
                self.recipe, feed_names, height=height, width=width, device=self.dali_device,
                **self._normalization(),
                batch_size=batch_size, num_threads=self.num_threads, device_id=self.device_id,
            )
            self._capacity = batch_size
        return self._pipe

    def __call__(self, indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized (B, 3, h, w) images in ``dtype`` and int64 labels; a pure function of (indices, seed)."""
        indices = torch_ops.to_device(indices.to(torch.int64), self.device)
        _, height, width, _ = self.images.shape
        params = draw_params(self.recipe, len(indices), height, width, seed)
        feeds = parameter_feeds(self.recipe, params, height, width)
        pipe = self._pipeline(len(indices), sorted(feeds))
        stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        batch = self.images.index_select(0, indices)
        # torch CPU tensors make DALI look for a CUDA stream: hand it numpy on the CPU, the tensor on the GPU.
        pipe.feed_input("images", batch if stream is not None else batch.numpy(), cuda_stream=stream)
        for name, values in feeds.items():
            pipe.feed_input(name, values)
        (output,) = pipe.run()
        dense = output.as_tensor()
        out_dtype = {torch.float16: torch.float16, torch.float64: torch.uint8}.get(self.dtype, torch.float32)
        images = torch.empty(dense.shape(), dtype=torch.uint8 if self.stages else out_dtype, device=self.device)
        feed_ndarray(dense, images, cuda_stream=stream)
        if self.stages is not None:
            return self.stages(images, params, seed, params.erasing_boxes), self.labels[indices]
        if self.float64_tables is not None:
            images = torch_ops.normalize(images, *self.float64_tables).permute(0, 3, 1, 2)
            return (images if self.channels_last else images.contiguous()), self.labels[indices]
        images = images.permute(0, 3, 1, 2) if self.channels_last else images
        return images.to(self.dtype), self.labels[indices]

    def _normalization(self) -> dict:
        """DALI's output stage: normalised float16/float32, or (float64 runs) the augmented uint8 NHWC pixels."""
        if self.float64_tables is not None or self.stages is not None:
            return dict(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255), output_dtype=types.UINT8,
                        output_layout="HWC")
        return dict(mean=self.mean, std=self.std,
                    output_dtype=types.FLOAT16 if self.dtype == torch.float16 else types.FLOAT,
                    output_layout="HWC" if self.channels_last else "CHW")
