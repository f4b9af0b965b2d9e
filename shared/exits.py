"""The exit statuses of every entry point, in one table.

supervisord, a container runtime and an operator's shell all read these, so
each cause has one status wherever it is detected.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    FATAL = 1  # a program of the stack went FATAL, or a process stopped unexpectedly; probe check / health: failed
    CONFIG = 2  # a setting is wrong (also: the command line is wrong)
    FAILED_OUT = 3  # the sender gave up after MAX_CONSECUTIVE_ERRORS failed posts in a row
    STORE = 4  # the store file cannot be used (corrupt, foreign, newer schema, unwritable)
    BUSY = 5  # another stack already runs on this store, or uses this metrics or run directory
    NO_STACK = 6  # `probe ctl`: no stack runs for this store


MEANING = {
    ExitStatus.OK: "stopped cleanly",
    ExitStatus.FATAL: (
        "a program went FATAL (it kept failing at start), or a process stopped unexpectedly; "
        "probe check: an event did not arrive; probe health: the stack does not answer healthy"
    ),
    ExitStatus.CONFIG: "configuration error (one line names the setting)",
    ExitStatus.FAILED_OUT: "sender only: MAX_CONSECUTIVE_ERRORS failed posts in a row; supervisord restarts it",
    ExitStatus.STORE: "the store cannot be used (one line says why and what to do)",
    ExitStatus.BUSY: "another stack already runs on this store, or uses its metrics or run directory (one line says)",
    ExitStatus.NO_STACK: "probe ctl: no stack runs for this store (one line names the store)",
}
