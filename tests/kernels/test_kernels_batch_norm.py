"""kernels/batch_norm.py: the row batch norm against nn.BatchNorm2d (float64: ~1e-15; float32: within a stated
bound), when it is taken, and the module swap that keeps parameters, buffers and state_dict keys."""

import copy

import pytest
import torch
import torch.nn as nn

from fastkd.kernels import batch_norm as bn_module
from fastkd.kernels.batch_norm import RowBatchNorm2d, native_channels_last_is_slow, swap_batchnorm, use_row_batchnorm
from fastkd.engine.distributed import AllReduceBatchNorm, convert_batchnorm

CL = torch.channels_last


@pytest.fixture
def row_path_everywhere(monkeypatch):
    """Every shape takes the row path (the tests use small tensors and widths on either SIMD width)."""
    monkeypatch.setattr(bn_module, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(bn_module, "native_channels_last_is_slow", lambda num_features: True)


def _pair(num_features: int, dtype: torch.dtype, momentum: float | None = 0.1, seed: int = 0):
    torch.manual_seed(seed)
    ref = nn.BatchNorm2d(num_features, momentum=momentum).to(dtype)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.normal_()
        ref.running_mean.normal_()
        ref.running_var.uniform_(0.5, 2.0)
    row = use_row_batchnorm(copy.deepcopy(ref))
    assert type(row) is RowBatchNorm2d
    return ref, row


def _run(module: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    x = x.detach().clone().requires_grad_()
    out = module(x)
    out.backward(grad)
    return out, x.grad, module.weight.grad, module.bias.grad


@pytest.mark.parametrize("shape", [(8, 22, 5, 5), (3, 8, 7, 6), (5, 45, 4, 4), (2, 11, 1, 1), (7, 3, 3, 5)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_row_batch_norm_equals_the_native_one_in_float64(row_path_everywhere, shape, momentum):
    ref, row = _pair(shape[1], torch.float64, momentum)
    torch.manual_seed(1)
    for step in range(3):  # running statistics over several batches (momentum None: cumulative average)
        x = (torch.randn(shape, dtype=torch.float64) * 3 + 2).contiguous(memory_format=CL)
        grad = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=CL)
        ref.zero_grad(), row.zero_grad()
        expected, got = _run(ref, x, grad), _run(row, x, grad)
        for name, e, g in zip(("output", "grad_input", "grad_weight", "grad_bias"), expected, got):
            assert torch.allclose(g, e, rtol=0, atol=1e-12), f"step {step}: {name} differs by {(g - e).abs().max()}"
        assert got[0].is_contiguous(memory_format=CL) and got[1].is_contiguous(memory_format=CL)
        for name in ("running_mean", "running_var"):
            e, g = getattr(ref, name), getattr(row, name)
            assert torch.allclose(g, e, rtol=0, atol=1e-14), f"{name} differs by {(g - e).abs().max()}"
        assert int(row.num_batches_tracked) == int(ref.num_batches_tracked) == step + 1


def test_row_batch_norm_in_float32_within_a_stated_bound(row_path_everywhere):
    """fp32, a realistic layer (64 x 22 x 16 x 16): another summation order than ATen's, so within 1e-4 of
    the output/gradient scale (measured ~1e-6); checked against float64 so neither side is the oracle."""
    ref, row = _pair(22, torch.float32)
    oracle = copy.deepcopy(ref).double()
    x = (torch.randn(64, 22, 16, 16) * 2 + 1).contiguous(memory_format=CL)
    grad = torch.randn(64, 22, 16, 16).contiguous(memory_format=CL)
    exact = _run(oracle, x.double(), grad.double())
    for side in (ref, row):
        for e, g in zip(exact, _run(side, x, grad)):
            assert (g.double() - e).abs().max() <= 1e-4 * e.abs().max()


def test_the_row_path_needs_training_cpu_channels_last_and_a_slow_width(monkeypatch):
    calls = []
    original = bn_module._RowBatchNorm.apply
    monkeypatch.setattr(bn_module._RowBatchNorm, "apply", lambda *a: calls.append(1) or original(*a))
    monkeypatch.setattr(bn_module, "MIN_ELEMENTS", 0)
    slow = RowBatchNorm2d(22)
    slow._slow_native = True
    fast = RowBatchNorm2d(16)
    fast._slow_native = False
    x = torch.randn(4, 22, 3, 3)
    slow(x)  # NCHW: the parent's forward
    fast(torch.randn(4, 16, 3, 3).contiguous(memory_format=CL))  # a width ATen handles well
    slow.eval()(x.contiguous(memory_format=CL))  # evaluation: the running statistics, the parent's forward
    assert calls == []
    slow.train()(x.contiguous(memory_format=CL))
    assert calls == [1]
    monkeypatch.setattr(bn_module, "MIN_ELEMENTS", 10**9)
    slow(x.contiguous(memory_format=CL))  # too small to be worth it
    assert calls == [1]


def test_slow_widths_follow_the_simd_width(monkeypatch):
    monkeypatch.setattr(bn_module, "simd_floats", lambda: 16)
    assert [c for c in (8, 16, 22, 32, 45, 48, 64, 90, 181) if native_channels_last_is_slow(c)] == [8, 22, 45]
    monkeypatch.setattr(bn_module, "simd_floats", lambda: 8)
    assert [c for c in (8, 11, 16, 22, 32, 45) if native_channels_last_is_slow(c)] == [11, 22]


def test_swaps_keep_parameters_buffers_and_keys():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Sequential(nn.BatchNorm2d(8), nn.BatchNorm1d(4)))
    model[1].eval()
    params = {name: p for name, p in model.named_parameters()}
    keys = list(model.state_dict())
    use_row_batchnorm(model)
    assert [type(m) for m in (model[1], model[2][0], model[2][1])] == [RowBatchNorm2d, RowBatchNorm2d,
                                                                        nn.BatchNorm1d]
    assert not model[1].training and model[2][0].training
    assert list(model.state_dict()) == keys
    assert all(p is params[name] for name, p in model.named_parameters())
    # the distributed conversion goes through the same swap, and leaves converted layers alone
    convert_batchnorm(model, on_cuda=False)
    assert all(isinstance(m, AllReduceBatchNorm) for m in (model[1], model[2][0], model[2][1]))
    assert all(p is params[name] for name, p in model.named_parameters())
    assert swap_batchnorm(model, lambda bn: None) is model


def test_build_learner_swaps_only_for_eager_channels_last_cpu():
    from fastkd.config import OptimConfig, TrainConfig
    from fastkd.engine.runtime import build_runtime
    from fastkd.engine.steps import build_learner

    def kinds(**train):
        runtime = build_runtime(TrainConfig(device="cpu", **train))
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        return type(build_learner("m", model, OptimConfig(), 1, runtime).model[1])

    assert kinds(channels_last=True) is RowBatchNorm2d
    assert kinds(channels_last=False) is nn.BatchNorm2d
    assert kinds(float64=True) is nn.BatchNorm2d
