"""Batched image ops with one parameter per sample, numerically following torchvision.transforms.v2.functional.

Images are uint8 ``(B, C, H, W)`` tensors (any memory format) on any device, except where a docstring says NHWC;
parameters are host tensors, one row per sample. Each op reproduces the arithmetic of the torchvision tensor
kernel it is named after, so a sample comes out as torchvision would make it with the same scalar parameter
(see tests/pipelines/test_torch_ops.py).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from .params import sample_seed

_GREY_WEIGHTS = (0.2989, 0.587, 0.114)


def to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor of per-batch parameters on ``device`` without stalling the host: on CUDA it goes through
    pinned memory as an asynchronous copy (a pageable or blocking copy waits for the queued GPU work, which
    serialises data preparation with the training step); elsewhere a plain move."""
    if device.type != "cuda" or host.device.type != "cpu":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


@lru_cache(maxsize=64)
def device_constant(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small constant tensor (a fill colour, a filter kernel) made once per device, not copied every batch."""
    return to_device(torch.tensor(values, dtype=dtype), device)


def per_sample(values: torch.Tensor, like: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Host values (B,) as a (B, 1, 1, 1) tensor on ``like``'s device, ready to broadcast over C, H, W."""
    return to_device(values.to(dtype).view(-1, 1, 1, 1), like.device)


# ---------------------------------------------------------------------------------------------------------------
# Affine warps (rotate, translate, shear): torchvision's inverse matrix, grid and fill handling, batched.


def inverse_affine_matrices(
    angles: torch.Tensor,
    translate: torch.Tensor,
    shear: torch.Tensor,
    center: torch.Tensor,
) -> torch.Tensor:
    """Per-sample inverse affine matrices (B, 2, 3) in float64, torchvision's ``_get_inverse_affine_matrix`` with
    Python's math per sample as it computes them (a batch's few samples per op: a dozen scalar lines each cost less
    than the ~20 tensor ops a vectorised form launches).

    ``angles`` (B,) and ``shear`` (B, 2) in degrees, ``translate`` (B, 2) in pixels, ``center`` (B, 2) relative to
    the image centre; scale is 1.
    """
    matrices = []
    for rot, (sx, sy), (cx, cy), (tx, ty) in zip(angles.tolist(), shear.tolist(), center.tolist(), translate.tolist()):
        rot, sx, sy = math.radians(rot), math.radians(sx), math.radians(sy)
        cos_sy, tan_sx = math.cos(sy), math.tan(sx)
        a = math.cos(rot - sy) / cos_sy
        b = -(a * tan_sx + math.sin(rot))
        c = math.sin(rot - sy) / cos_sy
        d = math.cos(rot) - c * tan_sx
        cx_plus_tx, cy_plus_ty = cx + tx, cy + ty
        matrices.append([d, -b, cx - d * cx_plus_tx + b * cy_plus_ty,
                         -c, a, cy + c * cx_plus_tx - a * cy_plus_ty])
    return torch.tensor(matrices, dtype=torch.float64).view(-1, 2, 3)


def rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """Inverse matrices of ``TF.rotate(img, angle)`` about the image centre (counter-clockwise degrees)."""
    zeros = torch.zeros(len(angles), 2, dtype=torch.float64)
    # torchvision wraps the angle into [0, 360) and rotates by its negative in the affine convention.
    return inverse_affine_matrices(-torch.remainder(angles, 360.0), zeros, zeros, zeros)


def _rescaled_matrices(matrices: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    """torchvision's ``theta.T / [0.5 * W, 0.5 * H]`` (B, 3, 2) for host float64 matrices (B, 2, 3), computed in
    float32 on the host (IEEE division: the same bits as on the device) and moved to ``device`` in one copy.
    Rows: the multipliers of x, of y, and the offset."""
    theta = matrices.to(torch.float32).transpose(1, 2)
    scale = torch.tensor([0.5 * width, 0.5 * height], dtype=torch.float32)
    return to_device((theta / scale).contiguous(), device)


def _affine_grid(rescaled: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sampling grid (B, H, W, 2) of torchvision's ``_affine_grid`` for ``rescaled`` (:func:`_rescaled_matrices`).

    torchvision multiplies a (1, H*W, 3) base grid by one matrix with ``bmm``; written out elementwise in the same
    order (x*t0 + y*t1) + t2 it gives the same bits on the CPU at a fraction of the cost of a batched ``bmm``.
    """
    device = rescaled.device
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, steps=width, device=device).view(1, 1, width, 1)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, steps=height, device=device).view(1, height, 1, 1)
    rescaled = rescaled.view(-1, 1, 3, 2)
    return (xs * rescaled[:, :, 0:1] + ys * rescaled[:, :, 1:2]) + rescaled[:, :, 2:3]


def nearest_sources(rescaled: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source (rows, cols) (B, H, W) that nearest ``grid_sample`` (CPU kernel) reads for each output pixel, as
    rounded float32; a source outside 0..H-1 x 0..W-1 means the output is the fill. ``rescaled``: the matrices
    as :func:`_rescaled_matrices` gives them.

    Same arithmetic as ``_affine_grid`` followed by grid_sample's unnormalisation, but per coordinate: tensors
    with a trailing dimension of 2 take the CPU's slow broadcasting path.
    """
    device = rescaled.device
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, steps=width, device=device).view(1, 1, width)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, steps=height, device=device).view(1, height, 1)
    rescaled = rescaled.unsqueeze(-1)  # (B, 3, 2, 1): multipliers of x, of y, the offset

    def source(axis: int, size: int) -> torch.Tensor:
        grid = (xs * rescaled[:, 0, axis:axis + 1] + ys * rescaled[:, 1, axis:axis + 1]) + rescaled[:, 2, axis:axis + 1]
        return grid.add_(1).mul_(size / 2).sub_(0.5).round_()

    return source(1, height), source(0, width)


def _outside(rows: torch.Tensor, cols: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)


Fill = float | tuple[float, ...]


def affine_warp(images: torch.Tensor, matrices: torch.Tensor, mode: str, fill: Fill) -> torch.Tensor:
    """Warp each uint8 image by its inverse matrix (B, 2, 3), as torchvision's ``_apply_grid_transform``."""
    batch, channels, height, width = images.shape
    grid = _affine_grid(_rescaled_matrices(matrices, height, width, images.device), height, width)
    float_images = images.to(torch.float32)
    # For nearest sampling a zero fill equals zero padding; otherwise an extra all-ones channel marks what was inside.
    fill = fill if isinstance(fill, tuple) else (float(fill),)
    with_mask = not (mode == "nearest" and not any(fill))
    if with_mask:
        mask = torch.ones(batch, 1, height, width, dtype=torch.float32, device=images.device)
        float_images = torch.cat((float_images, mask), dim=1)
    warped = F.grid_sample(float_images, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if with_mask:
        warped, mask = torch.tensor_split(warped, indices=(-1,), dim=-3)
        mask = mask.expand_as(warped)
        fill_image = device_constant(fill, torch.float32, images.device).view(1, -1, 1, 1)
        if mode == "nearest":
            warped = torch.where(mask < 0.5, fill_image.expand_as(warped), warped)
        else:
            warped = warped.sub_(fill_image).mul_(mask).add_(fill_image)
    return warped.round_().to(torch.uint8)


def rotate(images: torch.Tensor, angles: torch.Tensor, fill: Fill = 0.0, mode: str = "nearest") -> torch.Tensor:
    """``TF.rotate(img, angle, mode, fill=fill)`` per sample, output size kept."""
    return affine_warp(images, rotation_matrices(angles), mode, fill)


def translate(images: torch.Tensor, pixels: torch.Tensor, axis: int, fill: Fill, mode: str = "nearest") -> torch.Tensor:
    """``TF.affine(img, 0, translate, 1, [0, 0], mode, fill)`` with ``pixels`` along x (axis 0) or y (axis 1)."""
    zeros = torch.zeros(len(pixels), 2, dtype=torch.float64)
    shift = zeros.clone()
    shift[:, axis] = pixels
    return affine_warp(images, inverse_affine_matrices(zeros[:, 0], shift, zeros, zeros), mode, fill)


def shear(images: torch.Tensor, degrees: torch.Tensor, axis: int, fill: Fill) -> torch.Tensor:
    """``TF.affine(img, 0, [0, 0], 1, shear, BILINEAR, fill, center=[0, 0])``: PIL's shear about the top-left corner.

    The reference shears with PIL bicubic; torchvision's tensor affine offers only nearest and bilinear.
    """
    batch = len(degrees)
    _, _, height, width = images.shape
    zeros = torch.zeros(batch, 2, dtype=torch.float64)
    angles = zeros.clone()
    angles[:, axis] = degrees
    corner = torch.tensor([[-0.5 * width, -0.5 * height]], dtype=torch.float64).expand(batch, 2)
    return affine_warp(images, inverse_affine_matrices(zeros[:, 0], zeros, angles, corner), "bilinear", fill)


# ---------------------------------------------------------------------------------------------------------------
# RandomCrop -> flip -> rotation as one gather: every output pixel knows which input pixel (or fill) it shows.


def with_fill_pixels(
    images: torch.Tensor, fills: tuple[int, ...], device: torch.device | None = None
) -> torch.Tensor:
    """The split as (N*H*W + len(fills), C) pixel rows on ``device``, the last rows grey ``fills``: gather sources
    for :func:`crop_flip_rotate`, which points padding and rotation corners at them instead of masking afterwards.
    Filled in place, so the split is copied to the device once."""
    channels = images.shape[-1]
    pixels = torch.empty(images[..., 0].numel() + len(fills), channels, dtype=images.dtype, device=device)
    pixels[: -len(fills)].copy_(images.reshape(-1, channels))
    pixels[-len(fills):] = torch.tensor(fills, dtype=images.dtype).view(-1, 1)
    return pixels


def crop_flip_rotate(
    pixels: torch.Tensor,
    image_shape: tuple[int, int],
    indices: torch.Tensor,
    offsets: torch.Tensor | None,
    flips: torch.Tensor | None,
    angles: torch.Tensor | None,
    padding: int,
) -> torch.Tensor:
    """``rotate(hflip(crop(pad(image, padding, crop_fill))), angle, NEAREST, fill=0)`` per sample, as uint8 NHWC.

    ``pixels`` comes from ``with_fill_pixels(split, (crop_fill, 0))``; ``offsets`` (B, 2) are (top, left) in the
    padded image, ``flips`` (B,) booleans, ``angles`` (B,) degrees; each may be None. The composed map from
    output pixel to source pixel is built first and gathered once.
    """
    height, width = image_shape
    channels = pixels.shape[-1]
    batch, device = len(indices), pixels.device
    index_dtype = torch.int32 if len(pixels) < 2**31 else torch.int64
    crop_fill_row, zero_row = len(pixels) - 2, len(pixels) - 1
    # Without rotation, rows and columns stay separable, (B, H, 1) and (B, 1, W), until the final index.
    rows = torch.arange(height, dtype=index_dtype, device=device).view(1, height, 1).expand(batch, height, 1)
    cols = torch.arange(width, dtype=index_dtype, device=device).view(1, 1, width).expand(batch, 1, width)
    outside_rotation = None
    if angles is not None:
        rows, cols = nearest_sources(_rescaled_matrices(rotation_matrices(angles), height, width, device), height,
                                     width)
        outside_rotation = _outside(rows, cols, height, width)
        rows, cols = rows.to(index_dtype), cols.to(index_dtype)
    if flips is not None:
        cols = torch.where(to_device(flips, device).view(-1, 1, 1), width - 1 - cols, cols)
    outside_image = None
    if offsets is not None and padding:
        offsets = to_device((offsets - padding).to(index_dtype), device)
        rows = rows + offsets[:, 0].view(-1, 1, 1)
        cols = cols + offsets[:, 1].view(-1, 1, 1)
        outside_image = _outside(rows, cols, height, width)
    # Out-of-image entries of `flat` are garbage until the masks point them at the fill rows.
    flat = (indices.to(index_dtype).view(-1, 1, 1) * height + rows) * width + cols
    if outside_image is not None:
        flat = flat.masked_fill_(outside_image, crop_fill_row)
    if outside_rotation is not None:
        flat = flat.masked_fill_(outside_rotation, zero_row)
    return pixels.index_select(0, flat.view(-1)).view(batch, height, width, channels)


# ---------------------------------------------------------------------------------------------------------------
# Colour ops.


def _greyscale_floor(images: torch.Tensor) -> torch.Tensor:
    """torchvision's float greyscale of uint8 RGB, floored: (B, 1, H, W) float32."""
    r, g, b = images.unbind(dim=-3)
    grey = r.mul(_GREY_WEIGHTS[0]).add_(g, alpha=_GREY_WEIGHTS[1]).add_(b, alpha=_GREY_WEIGHTS[2])
    return grey.unsqueeze_(-3).floor_()


def _fused_multiply_add(base: torch.Tensor, other: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``base + alpha * other`` rounded once to float32, like the FMA behind torchvision's ``add_(alpha=...)``.

    The float64 sum of float32 operands is exact here (image values and 24-bit factors), so casting it back rounds
    exactly once; a float32 ``addcmul`` rounds twice and can land one grey level off after truncation.
    """
    return base.double().addcmul_(other.double(), alpha).to(torch.float32)


def _blend(images: torch.Tensor, degenerate: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """``factor * img + (1 - factor) * degenerate``, clamped and truncated to uint8, as torchvision's ``_blend``."""
    scaled = images.mul(per_sample(factors, images))
    one_minus = per_sample(1.0 - factors.to(torch.float64), images).double()
    return _fused_multiply_add(scaled, degenerate, one_minus).clamp_(0, 255).to(torch.uint8)


def adjust_brightness(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return images.mul(per_sample(factors, images)).clamp_(0, 255).to(torch.uint8)


def adjust_saturation(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return _blend(images, _greyscale_floor(images), factors)


def adjust_contrast(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    mean = torch.mean(_greyscale_floor(images), dim=(-3, -2, -1), keepdim=True)
    return _blend(images, mean, factors)


def adjust_sharpness(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Blend with the 3x3 smoothed image on the interior; border pixels stay (torchvision/PIL behaviour)."""
    channels = images.shape[-3]
    if images.shape[-1] <= 2 or images.shape[-2] <= 2:
        return images
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = device_constant(((a, a, a), (a, b, a), (a, a, a)), torch.float32, images.device)
    output = images.to(torch.float32, copy=True)
    blurred = F.conv2d(output, kernel.expand(channels, 1, 3, 3), groups=channels).round_()
    interior = output[..., 1:-1, 1:-1]
    one_minus = per_sample(1.0 - factors.to(torch.float64), images).double()
    interior.copy_(_fused_multiply_add(interior, blurred.sub_(interior), one_minus))
    return output.clamp_(0, 255).to(torch.uint8)


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top ``bits`` bits of every channel."""
    masks = ((1 << bits.to(torch.int64)) - 1) << (8 - bits.to(torch.int64))
    return images & per_sample(masks, images, torch.uint8)


def solarize(images: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Invert the pixels ``>= threshold``."""
    return torch.where(images >= per_sample(thresholds, images), images.bitwise_not(), images)


def solarize_add(images: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
    """timm's SolarizeAdd: add ``amount`` (saturating at 255) to the pixels below 128."""
    added = images.to(torch.int16).add_(per_sample(amounts, images, torch.int16)).clamp_(max=255).to(torch.uint8)
    return torch.where(images < 128, added, images)


def invert(images: torch.Tensor) -> torch.Tensor:
    return images.bitwise_not()


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """torchvision's ``autocontrast_image`` for uint8, with its boolean-mask assignments (a device-to-host sync
    on CUDA: the mask's nonzero count sizes the scatter) written as ``torch.where``; same arithmetic, same bits."""
    float_images = images.to(torch.float32)
    minimum = float_images.amin(dim=(-2, -1), keepdim=True)
    maximum = float_images.amax(dim=(-2, -1), keepdim=True)
    flat = maximum == minimum
    inv_scale = torch.where(flat, 1.0, (maximum - minimum).mul_(1.0 / 255))
    minimum = torch.where(flat, 0.0, minimum)
    return float_images.sub_(minimum).div_(inv_scale).clamp_(0, 255).to(torch.uint8)


def equalize(images: torch.Tensor) -> torch.Tensor:
    return TF.equalize(images)


# ---------------------------------------------------------------------------------------------------------------
# Cutout and normalisation.


def cutout_(images: torch.Tensor, centres: torch.Tensor, length: int) -> torch.Tensor:
    """Zero, in place, one ``length`` x ``length`` box per sample of uint8 NHWC ``images``, centred at ``centres``
    (B, 2) and clipped to the image (docs/semantics.md §2.5)."""
    batch, height, width, channels = images.shape
    centres = to_device(centres, images.device)
    rows = torch.arange(height, device=images.device)
    # One mask entry per (column, channel) keeps the fill a plain elementwise op on the contiguous rows.
    cols = torch.arange(width * channels, device=images.device) // channels
    top, left = (centres - length // 2).unbind(1)
    bottom, right = (centres + length // 2).unbind(1)
    inside_rows = (rows >= top[:, None]) & (rows < bottom[:, None])
    inside_cols = (cols >= left[:, None]) & (cols < right[:, None])
    hole = inside_rows[:, :, None] & inside_cols[:, None, :]
    images.view(batch, height, width * channels).masked_fill_(hole, 0)
    return images


_BICUBIC_A = -0.5
"""Cubic-convolution coefficient of torch's (and PIL's) antialiased bicubic resampling."""


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    inner = ((_BICUBIC_A + 2) * x - (_BICUBIC_A + 3)) * x * x + 1
    outer = (((x - 5) * x + 8) * x - 4) * _BICUBIC_A
    return torch.where(x < 1, inner, torch.where(x < 2, outer, torch.zeros_like(x)))


def antialiased_bicubic_weights(starts: torch.Tensor, lengths: torch.Tensor, in_size: int,
                                out_size: int) -> torch.Tensor:
    """Per-sample resampling matrices (B, out_size, in_size), float64: row i holds the weights with which output
    pixel i mixes the input pixels of the window ``starts .. starts + lengths`` along one axis.

    The weights are PIL's bicubic filter (as torch's ``interpolate(mode="bicubic", antialias=True)`` computes
    them): taps limited to the window and renormalised, widened by the scale when shrinking.
    Only the window's taps are evaluated ((B, out_size, taps), taps = the widest window), then scattered into
    the dense matrices the batched products take.
    """
    lengths = lengths.double().view(-1, 1, 1)
    scale = lengths / out_size
    support = torch.where(scale >= 1, 2.0 * scale, torch.full_like(scale, 2.0))
    invscale = torch.where(scale >= 1, 1.0 / scale, torch.ones_like(scale))
    centre = scale * (torch.arange(out_size, dtype=torch.float64).view(1, -1, 1) + 0.5)
    first = torch.clamp(torch.trunc(centre - support + 0.5), min=0)
    stop = torch.minimum(torch.trunc(centre + support + 0.5), lengths)
    taps = int(math.ceil(2 * float(support.max()))) + 1  # stop - first <= 2 * support + 1
    offset = first + torch.arange(taps, dtype=torch.float64)  # (B, out_size, taps), from the window's start
    weights = _bicubic((offset - centre + 0.5) * invscale) * (offset < stop)
    weights = weights / weights.sum(-1, keepdim=True)
    columns = (offset + starts.double().view(-1, 1, 1)).clamp_(max=in_size - 1).long()  # taps past stop weigh 0
    return torch.zeros(len(weights), out_size, in_size, dtype=torch.float64).scatter_add_(2, columns, weights)


def resized_crops(images: torch.Tensor, indices: torch.Tensor, boxes: torch.Tensor, size: int,
                  flips: torch.Tensor | None = None) -> torch.Tensor:
    """timm's RandomResizedCrop on PIL images (crop the box, PIL bicubic resize to ``size``), then a horizontal
    flip where ``flips`` says so, for a whole batch of the NHWC uint8 split in two batched matrix products;
    returns NCHW uint8 (B, C, size, size).

    Each box becomes a row and a column resampling matrix (:func:`antialiased_bicubic_weights`), built on the
    host; the flip reverses the column matrix's rows. The products run in float64 (immune to TF32 matmul
    settings, and cheap next to a ViT step); like PIL, the horizontal pass is rounded to 8 bits before the
    vertical one. Against PIL's fixed-point weights a pixel can differ by two grey levels
    (tests/pipelines/test_vit_recipe.py).
    """
    _, height, width, _ = images.shape
    top, left, box_h, box_w = boxes.unbind(1)
    rows = antialiased_bicubic_weights(top, box_h, height, size)
    cols = antialiased_bicubic_weights(left, box_w, width, size)
    if flips is not None:
        cols = torch.where(flips.view(-1, 1, 1), cols.flip(1), cols)
    device = images.device
    rows = to_device(rows, device).unsqueeze(1)  # (B, 1, size, H)
    cols = to_device(cols, device).unsqueeze(1)  # (B, 1, size, W)
    chosen = images.index_select(0, to_device(indices, device)).permute(0, 3, 1, 2).to(torch.float64)  # (B, C, H, W)
    across = (chosen @ cols.transpose(-1, -2)).round_().clamp_(0, 255)
    return (rows @ across).round_().clamp_(0, 255).to(torch.uint8)


def erase_with_noise_(images: torch.Tensor, boxes: torch.Tensor, seed: int, first_row: int = 0) -> torch.Tensor:
    """timm's per-pixel RandomErasing on normalized NCHW float ``images``, in place: each box of ``boxes`` (B, 4)
    with height > 0 gets standard-normal noise from a generator on the images' device keyed by the sample
    (``params.sample_seed(seed, row)``), so a sample's noise depends on nothing else in its batch and replays
    exactly on that device type. ``images`` may be rows ``first_row ..`` of the batch ``boxes`` describes (a
    data-parallel rank's block)."""
    rows = boxes[first_row:first_row + len(images)]
    for i in torch.nonzero(rows[:, 2] > 0).squeeze(1).tolist():
        top, left, height, width = rows[i].tolist()
        generator = torch.Generator(device=images.device).manual_seed(sample_seed(seed, first_row + i))
        images[i, :, top:top + height, left:left + width] = torch.randn(
            images.shape[1], height, width, generator=generator, device=images.device)
    return images


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """ToTensor + Normalize, ``(x * (1/255) - mean) / std`` in the dtype of ``mean``, for uint8 NHWC ``images``.

    ``mean`` and ``std`` are full (H, W, 3) tables: broadcasting a size-3 innermost dimension is several times
    slower on the CPU than an elementwise op against a table.
    """
    return images.to(mean.dtype).mul_(1.0 / 255.0).sub_(mean).div_(std)


def batch_cutout(x: torch.Tensor, half: int | torch.Tensor) -> torch.Tensor:
    """Zero rows [cy-half, cy+half) x cols [cx-half, cx+half) (clipped) of every image and channel, one centre
    (cy, cx) uniform over the image for the whole batch, drawn on the device (the reference's `Cutout_input`)."""
    height, width = x.shape[-2:]
    cy = torch.randint(height, (), device=x.device)
    cx = torch.randint(width, (), device=x.device)
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    in_rows = (rows >= cy - half) & (rows < cy + half)
    in_cols = (cols >= cx - half) & (cols < cx + half)
    keep = ~(in_rows[:, None] & in_cols[None, :])
    return x * keep.to(x.dtype)
