"""User-facing errors: the CLI prints their one-line message as ``fastkd: error: ...`` and exits with `exit_code`.

Anything else that escapes a command is a bug in fastkd and is shown with its traceback.
"""

from __future__ import annotations

import argparse
import typing


class FastkdError(Exception):
    """Bad user input; the message is one line naming what is wrong and how to fix it."""

    exit_code = 2


class ConfigError(FastkdError):
    """A bad config file, key or value."""


class DataError(FastkdError):
    """A missing or malformed data set."""


class CheckpointError(FastkdError):
    """A missing, unreadable or incompatible checkpoint."""


class UsageError(FastkdError):
    """A bad command-line argument or argument combination."""


class OutputError(FastkdError):
    """An output location that cannot be written (an I/O failure, not bad input: exit status 1)."""

    exit_code = 1


class DownloadError(FastkdError):
    """A data set could not be fetched (host unreachable, HTTP error, a cut or corrupt transfer): an I/O failure,
    exit status 1; the message says where to download it by hand."""

    exit_code = 1


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a UsageError (one line, exit 2) instead of usage + exit."""

    def error(self, message: str) -> typing.NoReturn:
        command = self.prog.removeprefix("fastkd").strip()  # `fastkd: error:` already names the program
        raise UsageError(f"{command + ': ' if command else ''}{message} (see {self.prog} --help)")


class NonFiniteLossError(FastkdError):
    """A training loss became NaN/inf (`train.nonfinite: stop`): the run stopped, its last good checkpoint kept.

    Not malformed input but a failed run, hence exit status 1."""

    exit_code = 1


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), short enough for a one-line error."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


class RunInterrupted(Exception):
    """Ctrl-C stopped a run after it saved `last.pt`; the message says how to continue it (exit status 130)."""

    exit_code = 130
