"""thrasks: asyncio tasks on a pool of threads, each with its own event loop.

On a free-threaded CPython (3.13t, 3.14t) the coroutines run in parallel. Swap
``asyncio.TaskGroup`` for :class:`ThreadedTaskGroup` and ``asyncio.gather`` for
:func:`threaded_gather`; everything else is ordinary asyncio code.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from ._gather import threaded_gather
from ._group import ThreadedTaskGroup
from ._map import ThreadedMap, threaded_map
from ._modes import SchedulingMode
from ._pool import WorkerPool, default_pool

try:
    __version__ = _version("thrasks")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0+unknown"

__all__ = [
    "SchedulingMode",
    "ThreadedMap",
    "ThreadedTaskGroup",
    "WorkerPool",
    "__version__",
    "default_pool",
    "threaded_gather",
    "threaded_map",
]
