"""The CIFAR-10 AutoAugment policy of the self-KD reference (docs/semantics.md §2.4) as tables both backends read."""

from __future__ import annotations

import math

import torch

# Operation ids, shared by the host-side parameter draws and the torch and DALI op dispatch.
OPS: tuple[str, ...] = (
    "invert",
    "contrast",
    "rotate",
    "translate_x",
    "translate_y",
    "sharpness",
    "shear_x",
    "shear_y",
    "autocontrast",
    "equalize",
    "posterize",
    "color",
    "brightness",
    "solarize",
)
OP_ID: dict[str, int] = {name: i for i, name in enumerate(OPS)}
IDENTITY = -1
"""Op id of a stage whose apply-bit came up false."""

SIGNED_OPS = frozenset(
    {"contrast", "translate_x", "translate_y", "sharpness", "shear_x", "shear_y", "color", "brightness"}
)
"""Ops whose magnitude gets a random sign (rotate does not: the reference always turns counter-clockwise)."""

# The 25 sub-policies in reference order: (p1, op1, m1, p2, op2, m2), m = magnitude index 0..9.
CIFAR10_POLICY: tuple[tuple[float, str, int, float, str, int], ...] = (
    (0.1, "invert", 7, 0.2, "contrast", 6),
    (0.7, "rotate", 2, 0.3, "translate_x", 9),
    (0.8, "sharpness", 1, 0.9, "sharpness", 3),
    (0.5, "shear_y", 8, 0.7, "translate_y", 9),
    (0.5, "autocontrast", 8, 0.9, "equalize", 2),
    (0.2, "shear_y", 7, 0.3, "posterize", 7),
    (0.4, "color", 3, 0.6, "brightness", 7),
    (0.3, "sharpness", 9, 0.7, "brightness", 9),
    (0.6, "equalize", 5, 0.5, "equalize", 1),
    (0.6, "contrast", 7, 0.6, "sharpness", 5),
    (0.7, "color", 7, 0.5, "translate_x", 8),
    (0.3, "equalize", 7, 0.4, "autocontrast", 8),
    (0.4, "translate_y", 3, 0.2, "sharpness", 6),
    (0.9, "brightness", 6, 0.2, "color", 8),
    (0.5, "solarize", 2, 0.0, "invert", 3),
    (0.2, "equalize", 0, 0.6, "autocontrast", 0),
    (0.2, "equalize", 8, 0.6, "equalize", 4),
    (0.9, "color", 9, 0.6, "equalize", 6),
    (0.8, "autocontrast", 4, 0.2, "solarize", 8),
    (0.1, "brightness", 3, 0.7, "color", 0),
    (0.4, "solarize", 5, 0.9, "autocontrast", 3),
    (0.9, "translate_y", 9, 0.7, "translate_y", 9),
    (0.9, "autocontrast", 2, 0.8, "solarize", 3),
    (0.8, "equalize", 8, 0.1, "invert", 3),
    (0.7, "translate_y", 9, 0.9, "autocontrast", 1),
)


def _linspace(start: float, stop: float, index: int, steps: int = 10) -> float:
    """``np.linspace(start, stop, steps)[index]``, as the reference builds its magnitude ranges."""
    return start + (stop - start) * index / (steps - 1)


def unsigned_magnitude(op: str, index: int, height: int, width: int) -> float:
    """The parameter an op gets from magnitude index ``index`` before its random sign (docs/semantics.md §2.4).

    Enhance ops return the factor offset (the factor is ``1 +- value``), translate returns pixels, shear the shear
    factor, rotate degrees, posterize bits and solarize the threshold; parameter-free ops return 0.
    """
    if op in ("contrast", "sharpness", "color", "brightness"):
        return _linspace(0.0, 0.9, index)
    if op == "translate_x":
        return _linspace(0.0, 150 / 331, index) * width
    if op == "translate_y":
        return _linspace(0.0, 150 / 331, index) * height
    if op in ("shear_x", "shear_y"):
        return _linspace(0.0, 0.3, index)
    if op == "rotate":
        return _linspace(0.0, 30.0, index)
    if op == "posterize":
        return float(round(_linspace(8.0, 4.0, index)))
    if op == "solarize":
        return _linspace(256.0, 0.0, index)
    return 0.0


def signed_parameter(op: str, index: int, sign: int, height: int, width: int) -> float:
    """The value a batched op consumes: enhance factor, signed pixels, shear angle in degrees, bits, threshold."""
    value = unsigned_magnitude(op, index, height, width)
    if op in ("contrast", "sharpness", "color", "brightness"):
        return 1.0 + sign * value
    if op in ("shear_x", "shear_y"):
        # PIL's shear factor s maps x_in = x + s*y; torchvision's affine takes the shear as an angle atan(s).
        return math.degrees(math.atan(sign * value))
    if op in SIGNED_OPS:
        return sign * value
    return value


# timm's RandAugment, increasing-severity op set ("rand-...-inc1", docs/semantics.md §2.3), in timm's order.
RANDAUGMENT_OPS: tuple[str, ...] = (
    "autocontrast",
    "equalize",
    "invert",
    "rotate",
    "posterize",
    "solarize",
    "solarize_add",
    "color",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)


def parse_randaugment(config: str) -> dict[str, float]:
    """timm's ``rand-m9-mstd0.5-inc1`` string as magnitude, magnitude_std, num_layers and prob (timm defaults:
    magnitude 10, 2 layers, prob 0.5); only the increasing op set is implemented."""
    settings = {"magnitude": 10.0, "magnitude_std": 0.0, "num_layers": 2.0, "prob": 0.5, "increasing": 0.0}
    keys = {"m": "magnitude", "mstd": "magnitude_std", "n": "num_layers", "p": "prob", "inc": "increasing"}
    sections = config.split("-")
    if sections[0] != "rand":
        raise ValueError(f"RandAugment config {config!r} must start with 'rand-'")
    for section in sections[1:]:
        key = section.rstrip("0123456789.")
        if key not in keys:
            raise ValueError(f"RandAugment section {section!r} of {config!r} is not one of: {', '.join(keys)}")
        settings[keys[key]] = float(section[len(key):])
    if not settings["increasing"]:
        raise ValueError(f"RandAugment {config!r}: only the increasing op set (inc1) is implemented")
    return settings


def randaugment_parameters(
    op_ids: torch.Tensor, magnitudes: torch.Tensor, signs: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """timm's level-to-argument maps (magnitude in 0..10) as the values the batched ops consume, float64."""
    level = magnitudes / 10.0
    signed = level * signs
    by_op = {
        "rotate": signed * 30.0,
        "posterize": 4.0 - torch.trunc(level * 4.0),
        "solarize": 256.0 - torch.clamp(torch.trunc(level * 256.0), max=256.0),
        "solarize_add": torch.clamp(torch.trunc(level * 110.0), max=128.0),
        "shear_x": torch.rad2deg(torch.atan(signed * 0.3)),
        "shear_y": torch.rad2deg(torch.atan(signed * 0.3)),
        "translate_x": signed * 0.45 * width,
        "translate_y": signed * 0.45 * height,
    }
    enhance = torch.clamp(1.0 + signed * 0.9, min=0.1)
    values = torch.zeros_like(magnitudes)
    for op_id, op in enumerate(RANDAUGMENT_OPS):
        chosen = op_ids == op_id
        if op in by_op:
            values[chosen] = by_op[op][chosen]
        elif op in ("color", "contrast", "brightness", "sharpness"):
            values[chosen] = enhance[chosen]
    return values
