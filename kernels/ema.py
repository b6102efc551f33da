"""Flat-buffer EMA of a model (one fused pass per dtype) and the host-side spaced-EMA schedule of docs/semantics.md §6.

The parameters (and, by policy, buffers) of the source model and of its EMA copy are re-pointed to views into one
flat storage per (device, dtype), so `ema <- d * ema + (1 - d) * p` is a single lerp / Triton launch over one
buffer instead of the reference's Python loop over tensors. `1 - d` lives in a device scalar of the precision the
update computes in (float64 for float64 models, as the reference's double arithmetic; float32 otherwise): changing
the decay neither recompiles nor syncs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

EmaPolicy = Literal["params_only", "params_and_buffers", "copy_buffers"]
EmaImpl = Literal["auto", "triton", "twin"]

_POLICIES = ("params_only", "params_and_buffers", "copy_buffers")
_IMPLS = ("auto", "triton", "twin")
# Every view starts on a multiple of this many elements, so vectorised kernels see aligned tensors.
_ALIGN_ELEMENTS = 32


@dataclass
class _FlatGroup:
    """Source and EMA tensors of one (device, dtype), both stored as views into one flat buffer each."""

    source: torch.Tensor
    average: torch.Tensor
    source_tensors: list[torch.Tensor]
    average_tensors: list[torch.Tensor]
    pointers: tuple[int, ...] = field(default=())

    def current_pointers(self) -> tuple[int, ...]:
        return tuple(t.data_ptr() for t in self.source_tensors) + tuple(t.data_ptr() for t in self.average_tensors)


class FlatEMA:
    """Exponential moving average of `model` kept in flat per-dtype buffers.

    Create it BEFORE `torch.compile`, DDP wrapping and CUDA-graph capture of the model, and preferably before the
    optimizer: flattening swaps each parameter's storage (`param.data = view`), which torch optimizers follow
    (they hold the same Parameter objects and update them in place) but captured graphs and DDP buckets do not.
    If the model's tensors are replaced later (`.to()` to another device/dtype/memory format,
    `load_state_dict(assign=True)`), the next `update()` detects it and re-flattens; `refresh()` does it on demand.

    Args:
        model: the source model; its parameters (and buffers, by policy) become views into flat storage.
        decay: d in `ema <- d * ema + (1 - d) * p`.
        policy: "params_only" (the reference: only parameters averaged, EMA buffers never touched),
            "params_and_buffers" (floating buffers averaged too, integer buffers copied) or
            "copy_buffers" (parameters averaged, all buffers copied).
        impl: "auto" (Triton on CUDA, torch lerp otherwise), "triton" or "twin".
    """

    def __init__(self, model: nn.Module, decay: float, policy: EmaPolicy = "params_only", impl: EmaImpl = "auto"):
        if policy not in _POLICIES:
            raise ValueError(f"policy={policy!r} is not one of {_POLICIES}")
        if impl not in _IMPLS:
            raise ValueError(f"impl={impl!r} is not one of {_IMPLS}")
        self.policy: EmaPolicy = policy
        self.impl: EmaImpl = impl
        self.source_model = model
        self.module = copy.deepcopy(model).requires_grad_(False)
        self._decay = 0.0
        self._weights: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._averaged: list[_FlatGroup] = []
        self._copied: list[_FlatGroup] = []
        self._first_param: nn.Parameter | None = None
        self.refresh()
        self.set_decay(decay)

    @property
    def decay(self) -> float:
        return self._decay

    def set_decay(self, decay: float) -> None:
        """Change d in place in the device scalars (no recompilation of the update, no host sync)."""
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self._decay = float(decay)
        for weight in self._weights.values():
            weight.fill_(1.0 - self._decay)

    @torch.no_grad()
    def update(self) -> None:
        """ema <- d * ema + (1 - d) * source, one pass per flat buffer; copied buffers by one copy per buffer."""
        if not self._is_aliased():
            self.refresh()
        for group in self._averaged:
            weight = self._weights[_weight_key(group.source)]
            if self._use_triton(group.source):
                from ._ema_triton import ema_lerp_

                ema_lerp_(group.average, group.source, weight)
            else:
                group.average.lerp_(group.source, weight)
        for group in self._copied:
            group.average.copy_(group.source)

    @torch.no_grad()
    def refresh(self) -> None:
        """(Re)build the flat buffers from the current tensors of both models, keeping their values and strides."""
        averaged, copied = _pair_tensors(self.source_model, self.module, self.policy)
        self._averaged = _build_groups(averaged)
        self._copied = _build_groups(copied)
        self._first_param = next(iter(self.source_model.parameters()), None)
        keys = {_weight_key(group.source) for group in self._averaged}
        self._weights = {
            key: self._weights.get(key, torch.full((), 1.0 - self._decay, dtype=key[1], device=key[0])) for key in keys
        }

    def state_dict(self) -> dict:
        return {"decay": self._decay, "policy": self.policy, "module": self.module.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the averaged weights in place (the flat views stay aliased) and the decay."""
        if state_dict["policy"] != self.policy:
            raise ValueError(f"checkpoint EMA policy {state_dict['policy']!r} differs from this EMA's {self.policy!r}")
        self.module.load_state_dict(state_dict["module"])
        self.set_decay(state_dict["decay"])
        if not self._is_aliased():
            self.refresh()

    def _is_aliased(self) -> bool:
        first = next(iter(self.source_model.parameters()), None)
        if first is not self._first_param:
            return False
        return all(group.current_pointers() == group.pointers for group in self._averaged + self._copied)

    def _use_triton(self, tensor: torch.Tensor) -> bool:
        return self.impl == "triton" or (self.impl == "auto" and tensor.is_cuda)


def _weight_key(flat: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of the `1 - d` scalar a flat buffer is updated with: the buffer's own precision, at least
    float32 (a bf16/fp16 scalar would round 1 - 0.999 by ~0.05%; the update computes those in float32)."""
    return flat.device, torch.promote_types(flat.dtype, torch.float32)


def _pair_tensors(
    source: nn.Module, average: nn.Module, policy: EmaPolicy
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
    """(source, ema) tensor pairs to average and to copy, matched by name; EMA tensors follow the source's
    device and dtype (so `.to()` on the source model carries the EMA along)."""
    source_params, average_params = dict(source.named_parameters()), dict(average.named_parameters())
    if source_params.keys() != average_params.keys():
        raise ValueError("the EMA copy's parameter names no longer match the model's; recreate the FlatEMA")
    averaged: list[tuple[torch.Tensor, torch.Tensor]] = []
    copied: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name, param in source_params.items():
        (averaged if param.is_floating_point() else copied).append((param, average_params[name]))
    if policy != "params_only":
        average_buffers = dict(average.named_buffers())
        for name, buffer in source.named_buffers():
            floating = buffer.is_floating_point()
            (averaged if floating and policy == "params_and_buffers" else copied).append((buffer, average_buffers[name]))
    for source_tensor, average_tensor in averaged + copied:
        if average_tensor.device != source_tensor.device or average_tensor.dtype != source_tensor.dtype:
            average_tensor.data = average_tensor.data.to(device=source_tensor.device, dtype=source_tensor.dtype)
    return averaged, copied


def _build_groups(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> list[_FlatGroup]:
    by_key: dict[tuple[torch.device, torch.dtype], list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for source_tensor, average_tensor in pairs:
        by_key.setdefault((source_tensor.device, source_tensor.dtype), []).append((source_tensor, average_tensor))
    groups = []
    for members in by_key.values():
        sources = [s for s, _ in members]
        averages = [a for _, a in members]
        # The EMA views copy the source's strides: the flat lerp pairs elements by memory position.
        group = _FlatGroup(_flatten(sources, sources), _flatten(averages, sources), sources, averages)
        group.pointers = group.current_pointers()
        groups.append(group)
    return groups


def _flatten(tensors: list[torch.Tensor], layouts: list[torch.Tensor]) -> torch.Tensor:
    """Move the tensors' data into one zero-padded flat buffer, re-pointing each tensor at its view in place.

    Each view takes the strides of the matching `layouts` tensor when that layout is dense (contiguous,
    channels_last, any permutation); other layouts become contiguous.
    """
    offsets, total = [], 0
    for tensor in tensors:
        offsets.append(total)
        total += -(-tensor.numel() // _ALIGN_ELEMENTS) * _ALIGN_ELEMENTS
    flat = torch.zeros(total, dtype=tensors[0].dtype, device=tensors[0].device)
    for tensor, layout, offset in zip(tensors, layouts, offsets):
        if tensor.shape != layout.shape:
            raise ValueError(f"EMA tensor shape {tuple(tensor.shape)} differs from the model's {tuple(layout.shape)}")
        stride = layout.stride() if _is_dense(layout) else _contiguous_strides(layout.shape)
        view = flat.as_strided(layout.shape, stride, offset)
        view.copy_(tensor.detach())
        tensor.data = view
    return flat


def _is_dense(tensor: torch.Tensor) -> bool:
    """True if the elements exactly fill numel consecutive slots (a permutation of a contiguous layout)."""
    dims = sorted((s, n) for s, n in zip(tensor.stride(), tensor.shape) if n != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return True


def _contiguous_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, running = [], 1
    for size in reversed(shape):
        strides.append(running)
        running *= max(size, 1)
    return tuple(reversed(strides))
