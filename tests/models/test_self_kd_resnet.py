"""Multi-exit self-KD ResNet (docs/semantics.md §3.2): exit order, forward_deepest identity, sizes, init, checkpoint
keys."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision

from fastkd.models.registry import create_model
from fastkd.models.self_kd_resnet import SelfKDResNet
from fastkd.reference.keys import selfkd_from_reference, selfkd_to_reference

ARCHS = {  # name: (blocks per stage, bottleneck)
    "selfkd_resnet18": ([2, 2, 2, 2], False),
    "selfkd_resnet34": ([3, 4, 6, 3], False),
    "selfkd_resnet50": ([3, 4, 6, 3], True),
    "selfkd_resnet101": ([3, 4, 23, 3], True),
    "selfkd_resnet152": ([3, 8, 36, 3], True),
}


@pytest.fixture(scope="module")
def resnet18() -> SelfKDResNet:
    torch.manual_seed(0)
    return create_model("selfkd_resnet18", num_classes=10)


def test_outputs_are_lists_ordered_deepest_first(resnet18):
    model = copy.deepcopy(resnet18).eval()
    captured = {}
    for name in ("scala1", "scala2", "scala3", "scala4"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
    logits, features = model(torch.randn(3, 3, 32, 32))
    assert isinstance(logits, list) and isinstance(features, list)
    assert [tuple(z.shape) for z in logits] == [(3, 10)] * 4
    assert [tuple(f.shape) for f in features] == [(3, 512)] * 4
    for index, exit_number in enumerate((4, 3, 2, 1)):
        assert torch.equal(features[index], captured[f"scala{exit_number}"].flatten(1))
        assert torch.equal(logits[index], getattr(model, f"fc{exit_number}")(features[index]))


def test_exits_see_the_stage_they_belong_to(resnet18):
    """scala1 reads the attention-gated layer1 output, scala4 the layer4 output."""
    model = copy.deepcopy(resnet18).eval()
    captured = {}
    model.layer1.register_forward_hook(lambda m, i, o: captured.__setitem__("layer1", o))
    model.layer4.register_forward_hook(lambda m, i, o: captured.__setitem__("layer4", o))
    model.scala1.register_forward_hook(lambda m, i, o: captured.__setitem__("scala1_in", i[0]))
    _, features = model(torch.randn(2, 3, 32, 32))
    assert torch.equal(features[0], captured["layer4"].mean((2, 3)))
    layer1 = captured["layer1"]
    assert torch.equal(captured["scala1_in"], model.attention1(layer1) * layer1)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_forward_deepest_is_bit_identical_to_the_full_forward(resnet18, memory_format):
    torch.manual_seed(1)
    x = torch.randn(4, 3, 32, 32).to(memory_format=memory_format)
    target = torch.randint(0, 10, (4,))
    full = copy.deepcopy(resnet18).to(memory_format=memory_format).train()
    deep = copy.deepcopy(full)
    logits, features = full(x)
    deep_logits, deep_feature = deep.forward_deepest(x)
    assert torch.equal(deep_logits, logits[0]) and torch.equal(deep_feature, features[0])
    F.cross_entropy(logits[0], target).backward()
    F.cross_entropy(deep_logits, target).backward()
    full_params, deep_params = dict(full.named_parameters()), dict(deep.named_parameters())
    for name, param in full_params.items():
        other = deep_params[name].grad
        assert (param.grad is None) == (other is None), name
        if other is not None:
            assert torch.equal(param.grad, other), name
    trained = {n for n, p in full_params.items() if p.grad is not None}
    assert not any(n.startswith(("scala", "attention", "fc1", "fc2", "fc3", "adaptation")) for n in trained)
    # Documented difference: only the full forward updates the head BN running statistics.
    full_buffers, deep_buffers = dict(full.named_buffers()), dict(deep.named_buffers())
    for name, buffer in full_buffers.items():
        same = torch.equal(buffer, deep_buffers[name])
        assert same != name.startswith(("scala", "attention")), name
    full.eval(), deep.eval()
    assert torch.equal(full(x)[0][0], deep.forward_deepest(x)[0])


def test_channels_last_matches_contiguous(resnet18):
    """Different kernels sum in different orders, so compare in float64: rounding (~1e-16 relative per op, ~1e-13
    over a layer's sums, compounded over the depth) stays far below the 1e-9 tolerance, which any indexing or
    layout mistake exceeds by orders of magnitude."""
    torch.manual_seed(2)
    model = copy.deepcopy(resnet18).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    logits, features = model(x)
    model = model.to(memory_format=torch.channels_last)
    logits_cl, features_cl = model(x.to(memory_format=torch.channels_last))
    for a, b in zip(logits + features, logits_cl + features_cl):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)


def test_init_is_kaiming_fan_out_with_unit_batchnorm(resnet18):
    conv = resnet18.layer4[1].conv2  # 512 x 512 x 3 x 3: fan_out = 512 * 9
    assert abs(conv.weight.std().item() / (2 / (512 * 9)) ** 0.5 - 1) < 0.02
    depthwise = resnet18.scala3[0].op[0]  # torch's fan_out ignores groups: weight.size(0) * 9 = 256 * 9
    assert abs(depthwise.weight.std().item() / (2 / (256 * 9)) ** 0.5 - 1) < 0.05
    for module in resnet18.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


def test_rejects_input_sizes_the_attention_masks_cannot_handle(resnet18):
    with pytest.raises(ValueError, match="divisible by 8"):
        resnet18(torch.randn(1, 3, 28, 30))


# -------------------------------------------------------------------------------- parameter counts

def sepconv_params(cin: int, cout: int) -> int:
    return 9 * cin + cin * cin + 2 * cin + 9 * cin + cin * cout + 2 * cout


def expected_param_count(name: str, num_classes: int, with_adaptation_layers: bool) -> int:
    """torchvision's trunk with a 3x3 stem and no fc, plus heads, attention, 4 fcs, adaptation layers."""
    blocks, bottleneck = ARCHS[name]
    builder = getattr(torchvision.models, name.removeprefix("selfkd_"))
    with torch.device("meta"):
        tv = builder()
    e = 4 if bottleneck else 1
    trunk = sum(p.numel() for p in tv.parameters()) - tv.fc.weight.numel() - tv.fc.bias.numel()
    trunk += 3 * 64 * 9 - tv.conv1.weight.numel()
    heads = sum(sepconv_params(a * e, b * e) for a, b in [(64, 128), (128, 256), (256, 512)])
    heads += sum(sepconv_params(a * e, b * e) for a, b in [(128, 256), (256, 512)])
    heads += sepconv_params(256 * e, 512 * e)
    attention = sum(sepconv_params(c * e, c * e) + 2 * c * e for c in (64, 128, 256))
    feature = 512 * e
    fcs = 4 * (feature * num_classes + num_classes)
    adaptation = 3 * (feature * feature + feature) if with_adaptation_layers else 0
    return trunk + heads + attention + fcs + adaptation


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("with_adaptation_layers", [True, False])
def test_parameter_counts(name, with_adaptation_layers):
    with torch.device("meta"):
        model = create_model(name, num_classes=100, with_adaptation_layers=with_adaptation_layers)
    blocks, _ = ARCHS[name]
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == blocks
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_param_count(name, 100, with_adaptation_layers)


def test_resnet18_size_is_plausible(resnet18):
    """ResNet-18 trunk is about 11.2 M parameters; heads, attention and adaptation layers add about 2 M."""
    count = sum(p.numel() for p in create_model("selfkd_resnet18", num_classes=100).parameters())
    assert 12.5e6 < count < 13.5e6


# --------------------------------------------------------------------------------- checkpoint keys

def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def _sepconv(prefix: str) -> list[str]:
    return [f"{prefix}.op.0.weight", f"{prefix}.op.1.weight", *_bn(f"{prefix}.op.2"),
            f"{prefix}.op.4.weight", f"{prefix}.op.5.weight", *_bn(f"{prefix}.op.6")]


def reference_model_keys(blocks: list[int], bottleneck: bool) -> list[str]:
    """Keys of self_KD/resnet.py's ResNet, from reading that file (attribute order of its __init__):
    conv1, bn1, torchvision-style layer1..4 (``downsample.{0,1}``), scala1..3 (SepConv ``op`` indices 0,1,2,4,5,6),
    attention1..3 (SepConv then BN at index 1), fc1..fc4. maxpool, scala4 and the ReLUs hold no state."""
    keys = ["conv1.weight", *_bn("bn1")]
    expansion = 4 if bottleneck else 1
    inplanes = 64
    for layer, (planes, n, stride) in enumerate(zip((64, 128, 256, 512), blocks, (1, 2, 2, 2)), start=1):
        for b in range(n):
            prefix = f"layer{layer}.{b}"
            for c in range(1, (3 if bottleneck else 2) + 1):
                keys += [f"{prefix}.conv{c}.weight", *_bn(f"{prefix}.bn{c}")]
            if b == 0 and (stride != 1 or inplanes != planes * expansion):
                keys += [f"{prefix}.downsample.0.weight", *_bn(f"{prefix}.downsample.1")]
            inplanes = planes * expansion
    for head, depth in (("scala1", 3), ("scala2", 2), ("scala3", 1)):
        for i in range(depth):
            keys += _sepconv(f"{head}.{i}")
    for k in (1, 2, 3):
        keys += _sepconv(f"attention{k}.0") + _bn(f"attention{k}.1")
    for k in (1, 2, 3, 4):
        keys += [f"fc{k}.weight", f"fc{k}.bias"]
    return keys


def reference_wrapper_keys(blocks: list[int], bottleneck: bool) -> list[str]:
    """self_KD/train.py wraps the model in DataParallel whenever a GPU is visible and later assigns
    ``net.adaptation_layers = nn.ModuleList(...)`` on the wrapper: ``module.<model key>`` first, then
    the three adaptation Linears, unprefixed."""
    adaptation = [f"adaptation_layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    return [f"module.{k}" for k in reference_model_keys(blocks, bottleneck)] + adaptation


@pytest.mark.parametrize("name", list(ARCHS))
def test_state_dict_maps_onto_the_reference_layout(name):
    blocks, bottleneck = ARCHS[name]
    with torch.device("meta"):
        model = create_model(name)
        bare = create_model(name, with_adaptation_layers=False)
    state = model.state_dict()
    assert list(selfkd_to_reference(state)) == reference_wrapper_keys(blocks, bottleneck)
    assert list(selfkd_to_reference(bare.state_dict(), data_parallel=False)) == \
        reference_model_keys(blocks, bottleneck)


def test_layout_equals_a_real_dataparallel_wrapper_with_late_adaptation_layers():
    """Rebuild the reference's object the way self_KD/train.py does (wrap, then attach) and compare keys."""
    with torch.device("meta"):
        model = create_model("selfkd_resnet18")
        bare = create_model("selfkd_resnet18", with_adaptation_layers=False)
        wrapper = torch.nn.DataParallel(bare)
        wrapper.adaptation_layers = torch.nn.ModuleList(torch.nn.Linear(512, 512) for _ in range(3))
    assert list(selfkd_to_reference(model.state_dict())) == list(wrapper.state_dict())


def _random_state(keys: list[str], shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(5) if k.endswith("num_batches_tracked") else torch.randn(shapes[k]) for k in keys}


def test_reference_checkpoint_loads_and_round_trips(resnet18):
    torch.manual_seed(3)
    model = copy.deepcopy(resnet18)
    shapes = {f"module.{k}": v.shape for k, v in model.state_dict().items()}
    shapes.update({k: v.shape for k, v in model.state_dict().items() if k.startswith("adaptation_layers.")})
    reference_state = _random_state(reference_wrapper_keys([2, 2, 2, 2], False), shapes)
    model.load_state_dict(selfkd_from_reference(reference_state), strict=True)
    loaded = model.state_dict()
    for key, value in reference_state.items():
        assert torch.equal(loaded[key.removeprefix("module.")], value), key
    compiled_keys = {f"_orig_mod.{k}": v for k, v in loaded.items()}
    back = selfkd_to_reference(compiled_keys)
    assert list(back) == list(reference_state)
    assert all(torch.equal(back[k], reference_state[k]) for k in back)


def test_unwrapped_reference_state_loads_into_the_bare_model():
    """``net.module.state_dict()`` (no wrapper, no adaptation layers) fits ``with_adaptation_layers=False``."""
    torch.manual_seed(4)
    model = create_model("selfkd_resnet18", num_classes=10, with_adaptation_layers=False)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    reference_state = _random_state(reference_model_keys([2, 2, 2, 2], False), shapes)
    model.load_state_dict(selfkd_from_reference(reference_state), strict=True)
    assert not hasattr(model, "adaptation_layers")
    assert torch.equal(model.fc4.weight, reference_state["fc4.weight"])
