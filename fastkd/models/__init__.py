"""Models by name: reference-layout CIFAR ResNets and wrappers, the online-KD reference's MobileNets, ShuffleNets
and small ViT, self-KD and dropout ResNets, the dropout WideResNet, the pycls ViTs."""

# Imported to register their entrypoints.
from . import cifar_resnet, cifar_small_nets, dropout_resnet, self_kd_resnet, vit, wide_resnet  # noqa: F401
from .cifar_resnet import StudentNet, TeacherNet
from .dropout import MaxDropout, StandardDropout, max_dropout, standard_dropout
from .dropout_resnet import DropoutResNet
from .registry import create_model, family_model_name, is_model, list_models, register_model, width_divisor
from .self_kd_resnet import SelfKDResNet
from .wide_resnet import WideResNet

__all__ = [
    "DropoutResNet", "MaxDropout", "SelfKDResNet", "StandardDropout", "StudentNet", "TeacherNet", "WideResNet",
    "create_model", "is_model", "list_models", "max_dropout", "register_model", "standard_dropout",
    "width_divisor",
]
