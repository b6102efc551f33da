"""The reference's pycls ViTs (docs/semantics.md §3.4): parameters, forward shapes, the reference's differences from
timm, and parameter names against key lists written from the reference's module structure."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from timm.layers import DropPath
from timm.models.pvt_v2 import PyramidVisionTransformerV2

from fastkd.models.registry import create_model, list_models
from fastkd.models.vit import VIT_MODELS, DistilledDeiT
from fastkd.models.vit.cvt import ConvAttention
from fastkd.models.vit.pit import reference_pit_drop_path_rates
from fastkd.models.vit.t2t_vit import PerformerAttention

REFERENCE_KEYS = json.loads((Path(__file__).parent / "vit_reference_keys.json").read_text())

# (model, constructor kwargs) -> (all parameters, trainable parameters), 100 classes, as the reference counts them.
PARAMETER_COUNTS = {
    ("deit_tiny", ()): (5_543_716, 5_543_716),
    ("deit_tiny", (("distilled", True),)): (5_563_400, 5_563_400),
    ("pit_ti", ()): (4_615_972, 4_615_972),
    ("pvt_v2_b0", ()): (3_435_460, 3_435_460),
    ("convit_tiny", ()): (5_536_812, 5_536_812),
    ("pvt_tiny", ()): (12_767_588, 12_767_588),
    ("t2t_vit_7", ()): (4_078_922, 4_024_394),
    ("t2t_vit_14", ()): (21_199_050, 21_119_306),
    ("cvt_13", ()): (19_650_980, 19_650_980),
}


def build(name: str, num_classes: int = 100, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=num_classes, **kwargs)


def test_every_reference_vit_is_registered():
    assert set(VIT_MODELS) <= set(list_models())


@pytest.mark.parametrize(("name", "kwargs"), list(PARAMETER_COUNTS), ids=lambda v: str(v))
def test_parameter_counts_equal_the_reference(name, kwargs):
    model = build(name, **dict(kwargs))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert (total, trainable) == PARAMETER_COUNTS[(name, kwargs)]


@pytest.mark.parametrize("name", VIT_MODELS)
def test_forward_shapes_at_224_and_at_small_sizes(name):
    model = build(name, img_size=224).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 100)
    for size in (32, 64):
        model = build(name, img_size=size, num_classes=10 if size == 32 else 100).train()
        out = model(torch.randn(2, 3, size, size))
        assert out.shape == (2, model.head.out_features)
        out.sum().backward()


@pytest.mark.parametrize("name", [n for n in REFERENCE_KEYS if n != "_about"])
def test_state_dict_matches_the_reference_layout(name):
    entry = REFERENCE_KEYS[name]
    model = build(name.removesuffix("_distilled"), **entry["kwargs"])

    def to_fastkd(key: str) -> str:
        for pattern, replacement in entry["renames"]:
            key = re.sub(pattern, replacement, key)
        return key

    expected = {to_fastkd(key): shape for key, shape in entry["keys"].items()}
    assert len(expected) == len(entry["keys"]), "two reference keys map to one fastkd key"
    actual = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert sorted(set(actual) ^ set(expected)) == []
    assert {key: shape for key, shape in actual.items() if expected[key] != shape} == {}


# ---------------------------------------------------------------------------------- timm differences

def test_pit_drop_path_follows_the_reference_rule_not_timms_linspace():
    model = build("pit_ti", drop_path_rate=0.1)
    blocks = [block for stage in model.transformers for block in stage.blocks]
    rates = [block.drop_path1.drop_prob if isinstance(block.drop_path1, DropPath) else 0.0 for block in blocks]
    assert rates == pytest.approx([0.1 * i / 12 for i in range(12)], abs=0)
    assert max(rates) == pytest.approx(0.0917, abs=5e-5)  # timm's rule ends at 0.1
    assert all(type(b.drop_path1) is type(b.drop_path2) for b in blocks)
    assert isinstance(blocks[0].drop_path1, nn.Identity)
    assert reference_pit_drop_path_rates(0.1, [2, 6, 4])[-1] < 0.1


def test_pvt_v2_uses_layernorm_eps_1e6_where_timm_uses_1e5():
    model = build("pvt_v2_b0")
    norms = {name: module.eps for name, module in model.named_modules() if isinstance(module, nn.LayerNorm)}
    reference_only = [n for n in norms if n == "patch_embed.norm" or n.endswith(("downsample.norm", "attn.norm"))]
    assert len(reference_only) == 1 + 3 + 6  # patch embed, 3 downsamples, 2 blocks x 3 stages with sr > 1
    assert set(norms.values()) == {1e-6}
    timm_default = PyramidVisionTransformerV2(depths=(2, 2, 2, 2), embed_dims=(32, 64, 160, 256),
                                              num_heads=(1, 2, 5, 8), num_classes=100)
    timm_norms = dict((n, m.eps) for n, m in timm_default.named_modules() if isinstance(m, nn.LayerNorm))
    assert {timm_norms[n] for n in reference_only} == {1e-5}


@pytest.mark.parametrize("distilled", [False, True])
def test_deit_heads_start_at_zero_and_tokens_are_trunc_normal_002(distilled):
    model = build("deit_tiny", distilled=distilled)
    heads = [model.head] + ([model.head_dist] if distilled else [])
    for head in heads:
        assert torch.count_nonzero(head.weight) == 0 and torch.count_nonzero(head.bias) == 0
    tokens = [model.cls_token] + ([model.dist_token] if distilled else [])
    for token in tokens:
        assert 0.01 < token.std().item() < 0.03  # timm's class token is N(0, 1e-6)


def tiny_distilled_deit() -> DistilledDeiT:
    model = build("deit_tiny", img_size=32, distilled=True, drop_path_rate=0.0, depth=2, embed_dim=32,
                  num_heads=2).double()
    with torch.no_grad():  # the heads start at zero; make the two heads differ
        for head in (model.head, model.head_dist):
            head.weight.normal_(0, 0.1)
            head.bias.normal_(0, 0.1)
    return model


def test_deit_train_mode_returns_class_head_and_keeps_distill_head_for_kd():
    model = tiny_distilled_deit().train()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    class_logits, distill_logits = model.forward_heads(x)
    assert not torch.allclose(class_logits, distill_logits)
    out = model(x)
    torch.testing.assert_close(out, class_logits, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.distill_logits, distill_logits, rtol=0, atol=1e-12)
    assert model.distill_logits.requires_grad  # the KD loss trains the distillation head


def test_deit_eval_mode_averages_both_heads():
    model = tiny_distilled_deit().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        class_logits, distill_logits = model.forward_heads(x)
        torch.testing.assert_close(model(x), (class_logits + distill_logits) / 2, rtol=0, atol=1e-12)


# -------------------------------------------------------------------------------- fastkd-written models

def test_cvt_trains_at_batch_size_one():
    model = build("cvt_13", img_size=64).train()
    out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 100)
    out.sum().backward()
    assert model.stage2.blocks[0].attn.conv_proj_k.bn.num_batches_tracked.item() == 1


def test_performer_attention_matches_the_reference_formula_in_float64():
    torch.manual_seed(1)
    attention = PerformerAttention(in_dim=12, out_dim=8).double()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    k, q, v = torch.split(attention.qkv_transform(x), 8, dim=-1)
    w, m = attention.w, attention.w.shape[0]

    def features(t):  # exp(w t - |t|^2 / 2) / sqrt(m), elementwise sums spelled out
        return torch.exp(torch.einsum("bti,mi->btm", t, w) - (t * t).sum(-1, keepdim=True) / 2) / math.sqrt(m)

    kp, qp = features(k), features(q)
    normaliser = torch.einsum("bti,bi->bt", qp, kp.sum(dim=1)).unsqueeze(2)
    y = torch.einsum("bti,bni->btn", qp, torch.einsum("bin,bim->bnm", v, kp)) / (normaliser + 1e-8)
    expected = v + attention.projection(y)
    torch.testing.assert_close(attention(x), expected, rtol=1e-12, atol=1e-12)
    assert w.shape == (4, 8) and not w.requires_grad


def test_t2t_position_embedding_is_fixed_sinusoid():
    model = build("t2t_vit_7", img_size=64)
    table = model.pos_embed
    assert not table.requires_grad and table.shape == (1, 4 * 4 + 1, 256)
    for position, j in [(0, 0), (0, 1), (3, 10), (16, 255), (7, 128)]:
        angle = position / 10000 ** (2 * (j // 2) / 256)
        expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
        assert table[0, position, j].item() == pytest.approx(expected, abs=1e-7)


def test_cvt_attention_matches_the_written_out_formula_in_float64():
    """Class token skips the depthwise-conv+BN projections; scores scale by the full width ** -0.5."""
    torch.manual_seed(2)
    attention = ConvAttention(dim=6, num_heads=2, has_cls_token=True).double().eval()
    with torch.no_grad():
        for proj in (attention.conv_proj_q, attention.conv_proj_k, attention.conv_proj_v):
            proj.bn.running_mean.normal_()
            proj.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 1 + 4 * 4, 6, dtype=torch.float64)
    cls_token, token_map = x[:, :1], x[:, 1:].transpose(1, 2).reshape(2, 6, 4, 4)

    def project(conv_bn, linear):
        tokens = conv_bn(token_map).flatten(2).transpose(1, 2)
        return linear(torch.cat((cls_token, tokens), dim=1)).view(2, -1, 2, 3).transpose(1, 2)

    q = project(attention.conv_proj_q, attention.proj_q)
    k = project(attention.conv_proj_k, attention.proj_k)
    v = project(attention.conv_proj_v, attention.proj_v)
    assert k.shape[2] == 1 + 2 * 2  # keys and values at stride 2
    weights = torch.softmax(q @ k.transpose(-1, -2) * 6 ** -0.5, dim=-1)
    expected = attention.proj((weights @ v).transpose(1, 2).reshape(2, 17, 6))
    with torch.no_grad():
        torch.testing.assert_close(attention(x, (4, 4)), expected, rtol=1e-12, atol=1e-12)
