"""kernels/pointwise_conv.py: strided 1x1 convolutions as subsample-then-1x1 (the same outputs and gradients in
float64), which convolutions are turned, and a channels-last CPU step with an odd batch through the width/8
ResNet-18 shortcut that crashed oneDNN before the swap."""

import copy

import pytest
import torch
import torch.nn as nn

from fastkd.config import OptimConfig, TrainConfig
from fastkd.engine.runtime import build_runtime
from fastkd.engine.steps import build_learner
from fastkd.kernels.pointwise_conv import SubsampledPointwiseConv2d, subsample_strided_pointwise_convs
from fastkd.models import create_model


@pytest.mark.parametrize("stride, size, bias", [(2, 9, False), (2, 8, True), ((2, 3), 10, True), (3, 7, False)])
def test_subsampled_conv_equals_the_strided_one_in_float64(stride, size, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 1, stride=stride, bias=bias).double()
    subsampled = subsample_strided_pointwise_convs(copy.deepcopy(conv))
    assert type(subsampled) is SubsampledPointwiseConv2d
    x = torch.randn(5, 8, size, size, dtype=torch.float64)
    grad = None
    results = []
    for module in (conv, subsampled):
        xi = x.clone().requires_grad_()
        out = module(xi)
        grad = torch.randn_like(out) if grad is None else grad
        out.backward(grad)
        results.append([out, xi.grad, module.weight.grad] + ([module.bias.grad] if bias else []))
    for expected, got in zip(*results):
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=0, atol=1e-12)


def test_only_affected_convolutions_are_turned():
    model = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2), nn.Conv2d(16, 32, 1, stride=2), nn.Conv2d(8, 16, 1),
                          nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.Conv2d(8, 16, 1, stride=2, padding=1))
    keys = list(model.state_dict())
    subsample_strided_pointwise_convs(model)
    assert [type(m) for m in model] == [SubsampledPointwiseConv2d] + [nn.Conv2d] * 4
    assert list(model.state_dict()) == keys


def test_channels_last_cpu_learner_steps_an_odd_batch_at_width_8():
    """batch 5 through the 8 -> 16 stride-2 shortcut: a heap corruption (abort) before the swap."""
    runtime = build_runtime(TrainConfig(device="cpu", channels_last=True))
    model = create_model("resnet18", num_classes=10, downsample_factor=64.0)
    learner = build_learner("m", model, OptimConfig(), 1, runtime)
    shortcut = learner.model.conv3_x[0].shortcut[0]
    assert type(shortcut) is SubsampledPointwiseConv2d
    for _ in range(5):
        x = torch.randn(5, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        learner.model(x)[1].sum().backward()
