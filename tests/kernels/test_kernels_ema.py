"""FlatEMA (CPU twin) against the float64 closed form; aliasing of the flat views; policies."""

from __future__ import annotations

import io

import pytest
import torch
from kd_oracles import ema_closed_form
from kernel_checks import assert_close_verbose
from torch import nn

from fastkd.kernels import FlatEMA


def _small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad(set_to_none=True)
    model(torch.randn(4, 3, 8, 8)).square().mean().backward()
    optimizer.step()


def _assert_aliased(ema: FlatEMA) -> None:
    """Every tracked tensor of both models lives inside its group's flat storage."""
    for group in ema._averaged + ema._copied:
        for flat, tensors in ((group.source, group.source_tensors), (group.average, group.average_tensors)):
            storage = flat.untyped_storage().data_ptr()
            assert all(t.untyped_storage().data_ptr() == storage for t in tensors)
    tracked = {id(t) for g in ema._averaged + ema._copied for t in g.source_tensors}
    assert all(id(p) in tracked for p in ema.source_model.parameters())


@pytest.mark.parametrize("decay, dtype, tolerance", [
    (0.0, torch.float32, 1e-5), (0.5, torch.float32, 1e-5), (0.999, torch.float32, 1e-5),
    # train.float64 follows the reference's double arithmetic: 1 - 0.999 rounded to float32 would move every
    # averaged weight by ~1e-8 relative per update, far above float64 rounding
    (0.999, torch.float64, 1e-13),
])
def test_k_updates_equal_the_closed_form(decay: float, dtype: torch.dtype, tolerance: float) -> None:
    model = _small_model().to(dtype)
    ema = FlatEMA(model, decay, impl="twin")
    assert {weight.dtype for weight in ema._weights.values()} == {dtype}
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    history: dict[str, list[torch.Tensor]] = {name: [] for name in initial}
    for _ in range(7):
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.add_(torch.randn_like(param))
                history[name].append(param.detach().clone())
        ema.update()
    for name, average in ema.module.named_parameters():
        expected = ema_closed_form(initial[name], history[name], decay)
        assert_close_verbose(average, expected, rtol=tolerance, atol=tolerance / 10, name=name)


def test_reduced_precision_models_keep_a_float32_weight() -> None:
    ema = FlatEMA(_small_model().to(torch.bfloat16), 0.999, impl="twin")
    assert [(weight.dtype, float(weight)) for weight in ema._weights.values()] == \
        [(torch.float32, float(torch.tensor(1 - 0.999, dtype=torch.float32)))]


def test_optimizer_steps_keep_the_views_aliased_and_visible_to_the_update() -> None:
    model = _small_model()
    ema = FlatEMA(model, 0.0, impl="twin")  # decay 0: the EMA becomes an exact copy of the source
    for optimizer in (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=True),
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=False),
        torch.optim.Adam(model.parameters(), lr=1e-2, fused=True),
        torch.optim.AdamW(model.parameters(), lr=1e-2, foreach=True),
    ):
        _train_step(model, optimizer)
        _assert_aliased(ema)
        ema.update()
        for (name, param), average in zip(model.named_parameters(), ema.module.parameters()):
            assert torch.equal(param, average), name


def test_optimizer_created_before_the_ema_still_updates_the_flattened_parameters() -> None:
    model = _small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=True)
    ema = FlatEMA(model, 0.0, impl="twin")
    before = ema._averaged[0].source.clone()
    _train_step(model, optimizer)
    assert not torch.equal(ema._averaged[0].source, before), "the optimizer step did not reach the flat buffer"
    _assert_aliased(ema)


@pytest.mark.parametrize(
    "move",
    [lambda m: m.to(torch.float64), lambda m: m.to(memory_format=torch.channels_last), lambda m: m.float()],
    ids=["to_float64", "to_channels_last", "to_same_dtype"],
)
def test_to_is_detected_and_reflattened(move) -> None:
    model = _small_model()
    ema = FlatEMA(model, 0.5, impl="twin")
    expected = [0.5 * a.double() + 0.5 * p.double() for a, p in zip(ema.module.parameters(), model.parameters())]
    move(model)
    ema.update()
    _assert_aliased(ema)
    for (name, average), param, want in zip(ema.module.named_parameters(), model.parameters(), expected):
        assert average.dtype == param.dtype and average.stride() == param.stride(), name
        assert_close_verbose(average, want, rtol=1e-6, atol=1e-7, name=name)


def test_checkpoint_load_keeps_aliasing_and_state_dict_round_trips() -> None:
    model = _small_model(0)
    ema = FlatEMA(model, 0.9, policy="params_and_buffers", impl="twin")
    _train_step(model, torch.optim.SGD(model.parameters(), lr=0.1))
    ema.update()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "ema": ema.state_dict()}, buffer)

    restored_model = _small_model(1)
    restored = FlatEMA(restored_model, 0.5, policy="params_and_buffers", impl="twin")
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    restored_model.load_state_dict(checkpoint["model"])
    restored.load_state_dict(checkpoint["ema"])
    _assert_aliased(restored)
    assert restored.decay == 0.9
    for (name, got), want in zip(restored.module.state_dict().items(), ema.module.state_dict().values()):
        assert torch.equal(got, want), name
    restored.update()
    ema.update()
    for (name, got), want in zip(restored.module.state_dict().items(), ema.module.state_dict().values()):
        assert torch.equal(got, want), name


def test_load_state_dict_rejects_another_policy() -> None:
    ema = FlatEMA(_small_model(), 0.9, policy="params_only", impl="twin")
    state = FlatEMA(_small_model(), 0.9, policy="copy_buffers", impl="twin").state_dict()
    with pytest.raises(ValueError, match="policy"):
        ema.load_state_dict(state)


@pytest.mark.parametrize("policy", ["params_only", "params_and_buffers", "copy_buffers"])
def test_policies_treat_buffers_as_specified(policy: str) -> None:
    model = _small_model()
    ema = FlatEMA(model, 0.5, policy=policy, impl="twin")
    bn_source, bn_average = model[1], ema.module[1]
    initial_mean = bn_average.running_mean.clone()
    model(torch.randn(4, 3, 8, 8))  # train-mode forward: running stats and num_batches_tracked change
    ema.update()
    if policy == "params_only":
        assert torch.equal(bn_average.running_mean, initial_mean)
        assert int(bn_average.num_batches_tracked) == 0
    elif policy == "params_and_buffers":
        expected = 0.5 * initial_mean.double() + 0.5 * bn_source.running_mean.double()
        assert_close_verbose(bn_average.running_mean, expected, rtol=1e-6, atol=1e-7, name="running_mean")
        assert int(bn_average.num_batches_tracked) == 1
    else:
        assert torch.equal(bn_average.running_mean, bn_source.running_mean)
        assert int(bn_average.num_batches_tracked) == 1


def test_set_decay_changes_the_device_scalar_in_place() -> None:
    model = _small_model()
    ema = FlatEMA(model, 0.9, impl="twin")
    weight = ema._weights[(torch.device("cpu"), torch.float32)]
    ema.set_decay(0.25)
    assert ema._weights[(torch.device("cpu"), torch.float32)] is weight and float(weight) == 0.75
    with pytest.raises(ValueError, match="decay"):
        ema.set_decay(1.5)


def test_ema_module_is_a_frozen_deep_copy() -> None:
    model = _small_model()
    ema = FlatEMA(model, 0.9, impl="twin")
    assert ema.module is not model
    assert all(not p.requires_grad for p in ema.module.parameters())
    for p, e in zip(model.parameters(), ema.module.parameters()):
        assert torch.equal(p, e) and p.data_ptr() != e.data_ptr()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="policy"):
        FlatEMA(_small_model(), 0.9, policy="buffers")
    with pytest.raises(ValueError, match="impl"):
        FlatEMA(_small_model(), 0.9, impl="cuda")
