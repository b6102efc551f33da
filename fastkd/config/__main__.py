"""`python -m fastkd.config [FILE] [key=value ...]`: print the resolved config (see `command`)."""

import sys

from .command import main

sys.exit(main())
