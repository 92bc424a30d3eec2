"""Errors a user can fix: the CLI prints them as one line, never a traceback."""

from __future__ import annotations


class XentError(Exception):
    """Bad input or a missing resource; the message names the key and what would be valid."""


class ConfigError(XentError):
    """A config value or combination that cannot work."""


class DataNotFoundError(XentError):
    """A dataset is neither on disk nor downloadable."""
