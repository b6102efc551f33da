"""Models: reference-layout CIFAR ResNets and wrappers, multi-exit self-KD and dropout ResNets, by name."""

from . import cifar_resnet, dropout_resnet, self_kd_resnet  # noqa: F401  (register their entrypoints)
from .cifar_resnet import StudentNet, TeacherNet, add_module_prefix, strip_module_prefix
from .dropout import MaxDropout, StandardDropout, max_dropout, standard_dropout
from .dropout_resnet import DropoutResNet
from .registry import create_model, is_model, list_models, register_model
from .self_kd_resnet import SelfKDResNet

__all__ = [
    "DropoutResNet", "MaxDropout", "SelfKDResNet", "StandardDropout", "StudentNet", "TeacherNet",
    "add_module_prefix", "create_model", "is_model", "list_models", "max_dropout", "register_model",
    "standard_dropout", "strip_module_prefix",
]
