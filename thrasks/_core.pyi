"""Type stub of the C extension thrasks._core (csrc/)."""

import asyncio
import threading
from collections.abc import Coroutine
from contextvars import Context
from types import TracebackType
from typing import Any, Final, TypeVar, final

_T = TypeVar("_T")

MODE_ROUND_ROBIN: Final[int]
MODE_QUEUE: Final[int]
KIND_TASKGROUP: Final[int]
KIND_PLAIN: Final[int]
MAX_THREADS: Final[int]

@final
class Future(asyncio.Future[_T]):
    """The future of a coroutine running on a worker thread (bound to the caller's loop)."""

    def cancel(self, msg: Any | None = None) -> bool: ...

@final
class Worker:
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def thread(self) -> threading.Thread: ...

class WorkerPool:
    def __new__(cls, num_threads: int | None = None) -> WorkerPool: ...
    def shutdown(self, wait: bool = True) -> None: ...
    def ensure(self, num_threads: int, /) -> None: ...
    def __enter__(self) -> WorkerPool: ...
    def __exit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...
    @property
    def size(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def threads(self) -> list[threading.Thread]: ...
    @property
    def _workers(self) -> list[Worker]: ...

class Group:
    def __init__(self, num_threads: int, mode: int, pool: WorkerPool, kind: int = ...) -> None: ...
    def create_task(
        self,
        coro: Coroutine[Any, Any, _T],
        *,
        name: str | None = None,
        context: Context | None = None,
    ) -> asyncio.Future[_T]: ...
    def _bind(self, loop: asyncio.AbstractEventLoop, parent_task: asyncio.Task[Any] | None, /) -> None: ...
    def _abort(self) -> None: ...
    @property
    def num_threads(self) -> int: ...
    @property
    def pool(self) -> WorkerPool: ...
    @property
    def _pending(self) -> int: ...
    @property
    def _entered(self) -> bool: ...
    @property
    def _aborting(self) -> bool: ...
    _exiting: bool
    _parent_cancel_requested: bool
    _parent_task: asyncio.Task[Any] | None
    _errors: list[BaseException]
    _base_error: BaseException | None
    _on_completed_fut: asyncio.Future[bool] | None
    @property
    def _loop(self) -> asyncio.AbstractEventLoop: ...

def gather(
    coros: tuple[Coroutine[Any, Any, Any], ...],
    num_threads: int,
    return_exceptions: bool,
    mode: int,
    pool: WorkerPool,
    /,
) -> asyncio.Future[list[Any]]: ...
def _drain(group: Group, /) -> None: ...
def _after_fork_child() -> None: ...
