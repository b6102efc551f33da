"""`fastkd compat export`: a fastkd run checkpoint written in the reference script's file layout."""

from __future__ import annotations

from pathlib import Path

from ...engine.checkpoint import load_checkpoint, save_atomic
from ...errors import OutputError
from ..errors import CompatError
from ..keys import export_reference_checkpoint

def export_command(argv: list[str]) -> int:
    """`fastkd compat export RUN_CHECKPOINT OUT_FILE`: a run checkpoint in the reference script's file layout."""
    if len(argv) != 2 or any(a.startswith("-") for a in argv):
        raise CompatError("usage: fastkd compat export RUN_CHECKPOINT OUT_FILE (e.g. runs/x/best.pt x.pkl)")
    source, target = argv
    payload = load_checkpoint(source)
    exported = export_reference_checkpoint(payload)
    try:
        save_atomic(exported, Path(target))
    except OSError as exc:
        raise OutputError(f"compat export: cannot write {target} ({exc.strerror or type(exc).__name__}); "
                          "pass an OUT_FILE in a writable folder") from None
    print(f"wrote {target}: {payload['config']['method']} weights in the reference script's layout")
    return 0
