"""The online-KD reference's MobileNet, MobileNetV2, ShuffleNet, ShuffleNetV2 and small ViT: parameter names and
shapes against key lists written from the reference's module structure, parameter counts, forward shapes, and the
pieces where a plausible rewrite would differ from the reference (patch order, channel shuffle, residual rules)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fastkd.errors import ConfigError
from fastkd.models import StudentNet, TeacherNet, create_model, width_divisor
from fastkd.models.cifar_small_nets import PatchRearrange, ShuffleNet, ShuffleUnitV2, channel_shuffle

REFERENCE = json.loads((Path(__file__).parent / "cifar_small_nets_reference_keys.json").read_text())
MODELS = [entry["model"] for name, entry in REFERENCE.items() if name != "_about"]

# 100 classes, counted by hand from the reference's layer formulas (conv/linear weights + biases, BN affine).
PARAMETER_COUNTS = {"mobilenet": 3_315_428, "mobilenetv2": 2_369_380, "shufflenet": 1_012_108,
                    "shufflenetv2": 1_360_896, "vit_cifar": 8_984_932}
FEATURE_SIZES = {"mobilenet": 1024, "mobilenetv2": 1280, "shufflenet": 960, "shufflenetv2": 1024, "vit_cifar": 384}


@pytest.mark.parametrize("reference_name", [n for n in REFERENCE if n != "_about"])
def test_state_dict_is_the_reference_layout(reference_name):
    entry = REFERENCE[reference_name]
    model = create_model(entry["model"], num_classes=100)
    actual = [(key, list(value.shape)) for key, value in model.state_dict().items()]
    assert actual == list(entry["keys"].items())  # same names, shapes and order


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_feature_size_and_forward_shapes(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=100).eval()
    assert sum(p.numel() for p in model.parameters()) == PARAMETER_COUNTS[name]
    assert model.feature_size == FEATURE_SIZES[name]
    sides = (32,) if name == "vit_cifar" else (32, 64)  # the CNNs pool adaptively, so Tiny-ImageNet's 64 px works
    with torch.no_grad():
        for side in sides:
            feature, logits = model(torch.randn(2, 3, side, side))
            assert feature.shape == (2, FEATURE_SIZES[name]) and logits.shape == (2, 100)
            assert torch.isfinite(logits).all()


def test_vit_refuses_other_image_sizes():
    with pytest.raises(ValueError, match="takes 32x32 images"):
        create_model("vit_cifar", num_classes=10)(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("name", MODELS)
def test_models_fit_the_online_kd_wrappers(name):
    teacher = TeacherNet(create_model(name, num_classes=10))
    student = StudentNet(create_model("mobilenetv2", num_classes=10), teacher.feature_size)
    projected, logits = student(torch.randn(2, 3, 32, 32))
    assert projected.shape == (2, FEATURE_SIZES[name]) and logits.shape == (2, 10)
    assert student.linear1.out_features == (1280 + FEATURE_SIZES[name]) // 2


def test_seeded_builds_are_identical():
    """Init draws in the reference's construction order, so the same seed gives the same weights every time."""
    states = []
    for _ in range(2):
        torch.manual_seed(3)
        states.append(create_model("shufflenet", num_classes=10).state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_patch_order_is_row_major_with_channels_fastest():
    """einops' ``b c (h p1) (w p2) -> b (h w) (p1 p2 c)``, written out element by element."""
    image = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).view(2, 3, 4, 6)
    patches = PatchRearrange(2)(image)
    assert patches.shape == (2, 6, 12)
    for b in range(2):
        for h in range(2):
            for w in range(3):
                for i in range(2):
                    for j in range(2):
                        for c in range(3):
                            assert patches[b, h * 3 + w, (i * 2 + j) * 3 + c] == image[b, c, h * 2 + i, w * 2 + j]


def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 3).flatten().tolist() == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]


def test_shufflenet_units_concatenate_only_at_stage_starts():
    model = ShuffleNet(num_classes=10)
    for stage in (model.stage2, model.stage3, model.stage4):
        assert [unit.concatenates for unit in stage] == [True] + [False] * (len(stage) - 1)
    first = model.stage2[0]
    assert first.expand.pointwise[0].out_channels == 240 - 24  # the pooled input supplies the other 24 channels
    assert first.bottlneck[0].pointwise[0].groups == 3  # grouped even in stage 2, as the reference builds it


def test_shufflenetv2_kept_shape_unit_passes_half_the_channels_through():
    torch.manual_seed(0)
    unit = ShuffleUnitV2(8, 8, 1).eval()
    x = torch.randn(1, 8, 4, 4)
    out = unit(x)
    # after the 2-group shuffle the untouched first half sits at the even channels
    assert torch.equal(out[:, 0::2], x[:, :4])


def test_mobilenetv2_adds_the_input_only_when_the_shape_is_kept():
    model = create_model("mobilenetv2", num_classes=10)
    assert [block.keeps_shape for block in model.stage2] == [False, True]
    assert not model.stage1.keeps_shape and not model.stage7.keeps_shape  # 32->16 and 160->320 channels


def test_vit_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = create_model("vit_cifar", num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    assert not torch.equal(model(x)[1], model(x)[1])
    model.eval()
    assert torch.equal(model(x)[1], model(x)[1])


def test_width_divisor_only_for_models_that_take_one():
    assert width_divisor("resnet18", 4.0, "model.student_downsample_factor") == 4.0
    assert width_divisor("mobilenet", 1.0, "model.student_downsample_factor") is None
    with pytest.raises(ConfigError, match=r"model.student_downsample_factor=4: model 'mobilenet' has one width"):
        width_divisor("mobilenet", 4.0, "model.student_downsample_factor")
