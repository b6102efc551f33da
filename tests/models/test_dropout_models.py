"""Dropout ops (docs/semantics.md §3.3, §7) and the dropout ResNet: op semantics, rate handling, eval mode, checkpoint
keys."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fastkd.models.dropout import MaxDropout, StandardDropout, max_dropout, standard_dropout
from fastkd.models.registry import create_model
from fastkd.reference.keys import dropout_from_reference, dropout_to_reference


def rate(p: float) -> torch.Tensor:
    return torch.tensor(p, dtype=torch.float64)


def reference_max_dropout_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Spec 2.4 written out: global min-max normalisation, Python-float threshold 1 - p, strict '>'."""
    normalised = (x - x.min()) / (x.max() - x.min())
    return normalised > (1 - p)


# ---------------------------------------------------------------------------------------------- ops

def test_standard_dropout_keeps_expectation_and_scales_survivors():
    torch.manual_seed(0)
    x = torch.ones(400_000)
    out = standard_dropout(x, rate(0.3))
    dropped = out == 0
    assert abs(dropped.float().mean().item() - 0.3) < 0.005
    assert torch.all(out[~dropped] == torch.tensor(1 / 0.7, dtype=torch.float32))
    assert abs(out.mean().item() - 1.0) < 0.01


def test_standard_dropout_rate_zero_is_identity_and_rate_one_zeros_everything():
    x = torch.randn(4, 8, 5, 5)
    assert torch.equal(standard_dropout(x, rate(0.0)), x)
    out = standard_dropout(x, rate(1.0))
    assert torch.equal(out, torch.zeros_like(x))
    assert torch.isfinite(out).all()


def test_max_dropout_zeros_exactly_the_elements_above_threshold():
    x = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 2.0]])  # normalised: 0, .25, .5, .75, 1
    assert torch.equal(max_dropout(x, rate(0.3)), torch.tensor([[-2.0, -1.0, 0.0, 0.0, 0.0]]))
    # strict '>': at p = 0.25 the element with n = 0.75 survives
    assert torch.equal(max_dropout(x, rate(0.25)), torch.tensor([[-2.0, -1.0, 0.0, 1.0, 0.0]]))
    assert torch.equal(max_dropout(x, rate(0.0)), x)
    assert torch.equal(max_dropout(x, rate(1.0)), torch.tensor([[-2.0, 0.0, 0.0, 0.0, 0.0]]))


def test_max_dropout_constant_tensor_is_unchanged_without_nan():
    x = torch.full((2, 3, 4, 4), 0.7)
    out = max_dropout(x, rate(0.5))
    assert torch.equal(out, x)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.3, 0.5, 0.9, 1.0, 0.123456789])
def test_max_dropout_mask_matches_the_reference_formula_bit_for_bit(p):
    torch.manual_seed(1)
    x = torch.randn(8, 16, 6, 6)
    expected = x.masked_fill(reference_max_dropout_mask(x, p), 0)
    assert torch.equal(max_dropout(x, rate(p)), expected)


def test_max_dropout_normalises_over_the_whole_batch():
    """One sample with a huge activation changes which elements of the other samples are dropped."""
    torch.manual_seed(2)
    x = torch.rand(2, 100)
    alone = max_dropout(x[:1], rate(0.3))
    with_outlier = max_dropout(torch.cat([x[:1], x[1:] * 10]), rate(0.3))[:1]
    assert (alone == 0).sum() > 0
    assert torch.equal(with_outlier, x[:1])  # the outlier sample now holds the whole top 30 % of the range


def test_max_dropout_gradient_flows_only_through_kept_elements():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], requires_grad=True)
    max_dropout(x, rate(0.3)).sum().backward()
    assert torch.equal(x.grad, torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]))


def test_ops_preserve_channels_last():
    x = torch.randn(2, 8, 4, 4).to(memory_format=torch.channels_last)
    for op in (standard_dropout, max_dropout):
        assert op(x, rate(0.3)).is_contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------------------ modules

@pytest.mark.parametrize("op", [StandardDropout, MaxDropout])
def test_modules_are_inactive_in_eval_unless_asked(op):
    x = torch.randn(4, 8, 4, 4)
    standard = op(0.5).eval()
    assert torch.equal(standard(x), x)
    reference_like = op(0.5, active_at_eval=True).eval()
    assert (reference_like(x) == 0).any()
    assert (op(0.5).train()(x) == 0).any()


def test_set_rate_accepts_float_and_tensor_and_rejects_bad_values():
    module = MaxDropout(0.3)
    x = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 2.0]])
    module.set_rate(0.0)
    assert torch.equal(module(x), x)
    module.set_rate(torch.tensor([0.3]))
    assert torch.equal(module(x), max_dropout(x, rate(0.3)))
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1.5"):
        module.set_rate(1.5)
    with pytest.raises(ValueError, match="one rate"):
        module.set_rate(torch.zeros(2))
    with pytest.raises(ValueError, match=r"in \[0, 1\], got -0.1"):
        StandardDropout(-0.1)


def test_rate_buffer_is_float64_and_not_in_state_dict():
    module = MaxDropout(0.3)
    assert module.rate.dtype == torch.float64
    assert module.state_dict() == {}


def test_random_rate_draws_rate_times_uniform_on_each_call():
    """MaxDropout is deterministic given p, so the zeroed count reveals the drawn p exactly."""
    x = torch.linspace(0, 1, 10_001)
    module = MaxDropout(0.8, random_rate=True)
    counts = []
    for seed in range(3):
        torch.manual_seed(seed)
        drawn = 0.8 * torch.rand((), dtype=torch.float64)
        expected = max_dropout(x, drawn)
        torch.manual_seed(seed)
        out = module(x)
        assert torch.equal(out, expected)
        counts.append(int((out == 0).sum()))
    assert len(set(counts)) == 3


@pytest.mark.parametrize("op", [StandardDropout, MaxDropout])
def test_rate_changes_do_not_recompile(op):
    torch._dynamo.reset()
    module = op(0.3)
    compiled = torch.compile(module, backend="aot_eager", dynamic=False, fullgraph=True)
    x = torch.randn(4, 8, 6, 6)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for p in (0.3, 0.0, 0.7, 1.0):
            module.set_rate(p)
            out = compiled(x)
            if op is MaxDropout:
                assert torch.equal(out, max_dropout(x, rate(p)))
            elif p == 0.0:
                assert torch.equal(out, x)
            elif p == 1.0:
                assert torch.equal(out, torch.zeros_like(x))


# ------------------------------------------------------------------------------------------- model

def test_model_returns_logits_and_rate_zero_means_no_dropout():
    torch.manual_seed(3)
    model = create_model("dropout_resnet18", num_classes=10, drop_op="standard").train()
    x = torch.randn(3, 3, 32, 32)
    model.set_drop_rates(0.0)
    out = model(x)
    assert out.shape == (3, 10)
    plain = torch.relu(model.bn1(model.conv1(x)))
    plain = model.layer4(model.layer3(model.layer2(model.layer1(plain))))
    assert torch.equal(out, model.linear(torch.flatten(model.avg_pool(plain), 1)))


def test_model_eval_mode_in_both_semantics():
    torch.manual_seed(4)
    model = create_model("dropout_resnet18", drop_op="max", drop_rate=0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    standard = model(x)
    model.set_drop_rates(0.0)
    assert torch.equal(standard, model(x))  # inactive in eval: the rate does not matter
    model.active_at_eval = True
    assert all(site.active_at_eval for site in model.dropout_sites)
    assert torch.equal(standard, model(x))  # active, but rate 0 zeros nothing
    model.set_drop_rates(0.5)
    assert not torch.equal(standard, model(x))


def test_set_drop_rates_per_site_and_validation():
    model = create_model("dropout_resnet18")
    model.set_drop_rates(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
    assert [float(site.rate) for site in model.dropout_sites] == [0.1, 0.2, 0.3, 0.4]
    model.set_drop_rates(torch.tensor(0.25))  # exact in float32 too
    assert [float(site.rate) for site in model.dropout_sites] == [0.25] * 4
    model.random_rates = True
    assert all(site.random_rate for site in model.dropout_sites)
    with pytest.raises(ValueError, match=r"shape \(4,\), got \(3,\)"):
        model.set_drop_rates(torch.zeros(3))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        model.set_drop_rates(2.0)
    with pytest.raises(ValueError, match="drop_op must be one of"):
        create_model("dropout_resnet18", drop_op="SpacedDropout")


def test_model_rate_changes_do_not_recompile():
    torch._dynamo.reset()
    torch.manual_seed(5)
    model = create_model("dropout_resnet18", num_classes=10, drop_op="max").train()
    compiled = torch.compile(model, backend="aot_eager", dynamic=False, fullgraph=True)
    x = torch.randn(2, 3, 32, 32)
    outputs = []
    with torch._dynamo.config.patch(error_on_recompile=True):
        for rates in (torch.full((4,), 0.3), torch.tensor([0.0, 0.1, 0.2, 0.3]), torch.zeros(4), torch.ones(4)):
            model.set_drop_rates(rates)
            outputs.append(compiled(x))
    assert not torch.equal(outputs[0], outputs[2])


def test_model_works_channels_last():
    """In float64: the two layouts sum in different orders, and MaxDropout's hard threshold turns an fp32 rounding
    difference at a kept/dropped boundary into a whole dropped activation. float64 rounding (~1e-16 relative per
    op, ~1e-13 over a layer's 4608-term sums, compounded over 20 layers) stays far below the 1e-9 tolerance, and
    a value within 1e-13 of the threshold among ~1e5 activations is a ~1e-8 chance."""
    torch.manual_seed(6)
    model = create_model("dropout_resnet18", drop_op="max").double().eval()
    model.active_at_eval = True
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------- checkpoint keys

def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def reference_keys(blocks: list[int], bottleneck: bool) -> list[str]:
    """Keys of the reference's ``cnn.state_dict()`` for dropout/model/resnet.py, from reading that file:
    conv1/bn1 stem, kuangliu blocks with ``shortcut`` (conv+BN) when stride or width changes, ``linear``."""
    keys = ["conv1.weight", *_bn("bn1")]
    expansion = 4 if bottleneck else 1
    in_planes = 64
    for layer, (planes, n, stride) in enumerate(zip((64, 128, 256, 512), blocks, (1, 2, 2, 2)), start=1):
        for b in range(n):
            prefix = f"layer{layer}.{b}"
            convs = 3 if bottleneck else 2
            for c in range(1, convs + 1):
                keys += [f"{prefix}.conv{c}.weight", *_bn(f"{prefix}.bn{c}")]
            s = stride if b == 0 else 1
            if s != 1 or in_planes != planes * expansion:
                keys += [f"{prefix}.shortcut.0.weight", *_bn(f"{prefix}.shortcut.1")]
            in_planes = planes * expansion
    return keys + ["linear.weight", "linear.bias"]


@pytest.mark.parametrize("name,blocks,bottleneck", [
    ("dropout_resnet18", [2, 2, 2, 2], False),
    ("dropout_resnet50", [3, 4, 6, 3], True),
    ("dropout_resnet101", [3, 4, 23, 3], True),
])
def test_state_dict_keys_match_the_reference_layout(name, blocks, bottleneck):
    with torch.device("meta"):
        model = create_model(name)
    assert list(dropout_to_reference(model.state_dict())) == reference_keys(blocks, bottleneck)


def test_reference_checkpoint_loads_and_round_trips():
    torch.manual_seed(7)
    model = create_model("dropout_resnet18", num_classes=100)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    reference_state = {}
    for key in reference_keys([2, 2, 2, 2], bottleneck=False):
        if key.endswith("num_batches_tracked"):
            reference_state[key] = torch.tensor(11)
        else:
            reference_state[key] = torch.randn(shapes[key])
    payload = {"model": reference_state}  # what dropout/train.py writes to its .pkl
    model.load_state_dict(dropout_from_reference(payload), strict=True)
    for key, value in reference_state.items():
        assert torch.equal(model.state_dict()[key], value)
    compiled_keys = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}
    back = dropout_to_reference(compiled_keys)
    assert list(back) == list(reference_state)
    assert all(torch.equal(back[k], reference_state[k]) for k in back)
    wrapped = {f"module.{k}": v for k, v in reference_state.items()}
    assert list(dropout_from_reference(wrapped)) == list(reference_state)
