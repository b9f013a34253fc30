"""Scheduling modes: how a group's tasks are spread over its worker threads."""

from __future__ import annotations

import enum

from . import _core

__all__ = ["SchedulingMode"]


class SchedulingMode(enum.Enum):
    """How tasks are assigned to worker threads.

    ``ROUND_ROBIN`` (the default) sends task *k* of a group to thread *k mod num_threads*:
    predictable, and the cheapest hand-off. ``QUEUE`` puts tasks in a shared queue that the
    group's threads take from when they are free, which balances uneven workloads.
    """

    ROUND_ROBIN = _core.MODE_ROUND_ROBIN
    QUEUE = _core.MODE_QUEUE


def check_mode(mode: object) -> int:
    """Return the C code of ``mode`` or raise TypeError."""
    if type(mode) is not SchedulingMode:
        raise TypeError(
            f"mode must be a SchedulingMode (SchedulingMode.ROUND_ROBIN or "
            f"SchedulingMode.QUEUE), got {mode!r}"
        )
    return mode.value


def check_num_threads(num_threads: object) -> int:
    """Validate ``num_threads`` the way every public entry point does (one check, in C)."""
    return _core._check_num_threads(num_threads)
