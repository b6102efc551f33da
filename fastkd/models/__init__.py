"""Models: reference-layout CIFAR ResNets and wrappers, built by name through the registry."""

from . import cifar_resnet  # noqa: F401  (registers resnet18..152)
from .cifar_resnet import StudentNet, TeacherNet, add_module_prefix, strip_module_prefix
from .registry import create_model, is_model, list_models, register_model

__all__ = [
    "StudentNet", "TeacherNet", "add_module_prefix", "strip_module_prefix",
    "create_model", "is_model", "list_models", "register_model",
]
