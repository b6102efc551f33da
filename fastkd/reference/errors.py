"""The one error type of the reference package: an input the reference code cannot take, named in one line."""

from __future__ import annotations

from ..errors import ConfigError


class CompatError(ConfigError):
    """A reference flag fastkd cannot honour, an input on which the reference crashes, or a file that is not the
    checkpoint a reference conversion needs; one line, exit status 2."""
