"""Dropout ops of Spaced Dropout (docs/semantics.md §3.3, §7) as persistent modules whose rate lives in a
device buffer.

The reference builds a fresh dropout module with a Python-float rate inside every forward. Here the rate is a
0-dim float64 buffer that is updated in place, so changing it every step needs no recompile and no host sync.
float64 keeps MaxDropout's threshold ``1 - p`` bit-identical to the reference, which computes it in Python.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..kernels.global_batch import global_aminmax, global_rand_like

Rate = float | torch.Tensor


def standard_dropout(x: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """Inverted dropout: zero each element with probability ``rate``, scale the rest by 1/(1 - rate).

    ``rate`` is a 0-dim tensor, so this also works inside a compiled graph where the rate changes per step.
    At rate 0 the output equals ``x`` bit for bit; at rate 1 it is all zeros, as ``nn.Dropout(1.0)``.
    """
    keep = global_rand_like(x, torch.float32) >= rate  # under torchrun: this rank's rows of the global draw
    # rate == 1 would give 1/0; every element is dropped then, so any finite scale is right.
    scale = torch.where(rate < 1, 1 / (1 - rate), 0.0)
    return x * keep * scale


def max_dropout(x: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """MaxDropout as the reference computes it: zero the largest activations, no rescaling.

    With n = (x - min x) / (max x - min x) over the *whole batch tensor* (not per sample or channel),
    elements with n > 1 - rate (strictly) become 0. Rate 0 therefore zeros nothing (n <= 1). When
    max == min the reference divides 0 by 0 and every comparison with NaN is false, so nothing is zeroed;
    here the span is replaced by 1 in that case, which gives the same result without producing NaN.
    """
    values = x.detach()
    low, high = global_aminmax(values)  # under torchrun: of the global batch
    span = high - low
    normalised = (values - low) / torch.where(span > 0, span, torch.ones_like(span))
    # torch.where keeps channels_last; out-of-place masked_fill returns a contiguous tensor.
    return torch.where(normalised > 1 - rate, 0.0, x)


def check_rate(rate: float, what: str = "dropout rate") -> float:
    """Reject a Python rate outside [0, 1] with a message naming the value (tensors are not read: no sync)."""
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {rate}")
    return float(rate)


class RateDropout(nn.Module):
    """Base of the dropout ops: holds the rate buffer and decides when the op is active.

    Subclasses set ``op``, a function ``(x, rate) -> x`` applied when the op is active.

    Args:
        rate: drop rate p in [0, 1]; with ``random_rate`` it is the upper bound of the per-call draw.
        random_rate: draw the rate used in each call as ``rate * U[0, 1)`` on the device (the reference's
            random spaced variant, one independent draw per op and forward).
        active_at_eval: also drop in eval mode. The reference rebuilds its ops inside every forward, so they
            are always in training mode (docs/semantics.md R14); ``False`` is the standard behaviour.
    """

    op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __init__(self, rate: float = 0.3, *, random_rate: bool = False, active_at_eval: bool = False):
        super().__init__()
        # Not persistent: the reference keeps no dropout state in its checkpoints, and the rate is
        # rewritten by the schedule before it is used.
        self.register_buffer("rate", torch.tensor(check_rate(rate), dtype=torch.float64), persistent=False)
        self.random_rate = random_rate
        self.active_at_eval = active_at_eval

    def set_rate(self, rate: Rate) -> None:
        """Write a new rate in place. Pass a Python float or a one-element tensor on the module's device;
        a CPU tensor copied to a GPU buffer would make the host wait. Tensor values are not range-checked
        (that would need a host sync), so keep them in [0, 1]."""
        if isinstance(rate, torch.Tensor):
            if rate.numel() != 1:
                raise ValueError(f"set_rate takes one rate, got a tensor of shape {tuple(rate.shape)}")
            self.rate.copy_(rate.reshape(()))
        else:
            self.rate.fill_(check_rate(rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training or self.active_at_eval):
            return x
        rate = self.rate
        if self.random_rate:
            rate = rate * torch.rand((), device=rate.device, dtype=rate.dtype)
        return self.op(x, rate)

    def extra_repr(self) -> str:
        return f"random_rate={self.random_rate}, active_at_eval={self.active_at_eval}"


class StandardDropout(RateDropout):
    """Inverted dropout with a buffer-held rate (reference ``StandardDropout`` / ``SpacedDropout``)."""

    op = staticmethod(standard_dropout)


class MaxDropout(RateDropout):
    """Global min-max MaxDropout with a buffer-held rate (reference ``MaxDropout`` / ``MaxSpacedDropout``)."""

    op = staticmethod(max_dropout)


DROPOUT_OPS: dict[str, type[RateDropout]] = {"standard": StandardDropout, "max": MaxDropout}


class DropoutSites:
    """Rate controls shared by the models whose dropout ops are listed, in forward order, by ``dropout_sites``."""

    dropout_sites: tuple[RateDropout, ...]

    def set_drop_rates(self, rates: Rate) -> None:
        """Set the rate of every site: a Python float, a 0-dim tensor (same rate everywhere) or a tensor with one
        rate per site, in ``dropout_sites`` order. Tensors should live on the model's device; no host sync."""
        sites = self.dropout_sites
        if not isinstance(rates, torch.Tensor):
            check_rate(rates)
            for site in sites:
                site.set_rate(rates)
            return
        if rates.shape not in ((), (len(sites),)):
            raise ValueError(f"set_drop_rates takes a scalar or a tensor of shape ({len(sites)},), "
                             f"got {tuple(rates.shape)}")
        per_site = rates.expand(len(sites))
        for i, site in enumerate(sites):
            site.set_rate(per_site[i])

    @property
    def active_at_eval(self) -> bool:
        return self.dropout_sites[0].active_at_eval

    @active_at_eval.setter
    def active_at_eval(self, value: bool) -> None:
        for site in self.dropout_sites:
            site.active_at_eval = value

    @property
    def random_rates(self) -> bool:
        return self.dropout_sites[0].random_rate

    @random_rates.setter
    def random_rates(self, value: bool) -> None:
        for site in self.dropout_sites:
            site.random_rate = value
