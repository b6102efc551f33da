"""Vision transformers of the reference's pycls trainer, by its names: timm's models where timm has the
architecture (DeiT, PiT, PVTv2, ConViT), fastkd's own from timm's blocks where it has none (PVT, T2T-ViT, CvT)."""

from . import convit, cvt, deit, pit, pvt, pvt_v2, t2t_vit  # noqa: F401  (register their entrypoints)
from .deit import DistilledDeiT

VIT_MODELS = ("deit_tiny", "pit_ti", "pvt_tiny", "pvt_v2_b0", "t2t_vit_7", "t2t_vit_14", "cvt_13", "convit_tiny")

__all__ = ["DistilledDeiT", "VIT_MODELS"]
