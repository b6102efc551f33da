"""`python -m fastkd` (and `torchrun ... -m fastkd train CONFIG`): the `fastkd` command line."""

import sys

from .cli import main

sys.exit(main())
