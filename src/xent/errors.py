"""Errors a user can fix: the CLI prints them as one line, never a traceback."""

from __future__ import annotations

import errno
import re

# "loss.q=2 must be ...": a message that already names its config key needs no type prefix.
_NAMES_ITS_KEY = re.compile(r"^[a-z_]+(\.[A-Za-z_]\w*)+=")


# The CLIs' exit statuses: 2 for bad input (nothing was written), 1 for a run that failed.
EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 1


class XentError(Exception):
    """Bad input or a missing resource; the message names the key and what would be valid."""


class ConfigError(XentError):
    """A config value or combination that cannot work."""


class DataNotFoundError(XentError):
    """A dataset is neither on disk nor downloadable."""


def root_message(err: BaseException) -> str:
    """The innermost cause's message, on one line: what actually went wrong.

    A full disk wins wherever it is in the chain: torch's zip writer, for one, reports it as
    "unexpected pos" while handling the OSError that says so.
    """
    full = _disk_full(err)
    if full is not None:
        return f"{type(full).__name__}: {' '.join(str(full).split())}"
    while err.__cause__ is not None:
        err = err.__cause__
    text = " ".join(str(err).split())
    if isinstance(err, XentError) or _NAMES_ITS_KEY.match(text):
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _disk_full(err: BaseException | None) -> OSError | None:
    """The "No space left on device" (or quota) error behind `err`, if any."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return err
        err = err.__cause__ or err.__context__
    return None
