"""fastkd: a high-throughput trainer for spacing-effect knowledge distillation."""

__version__ = "0.1.0"
