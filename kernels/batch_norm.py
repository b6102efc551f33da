"""Training-mode batch norm for channels-last activations on the CPU, computed over the (N*H*W, C) row matrix.

Why: ATen's channels-last batch-norm kernels vectorise along C, and a C that is not a multiple of the SIMD width
(16 floats under AVX-512, 8 under AVX2) sends every row through the masked tail path: on a 2-core AVX-512 Xeon the
forward+backward of a (64, 22, 32, 32) batch took 12.0 ms channels-last against 2.8 ms contiguous, which cancels
channels-last's faster convolutions for nets of such widths (the self-KD ResNet at width/8: 22, 45, 90, 181).
Here the same statistics come from sums over the row matrix regrouped into wide rows (one vectorised reduction
each) and the normalisation from `addcmul`s over those rows, so channels-last stays the faster layout at every
width.

`RowBatchNorm2d` is an `nn.BatchNorm2d` (same parameters, buffers and state_dict keys) that takes this path only
where ATen's is slow (training, CPU, float32/float64, channels-last, `native_channels_last_is_slow(C)`, a batch of
at least `MIN_ELEMENTS`); everything else is the parent's forward.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

MIN_ELEMENTS = 1 << 18
"""Below this many elements the row path's extra kernels cost as much as ATen's tail path ((64, 45, 8, 8) = 184k
elements: 0.91 ms forward+backward either way; (64, 22, 16, 16) = 360k: 1.09 ms against 2.70 ms)."""


def simd_floats() -> int:
    """Floats per SIMD vector of ATen's CPU kernels on this machine (its Vectorized<float>::size())."""
    return 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8


def native_channels_last_is_slow(num_features: int) -> bool:
    """Whether ATen's channels-last batch norm takes its slow tail path for a large share of each row: C not a
    multiple of the SIMD width and under four vectors wide (forward+backward, AVX-512, 2 cores: C = 8: 6.6 ms
    native against 1.9 ms here, C = 45: 3.2 against 2.2; from C = 90 (5 vectors + 10) the two are even)."""
    lanes = simd_floats()
    return num_features % lanes != 0 and num_features < 4 * lanes


def _wide_rows(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The channels-last (N, C, H, W) tensor `t` as its (N*H*W, C) row matrix regrouped k rows at a time into
    (N*H*W/k, k*C), and k: reductions and per-channel scalings then run along rows of k*C contiguous values (over
    C < 16 columns a plain sum(0) is ~8x slower, and broadcasting a C-vector several times slower than a k*C one)."""
    c = t.shape[1]
    m = t.numel() // c
    k = next(k for k in (64, 32, 16, 8, 4, 2, 1) if m % k == 0)
    return t.permute(0, 2, 3, 1).reshape(m // k, k * c), k


def _channel_sums(wide: torch.Tensor, k: int) -> torch.Tensor:
    return wide.sum(0).view(k, -1).sum(0)


class _RowBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor,
                running_var: torch.Tensor, factor: float, eps: float) -> torch.Tensor:
        wide, k = _wide_rows(x)
        m = x.numel() // x.shape[1]
        mean = _channel_sums(wide, k) / m
        centred = wide - mean.repeat(k)
        var = _channel_sums(centred * centred, k) / m
        invstd = torch.rsqrt(var + eps)
        out = torch.empty_like(x, memory_format=torch.channels_last)
        torch.addcmul(bias.repeat(k), centred, (weight * invstd).repeat(k), out=_wide_rows(out)[0])
        running_mean.lerp_(mean, factor)
        running_var.lerp_(var * (m / max(m - 1, 1)), factor)
        ctx.save_for_backward(centred, weight, invstd)
        ctx.k = k
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        centred, weight, invstd = ctx.saved_tensors
        k = ctx.k
        grad_wide, _ = _wide_rows(grad_out.contiguous(memory_format=torch.channels_last))
        m = centred.numel() // weight.numel()
        grad_bias = _channel_sums(grad_wide, k)
        grad_scale = _channel_sums(grad_wide * centred, k)  # sum_i g_i (x_i - mean)
        grad_x = None
        if ctx.needs_input_grad[0]:
            scale = weight * invstd
            # dx = scale * (g - mean(g) - xhat * mean(g * xhat)), xhat = centred * invstd
            grad_x = torch.empty_like(grad_out, memory_format=torch.channels_last)
            out = _wide_rows(grad_x)[0]
            torch.addcmul((scale * grad_bias / -m).repeat(k), grad_wide, scale.repeat(k), out=out)
            out.addcmul_(centred, (scale * invstd * invstd * grad_scale / -m).repeat(k))
        return grad_x, grad_scale * invstd, grad_bias, None, None, None, None


class RowBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training forward on slow channels-last shapes runs over the row matrix."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._slow_native = native_channels_last_is_slow(self.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._takes_row_path(x):
            return super().forward(x)
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return _RowBatchNorm.apply(x, self.weight, self.bias, self.running_mean, self.running_var, factor, self.eps)

    def _takes_row_path(self, x: torch.Tensor) -> bool:
        return (self._slow_native and self.training and self.track_running_stats and self.affine
                and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.dim() == 4
                and x.numel() >= MIN_ELEMENTS and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())


def swap_batchnorm(module: nn.Module, make: Callable[[nn.modules.batchnorm._BatchNorm], nn.Module | None]) -> nn.Module:
    """`module` with every batch norm for which `make(bn)` returns a new one of the same configuration replaced,
    sharing the old one's parameters and buffers (the same objects, so state_dict keys and optimizers are
    unaffected; build optimizers after the swap anyway)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        new = make(module)
        if new is None:
            return module
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        swapped = swap_batchnorm(child, make)
        if swapped is not child:
            setattr(module, name, swapped)
    return module


def use_row_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every nn.BatchNorm2d (exactly that class) as a RowBatchNorm2d."""
    def make(bn: nn.modules.batchnorm._BatchNorm) -> nn.Module | None:
        if type(bn) is not nn.BatchNorm2d:
            return None
        return RowBatchNorm2d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    return swap_batchnorm(module, make)
