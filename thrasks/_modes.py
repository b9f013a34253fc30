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
    """Validate ``num_threads`` the way every public entry point does."""
    if type(num_threads) is bool or not isinstance(num_threads, int):
        raise TypeError(
            f"num_threads must be an int, got {type(num_threads).__name__}"
        )
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    if num_threads > _core.MAX_THREADS:
        raise ValueError(
            f"num_threads must be <= {_core.MAX_THREADS}, got {num_threads}"
        )
    return num_threads
