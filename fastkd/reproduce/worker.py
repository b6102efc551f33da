"""`python -m fastkd.reproduce.worker RUN.json OUTCOME.json`: one grid run in its own process (one per GPU under
the local launcher), or in each process of a `torchrun` job (--gpus-per-run K); calls the same `run_one` entry as
every other launcher, and rank 0 writes its outcome as JSON."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..engine import distributed
from .grid import Run
from .runner import run_one


def main(argv: list[str]) -> int:
    spec, result = (Path(a) for a in argv)
    fields = json.loads(spec.read_text())
    try:
        outcome = run_one(Run(**{**fields, "overrides": tuple(fields["overrides"])}))
        if distributed.is_main():
            result.write_text(json.dumps(asdict(outcome)))
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
