"""What a job of hydra/launcher=cores's worker processes hands back to xent-run's process.

Here, in xent, and not in the launcher's module: Hydra's plugin scan executes every module under
`hydra_plugins` again at each start, which would make new classes and a new list of these.
"""

from __future__ import annotations

# Set in the workers (and only there): the file whose presence means "the sweep was
# interrupted: stop"; a job that sees it set runs in a worker.
STOP_FILE_ENV = "XENT_SWEEP_STOP_FILE"


class RelayedFailure(Exception):
    """A failed job of a worker process: the line xent-run prints for it and whether it was bad
    input; picklable, so that it crosses back to xent-run's process."""

    def __init__(self, line: str, bad_input: bool):
        super().__init__(line, bad_input)
        self.line, self.bad_input = line, bad_input


class JobInterrupted(Exception):
    """An interrupted job of a worker process, with its one line: an Exception there, so that
    joblib hands it back instead of killing every other worker before it could record itself."""


# The relayed failures of this process's sweep, printed by xent-run once it is done.
relayed_failures: list[RelayedFailure] = []
