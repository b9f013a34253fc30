"""ThreadedTaskGroup: asyncio.TaskGroup's semantics, with the tasks running on worker threads."""

from __future__ import annotations

import asyncio
from types import TracebackType

from . import _core
from ._modes import SchedulingMode, check_mode
from ._pool import WorkerPool, check_pool

__all__ = ["ThreadedTaskGroup"]


class ThreadedTaskGroup(_core.Group):
    """An async context manager that runs its tasks on a pool of worker threads.

    Each worker thread runs its own asyncio event loop; tasks created with :meth:`create_task`
    run there, in parallel on a free-threaded interpreter. The group behaves like
    :class:`asyncio.TaskGroup`:

    * leaving the ``async with`` block waits for every task;
    * the first task that fails cancels the remaining tasks (and the body of the block);
    * an exception in the body, or the caller being cancelled (``asyncio.timeout``,
      ``wait_for``), cancels the tasks, and the group waits for them to finish cancelling;
    * ``KeyboardInterrupt`` / ``SystemExit`` raised by a task is re-raised by the group.

    One difference, from the thrasks spec: when exactly one task fails, its exception is
    re-raised as itself (``except ValueError`` works); when several fail, they are raised
    together as an :class:`ExceptionGroup`.

    Args:
        num_threads: Number of worker threads to spread the tasks over (default 4).
        mode: :class:`SchedulingMode.ROUND_ROBIN` (default) or :class:`SchedulingMode.QUEUE`.
        pool: The :class:`WorkerPool` to run on; the shared default pool if None.
    """

    __slots__ = ()

    def __init__(
        self,
        num_threads: int = 4,
        *,
        mode: SchedulingMode = SchedulingMode.ROUND_ROBIN,
        pool: WorkerPool | None = None,
    ) -> None:
        super().__init__(num_threads, check_mode(mode), check_pool(pool))

    def __repr__(self) -> str:
        info = [f"num_threads={self.num_threads}"]
        if self._pending:
            info.append(f"tasks={self._pending}")
        if self._aborting:
            info.append("cancelling")
        elif self._entered:
            info.append("entered")
        return f"<ThreadedTaskGroup {' '.join(info)}>"

    async def __aenter__(self) -> ThreadedTaskGroup:
        if self._entered:
            raise RuntimeError(f"ThreadedTaskGroup {self!r} has already been entered")
        loop = asyncio.get_running_loop()
        parent = asyncio.current_task(loop)
        if parent is None:
            raise RuntimeError(f"ThreadedTaskGroup {self!r} cannot determine the parent task")
        self._bind(loop, parent)
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tb = None
        try:
            return await self._aexit(et, exc)
        finally:
            # Break reference cycles through tracebacks, like asyncio.TaskGroup.
            self._parent_task = None
            self._errors = []
            self._base_error = None
            exc = None

    async def _aexit(self, et: type[BaseException] | None, exc: BaseException | None) -> None:
        # Mirrors asyncio.TaskGroup._aexit (CPython 3.13); the tasks' bookkeeping is in C.
        self._exiting = True
        if exc is not None and isinstance(exc, (SystemExit, KeyboardInterrupt)) and self._base_error is None:
            self._base_error = exc

        propagate_cancellation_error: BaseException | None = None
        if et is not None and issubclass(et, asyncio.CancelledError):
            propagate_cancellation_error = exc

        if et is not None and not self._aborting:
            # The body raised, or our parent task is being cancelled: cancel the tasks.
            self._abort()

        # A while loop, because _on_completed_fut can be cancelled repeatedly if our parent task
        # is cancelled repeatedly.
        while self._pending:
            if self._on_completed_fut is None:
                self._on_completed_fut = self._loop.create_future()
            try:
                await self._on_completed_fut
            except asyncio.CancelledError as ex:
                if not self._aborting:
                    # The parent task is being cancelled while tasks are still running.
                    propagate_cancellation_error = ex
                    self._abort()
            self._on_completed_fut = None

        if self._base_error is not None:
            try:
                raise self._base_error
            finally:
                exc = None

        parent = self._parent_task
        assert parent is not None, "__aenter__ binds the parent task"
        if self._parent_cancel_requested:
            # We cancelled our parent ourselves (a task failed): we must uncancel it.
            if parent.uncancel() == 0:
                propagate_cancellation_error = None

        try:
            if propagate_cancellation_error is not None and not self._errors:
                try:
                    raise propagate_cancellation_error
                finally:
                    exc = None
        finally:
            propagate_cancellation_error = None

        errors = self._errors
        if et is not None and not issubclass(et, asyncio.CancelledError):
            assert exc is not None
            errors.append(exc)

        if errors:
            # If the parent is being cancelled from outside the group, uncancel and re-cancel
            # it, which keeps its cancel count stable (as asyncio.TaskGroup does).
            if parent.cancelling():
                parent.uncancel()
                parent.cancel()
            try:
                if len(errors) == 1:
                    # The thrasks rule: a single failure is re-raised as itself. Raising it here,
                    # while the body's CancelledError is being handled, would make that its
                    # __context__ ("During handling of the above exception ..."): keep its own.
                    error: BaseException | None = errors[0]
                    assert error is not None
                    context = error.__context__
                    try:
                        raise error
                    finally:
                        error.__context__ = context
                        error = context = None
                raise BaseExceptionGroup("unhandled errors in a ThreadedTaskGroup", errors) from None
            finally:
                exc = None
                errors = []
