"""Type stub of the C extension thrasks._core (csrc/).

The public names are re-exported by :mod:`thrasks`; everything here that starts with an
underscore is internal to the Python shim (thrasks/_group.py, _gather.py, _pool.py).
"""

import asyncio
import threading
from collections.abc import Coroutine
from contextvars import Context
from types import TracebackType
from typing import Any, Final, Self, TypeVar, final

_T = TypeVar("_T")

MODE_ROUND_ROBIN: Final[int]
MODE_QUEUE: Final[int]
KIND_TASKGROUP: Final[int]
KIND_PLAIN: Final[int]
MAX_THREADS: Final[int]

@final
class Future(asyncio.Future[_T]):
    """The future of a coroutine running on a worker thread.

    An :class:`asyncio.Future` bound to the loop that created it: await it, add callbacks,
    cancel it. Its result, exception or cancellation comes from the worker; ``set_result()``
    and ``set_exception()`` raise :class:`RuntimeError`.
    """

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

class WorkerPool:
    """The C core of :class:`thrasks.WorkerPool`."""

    def __new__(cls, num_threads: int | None = None) -> Self: ...
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

        The future is bound to the caller's event loop. A task that is still running may call
        ``create_task`` on its own group from its worker thread, to spawn siblings.

        Args:
            coro: The coroutine to run. Anything else raises :class:`TypeError`.
            name: The name of the worker-side :class:`asyncio.Task`.
            context: The :class:`contextvars.Context` to run the coroutine in. The coroutine
                runs in a *copy* of it (one context cannot be entered by two threads at once),
                so changes it makes to context variables are not seen by the caller. Default:
                a copy of the caller's current context, as :func:`asyncio.create_task` does.

        Returns:
            The future of the coroutine's result, an asyncio.Future bound to the caller's loop.
                Its ``cancel()`` requests cancellation of the coroutine on its worker, like
                :meth:`asyncio.Task.cancel`.

        Raises:
            RuntimeError: The group has not been entered, is finished, or is shutting down
                (a task failed or the block was left with an error); or its pool was shut down.
        """
    def _bind(self, loop: asyncio.AbstractEventLoop, parent_task: asyncio.Task[Any] | None, /) -> None: ...
    def _abort(self) -> None: ...
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
    num_threads: int,
    return_exceptions: bool,
    mode: int,
    pool: WorkerPool,
    /,
) -> asyncio.Future[list[Any]]:
    """Start a tuple of coroutines on the pool; return the future of the list of their results.

    asyncio.gather's rules; the arguments are validated by :func:`thrasks.threaded_gather`.
    """
def _drain(group: Group, /) -> None: ...
def _after_fork_child() -> None: ...
def _discard_completions() -> None: ...
