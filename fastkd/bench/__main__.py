"""`python -m fastkd.bench ...` (the same as `fastkd bench ...`)."""

import sys

from .runner import main

sys.exit(main())
