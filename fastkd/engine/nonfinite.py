"""`train.nonfinite: skip`: an optimizer step whose loss is NaN/inf leaves no trace, decided on the device."""

from __future__ import annotations

import torch
import torch.nn as nn

from . import distributed


class SkipNonFinite:
    """Keeps a copy of a learner's state as of its last good step and puts it back after a non-finite one.

    The state is everything a step or the forward before it changes: parameters, buffers (BN running
    statistics) and optimizer state. `torch.where` on a device flag does the choice, so there is no host sync;
    the price is one extra copy of that state and a few element-wise ops per tensor and step. Learners that share
    one optimizer (the ViT reference's AdamW over teacher and student) share one guard over all their models, since
    a step through either moves both.
    """

    def __init__(self, models: list[nn.Module], optimizer: torch.optim.Optimizer):
        self.models = models
        self.optimizer = optimizer
        self._good: dict[tuple, torch.Tensor] | None = None

    def _state(self) -> dict[tuple, torch.Tensor]:
        tensors: dict[tuple, torch.Tensor] = {}
        for index, model in enumerate(self.models):
            for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
                tensors[("model", index, name)] = tensor.data
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        for index, param in enumerate(params):
            for key, value in self.optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor):
                    tensors[("optimizer", index, key)] = value
        return tensors

    def begin(self) -> None:
        """Take the first good copy (before the run's first step)."""
        if self._good is None:
            self._good = {key: t.detach().clone() for key, t in self._state().items()}

    def end(self, loss: torch.Tensor) -> None:
        """Keep the step if `loss` and the new state are finite, else restore the last good state.

        The state is checked too: a finite loss can still give an update that overflows the weights."""
        self._keep_if_finite(torch.isfinite(loss.detach()).all())

    def settle(self) -> None:
        """Before evaluating or saving: put back the last good state if anything since made it non-finite (a
        no-grad forward in train mode, e.g. teacher targets at a replay, updates BN statistics between steps)."""
        if self._good is not None:
            self._keep_if_finite(None)

    @torch.no_grad()
    def _keep_if_finite(self, loss_finite: torch.Tensor | None) -> None:
        assert self._good is not None, "begin() before end()"
        state = self._state()
        checks = [torch.isfinite(t).all() for t in state.values() if t.is_floating_point()]
        if loss_finite is not None:
            checks.append(loss_finite)
        finite = distributed.on_every_rank(torch.stack(checks).all())  # a rank's non-finite share spoils the step
        for key, tensor in state.items():
            # Optimizer state is created lazily at a parameter's first step; before that it was, in effect, zero.
            good = self._good.setdefault(key, torch.zeros_like(tensor))
            kept = torch.where(finite.to(tensor.device), tensor, good)
            tensor.copy_(kept)
            good.copy_(kept)
