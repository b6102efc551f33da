"""Reference-layout CIFAR ResNets: shapes, widths, and state_dict keys a reference checkpoint uses."""

import pytest
import torch

from fastkd.errors import ConfigError
from fastkd.models import StudentNet, TeacherNet, create_model, list_models
from fastkd.reference.keys import add_module_prefix, strip_module_prefix


def reference_backbone_keys(blocks: list[int], bottleneck: bool) -> set[str]:
    """Keys of the reference's models/resnet.py ResNet, written out from its module structure (docs/semantics.md
    §3.1)."""
    keys = {"conv1.0.weight", "fc.weight", "fc.bias"}
    keys |= {f"conv1.1.{b}" for b in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    convs = (0, 3, 6) if bottleneck else (0, 3)
    for stage, n in zip(range(2, 6), blocks):
        for block in range(n):
            prefix = f"conv{stage}_x.{block}"
            for c in convs:
                keys.add(f"{prefix}.residual_function.{c}.weight")
                keys |= {f"{prefix}.residual_function.{c + 1}.{b}"
                         for b in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
            if block == 0 and (stage > 2 or bottleneck):
                keys.add(f"{prefix}.shortcut.0.weight")
                keys |= {f"{prefix}.shortcut.1.{b}"
                         for b in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    return keys


@pytest.mark.parametrize("name, blocks, bottleneck, feat", [
    ("resnet18", [2, 2, 2, 2], False, 512), ("resnet34", [3, 4, 6, 3], False, 512),
    ("resnet50", [3, 4, 6, 3], True, 2048),
])
def test_backbone_keys_match_reference_layout(name, blocks, bottleneck, feat):
    model = create_model(name, num_classes=100)
    assert set(model.state_dict()) == reference_backbone_keys(blocks, bottleneck)
    assert model.feature_size == feat


def test_forward_returns_feature_and_logits_channels_last():
    model = create_model("resnet18", num_classes=10, downsample_factor=4.0).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    feature, logits = model(x)
    assert feature.shape == (2, 256) and logits.shape == (2, 10)  # int(512 / sqrt(4)) = 256


def test_student_wrapper_loads_a_dataparallel_reference_state_dict():
    teacher = TeacherNet(create_model("resnet18", num_classes=100, downsample_factor=4.0))
    student = StudentNet(create_model("resnet18", num_classes=100), teacher.feature_size)
    assert student.linear1.out_features == (512 + 256) // 2 and student.linear2.out_features == 256
    # a state_dict as the reference's DataParallel(student_net) would save it
    reference = {f"module.net.{k}": torch.randn_like(v, dtype=torch.float32) if v.is_floating_point() else v
                 for k, v in create_model("resnet18", num_classes=100).state_dict().items()}
    reference.update({"module.linear1.weight": torch.randn(384, 512), "module.linear1.bias": torch.randn(384),
                      "module.linear2.weight": torch.randn(256, 384), "module.linear2.bias": torch.randn(256)})
    student.load_state_dict(strip_module_prefix(reference))
    assert torch.equal(student.linear2.bias, reference["module.linear2.bias"])
    assert set(add_module_prefix(student.state_dict())) == set(reference)


def test_registry_rejects_unknown_names():
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"} <= set(list_models("resnet*"))
    with pytest.raises(ConfigError, match="unknown model 'resnet19'"):
        create_model("resnet19")
