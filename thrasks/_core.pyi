"""Type stub of the C extension thrasks._core (csrc/).

The public names are re-exported by :mod:`thrasks`; everything here that starts with an
underscore is internal to the Python shim (thrasks/_group.py, _gather.py, _pool.py).
"""

import asyncio
import threading
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context
from types import TracebackType
from typing import Any, Final, Self, TypedDict, TypeVar, final

_T = TypeVar("_T")

MODE_ROUND_ROBIN: Final[int]
MODE_QUEUE: Final[int]
KIND_TASKGROUP: Final[int]
KIND_PLAIN: Final[int]
MAX_THREADS: Final[int]
FAULT_INJECTION: Final[int]

class WorkerStats(TypedDict):
    """One worker's counters, as :meth:`WorkerPool.stats` reports them."""

    thread: str
    started: int
    finished: int
    failed: int
    cancelled: int
    running: int
    inbox: int
    shared_queue: int
    busy_seconds: float
    idle_seconds: float
    lingers: int
    linger_hits: int
    alive: bool

@final
class Job:
    """One coroutine handed to a worker (internal)."""

@final
class GatheringFuture(asyncio.Future[_T], Coroutine[Any, Any, _T]):
    """The future :func:`thrasks.threaded_gather` returns: the list of the results.

    It is also a coroutine (``send``/``throw``/``close``), so code written for the seed library's
    ``async def threaded_gather`` can pass it to :func:`asyncio.create_task`.
    """

    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel every coroutine still running (asyncio.gather's rules).

        Returns True if any was; the future is then cancelled once they have all finished.
        """
    def send(self, value: Any, /) -> Any: ...
    def throw(self, typ: Any, val: Any = ..., tb: Any = ..., /) -> Any: ...
    def close(self) -> None: ...
    def __await__(self) -> Generator[Any, None, _T]: ...
    def _deliver(self) -> None: ...

@final
class Future(asyncio.Future[_T]):
    """The future of a coroutine running on a worker thread.

    An :class:`asyncio.Future` bound to the loop that created it: await it, add callbacks,
    cancel it. Its result, exception or cancellation comes from the worker; ``set_result()``
    and ``set_exception()`` raise :class:`RuntimeError`.
    """

    def _settle(self) -> None: ...
    def cancel(self, msg: Any | None = None) -> bool:
        """Request cancellation of the coroutine on its worker thread.

        Like :meth:`asyncio.Task.cancel`, this is a request: it returns True if the request was
        made (False if the future is already done). The future becomes cancelled once the
        coroutine has finished cancelling on its worker; if the coroutine suppresses the
        :class:`asyncio.CancelledError`, the future gets its result instead.
        """

@final
class Worker:
    """One OS thread running one asyncio event loop (internal)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The worker's event loop."""
    @property
    def thread(self) -> threading.Thread:
        """The :class:`threading.Thread` running the worker."""
    @property
    def alive(self) -> bool:
        """False once the worker stopped or its loop died."""

class WorkerPool:
    """The C core of :class:`thrasks.WorkerPool`."""

    def __new__(
        cls,
        num_threads: int | None = None,
        *,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        linger: bool = True,
    ) -> Self: ...
    def stats(self) -> list[WorkerStats]:
        """Per-worker counters (see :meth:`thrasks.WorkerPool.stats`)."""
    def _check(self) -> None: ...
    @property
    def linger(self) -> bool:
        """Whether an idle worker watches for the next job before it sleeps (``linger=``)."""
    @property
    def loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        """The callable that makes each worker's event loop, or None for asyncio's default."""
    @property
    def _all_threads(self) -> list[threading.Thread | None]: ...
    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers: their running tasks are cancelled and their loops closed.

        With ``wait=True`` (default), join their threads. Calling it again does nothing more;
        a pool that has been shut down refuses new work with :class:`RuntimeError`.
        """
    def ensure(self, num_threads: int, /) -> None:
        """Start workers until the pool has at least ``num_threads`` of them."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool:
        """Shut the pool down and join its threads (:meth:`shutdown` with ``wait=True``)."""
    @property
    def size(self) -> int:
        """Number of worker threads started."""
    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` was called."""
    @property
    def threads(self) -> list[threading.Thread]:
        """The workers' :class:`threading.Thread` objects."""
    @property
    def _workers(self) -> list[Worker]: ...

class Group:
    """The C core of :class:`thrasks.ThreadedTaskGroup` (and of ``threaded_gather``)."""

    def __init__(self, num_threads: int, mode: int, pool: WorkerPool, kind: int = ...) -> None: ...
    def create_task(
        self,
        coro: Coroutine[Any, Any, _T],
        *,
        name: str | None = None,
        context: Context | None = None,
    ) -> asyncio.Future[_T]:
        """Run the coroutine on a worker thread and return the future of its result.

        The future is bound to the event loop of the calling thread: the group's loop, or, when
        a task running on a worker spawns a sibling, that worker's loop, so the task can await
        it. The group tracks every task either way.

        Args:
            coro: The coroutine to run. Anything else raises :class:`TypeError`.
            name: The name of the worker-side :class:`asyncio.Task`.
            context: The :class:`contextvars.Context` to run the coroutine in. The coroutine
                runs in a *copy* of it (one context cannot be entered by two threads at once),
                so changes it makes to context variables are not seen by the caller. Default:
                a copy of the caller's current context, as :func:`asyncio.create_task` does.

        Returns:
            The future of the coroutine's result, an asyncio.Future bound to the calling loop.
                Its ``cancel()`` requests cancellation of the coroutine on its worker, like
                :meth:`asyncio.Task.cancel`.

        Raises:
            RuntimeError: The group has not been entered, is finished, or is shutting down
                (a task failed or the block was left with an error); or its pool was shut down.
        """
    def _bind(self, loop: asyncio.AbstractEventLoop, parent_task: asyncio.Task[Any] | None, /) -> None: ...
    def _abort(self) -> None: ...
    def _deliver(self) -> None: ...
    @property
    def num_threads(self) -> int:
        """Number of worker threads the group spreads its tasks over."""
    @property
    def pool(self) -> WorkerPool:
        """The pool the group runs on."""
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
    num_threads: object,
    return_exceptions: bool,
    mode: int,
    pool: WorkerPool,
    /,
) -> GatheringFuture[list[Any]]:
    """Start a tuple of coroutines on the pool; return the future of the list of their results.

    asyncio.gather's rules; on any error every coroutine not started is closed.
    """
def _check_num_threads(num_threads: object, /) -> int: ...
def _live_pools() -> list[WorkerPool]: ...
def _after_fork_child() -> None: ...
def _discard_completions() -> None: ...
def _fault_arm(k: int, /) -> None: ...
def _fault_state() -> tuple[int, int]: ...
