/* gather.h - threaded_gather of coroutines (thrasks._core.gather and GatheringFuture).
 *
 * _core.gather(coros, num_threads, return_exceptions, mode, pool) starts every coroutine on the
 * pool at once (like asyncio.gather) and returns a GatheringFuture bound to the running loop: an
 * asyncio.Future subclass that is itself the owner of the jobs (it embeds their sink and route),
 * so a gather costs one object plus one job per coroutine. Its deliver hook is asyncio.gather's
 * _done_callback: results in input order; without return_exceptions the first failure settles
 * it; its cancel() is _GatheringFuture.cancel (cancel every child still running; if any was, the
 * future ends cancelled once they all finished, whatever return_exceptions says).
 *
 * Any failure before the future is returned closes every coroutine not started (no "never
 * awaited" warning) and cancels the ones that were.
 */
#ifndef THRASKS_GATHER_H
#define THRASKS_GATHER_H

#include "future_bridge.h"

PyObject *gather_start(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

extern PyType_Spec gather_future_spec;

#endif
