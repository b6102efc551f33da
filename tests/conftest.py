"""Shared pytest setup: keep torch to the machine's cores and make tests import the fixtures module."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
