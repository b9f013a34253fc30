/* future_bridge.h - the Future a task group hands out (thrasks._core.Future), and how a finished
 * job's outcome gets into it.
 *
 * A Future is an asyncio.Future subclass bound to the loop of the thread that created the task:
 * the group's loop when the caller creates it, a worker's loop when a task running there spawns a
 * sibling (so the spawning task can await it). Its type data points at its job (strong: cancel()
 * needs it for as long as the future lives; the job drops its own reference to the future once
 * delivered, which breaks the cycle).
 *
 * Where a future is settled:
 *   - on the owner's loop (job_sink_drain -> the owner's deliver hook -> bridge_settle), the
 *     common case;
 *   - on a worker's loop, for a task spawned by a task running there: the finished job goes to
 *     that worker first (job.h: relay), which settles the future and passes the job on to the
 *     owner, so the spawning task wakes without a detour through the owner's loop and every
 *     future is done before the owner counts the job delivered;
 *   - on any other loop (a thread running its own loop spawned the task): bridge_settle, on the
 *     owner's loop, schedules the future's `_settle` there with call_soon_threadsafe.
 *
 * cancel(msg) overrides asyncio's: like Task.cancel() it only REQUESTS cancellation of the
 * coroutine on its worker; the future becomes cancelled when the worker says the coroutine has
 * finished cancelling (or gets a result if the coroutine swallowed the cancellation).
 */
#ifndef THRASKS_FUTURE_BRIDGE_H
#define THRASKS_FUTURE_BRIDGE_H

#include "pool.h"

/* A new Future bound to `loop`, for a job (not yet attached: see bridge_future_attach). `forward`:
 * the loop is neither the owner's nor a worker's, so bridge_settle forwards to it. New reference,
 * or NULL with an exception set. */
PyObject *bridge_future_new(thrasks_state *st, PyObject *loop, int forward);
/* Tie the future to its job (the future takes a strong reference). */
void bridge_future_attach(PyObject *fut, JobObject *job);

/* Owner's loop thread: put job's outcome into `fut` (nothing if it is already done), or forward
 * it to the future's own loop. `retrieve`: mark an exception retrieved (the owner reports it).
 * 0, or -1 with an exception set (safe to call again). */
int bridge_settle(thrasks_state *st, PyObject *fut, JobObject *job, int retrieve);

/* The future's own loop thread: put job's outcome into `fut` (nothing if already done). */
int bridge_settle_here(thrasks_state *st, PyObject *fut, JobObject *job, int retrieve);

/* fut.done() through asyncio.Future's own method: 1, 0, or -1 with an exception set. */
int bridge_is_done(thrasks_state *st, PyObject *fut);

/* asyncio.CancelledError(msg) (msg may be NULL). New reference or NULL. */
PyObject *bridge_cancelled_error(thrasks_state *st, PyObject *msg);

/* Call an unbound asyncio.Future method: meth(fut[, arg]). New reference or NULL. */
PyObject *bridge_call(PyObject *meth, PyObject *fut, PyObject *arg);

extern PyType_Spec bridge_future_spec;

#endif
