"""`ema` (train_EMA.py) -> an EMA config."""

from __future__ import annotations

from typing import Any

from ...models import is_model
from ..flags import EMA_REFERENCE_NETS, no_effect
from .common import Draft, cnn_dataset, crash, name_suffix, optim_section, optimizer_name, unsupported, usable_names

def translate_ema(script: str, v: dict[str, Any], given: set[str], semantics: str) -> Draft:
    notes: list[str] = []
    dataset = cnn_dataset(script, v["dataset"])
    if v["net"] not in EMA_REFERENCE_NETS:
        raise crash(script, "-net", v["net"], f"train_EMA.py builds only {', '.join(EMA_REFERENCE_NETS[:-1])} and "
                     f"{EMA_REFERENCE_NETS[-1]}",
                     "use one of those")
    if not is_model(v["net"]):
        raise unsupported(script, "-net", v["net"], f"fastkd has no {v['net']}; use one of "
                           f"{usable_names(EMA_REFERENCE_NETS)}")
    optimizer = optimizer_name(script, v["optimizer"])
    lr_decay = False
    if v["lr_decay"]:
        if semantics == "reference":
            notes.append("-lr_decay: " + no_effect("train_EMA.py never steps its scheduler and runs -epoch epochs"))
        else:
            lr_decay = True
            notes.append("-lr_decay: MultiStepLR([60,120,160], 0.2) stepped every epoch (standard semantics; "
                         "the reference never steps it)")
    interval = v["interval"]
    raw = {
        "name": f"ema_{dataset}_{v['net']}_spaced_{interval}_alpha_{v['alpha']}{name_suffix(semantics)}",
        "method": "ema" if interval == 0 else "spaced_ema", "semantics": semantics,
        "data": {"dataset": dataset, "batch_size": v["b"], "eval_batch_size": v["b"]},
        "model": {"student": v["net"]},
        "ema": {"decay": v["alpha"], "interval": float(interval)},
        "optim": optim_section(optimizer, v["lr"], lr_decay=lr_decay),
        "train": {"epochs": v["epoch"]},
    }
    return Draft(raw, notes)
