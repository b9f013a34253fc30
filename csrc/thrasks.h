/* thrasks.h - what every Python-facing unit shares: the module state, and how heap types find it.
 *
 * Ownership conventions used across csrc/:
 *   - "strong" fields own one reference; "borrowed" fields are kept alive by someone named beside them.
 *   - An item on any hand-off (a worker's mailbox, a sink's finished stack, a shared queue) owns one
 *     reference to the object it belongs to; whoever takes it over takes that reference over.
 *
 * Include graph (each arrow: "includes the header of"; all point one way, no cycle):
 *   module.c -> group.h, gather.h              the Python-facing functions and types
 *   group.c, gather.c -> future_bridge.h        the owners of jobs, and the Future they hand out
 *   future_bridge.h -> pool.h                   (+ args.h: the shared argument parser)
 *   pool.h -> loop_runner.h                     pool.c: the pool and the routes of jobs
 *   loop_runner.h -> job.h, wakefd.h            loop_runner.c, mailbox.c, worker.c: a worker
 *   job.h -> loop_hub.h -> dispatcher.h, wakefd.h, thrasks.h
 *   dispatcher.h -> mpmc_queue.h                no Python below loop_hub.h
 * docs/design.md draws it.
 */
#ifndef THRASKS_H
#define THRASKS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdatomic.h>
#include <stdint.h>

#include "atomics.h"
#include "fault.h"

#define THRASKS_MAX_THREADS 1024

enum { MODE_ROUND_ROBIN = 0, MODE_QUEUE = 1 };

typedef struct thrasks_state {
    PyTypeObject *pool_type;
    PyTypeObject *worker_type;
    PyTypeObject *job_type;             /* thrasks._core.Job: one coroutine handed to a worker */
    PyTypeObject *group_type;
    PyTypeObject *future_type;          /* thrasks._core.Future, a subclass of asyncio.Future */
    PyTypeObject *gathering_type;       /* thrasks._core.GatheringFuture, threaded_gather's result */
    PyTypeObject *hub_type;             /* thrasks._core.LoopHub: a loop's wake-up fd */
    PyObject *asyncio_future_type;      /* _asyncio.Future (strong) */
    PyObject *task_type;                /* _asyncio.Task (strong) */
    PyObject *cancelled_error;          /* asyncio.CancelledError (strong) */
    PyObject *new_event_loop;           /* asyncio.new_event_loop (strong) */
    PyObject *abstract_loop_type;       /* asyncio.AbstractEventLoop (strong): loop_factory check */
    PyObject *iscoroutine;              /* asyncio.iscoroutine (strong) */
    PyObject *thread_type;              /* threading.Thread (strong) */
    PyObject *base_cancel;              /* _asyncio.Future.cancel, unbound: cancels without our override */
    PyObject *base_set_result;          /* _asyncio.Future.set_result, unbound (ours refuses callers) */
    PyObject *base_set_exception;       /* _asyncio.Future.set_exception, unbound */
    PyObject *base_done;                /* _asyncio.Future.done, unbound */
    PyObject *base_exception;           /* _asyncio.Future.exception, unbound: marks it retrieved */
    PyObject *get_running_loop;         /* asyncio.get_running_loop (strong) */
    PyObject *peek_running_loop;        /* asyncio._get_running_loop (strong): None when none runs */
    PyObject *live_pools;               /* strong: list of weakrefs to every pool alive (interpreter exit) */
    PyObject *forget_pool;              /* strong: module function _forget_pool, those weakrefs' callback */
    /* interned method and keyword names */
    PyObject *s_call_soon, *s_call_soon_threadsafe, *s_add_done_callback, *s_cancel, *s_cancelled,
        *s_result, *s_done, *s_loop, *s_name, *s_context, *s_add_reader, *s_remove_reader,
        *s_run_forever, *s_stop, *s_close, *s_is_closed, *s_run_until_complete,
        *s_shutdown_asyncgens, *s_shutdown_default_executor, *s_start, *s_join, *s_target,
        *s_daemon, *s_call_exception_handler, *s_uncancel, *s_ident, *s_deliver, *s_settle,
        *s_eager_start, *s_hub_attr, *s_call_later, *s_ready, *s_scheduled, *s_selector, *s_get_map,
        *s_when, *s_time;
    PyObject *empty_tuple;              /* () */
    PyObject *kw_loop;                  /* ("loop",) */
    PyObject *kw_task;                  /* ("loop", "name", "context") */
    PyObject *kw_context;               /* ("context",) */
    /* Bumped in a forked child (os.register_at_fork), so objects made before the fork know their
     * threads are gone. Relaxed is enough: only the child's single thread writes it, before any
     * other thread exists in the child. */
    atomic_ulong fork_generation;
    /* Set at interpreter exit (thrasks/_pool.py's atexit hook) before the pools are shut down:
     * only daemon threads can still be waiting for results then, and they are about to be
     * frozen, so outcomes are dropped instead of being delivered (no CancelledError noise from
     * threads that are going away). Relaxed: a hint; a delivery racing with it is harmless. */
    atomic_int discarding;
} thrasks_state;

/* The module definition (module.c): how heap types find their module, and so its state. */
extern PyModuleDef thrasks_module;

/* Module state from one of our heap types or a subclass of one (NULL with TypeError otherwise). */
thrasks_state *thrasks_state_of_type(PyTypeObject *tp);

/* The module object of one of our heap types or a subclass (borrowed). */
PyObject *thrasks_module_of_type(PyTypeObject *tp);

/* What a C allocation site raises when malloc failed: PyErr_NoMemory(). In a fault build the
 * failure is injected and memory is there, so a fresh MemoryError instead of CPython's
 * last-resort instance, whose traceback grows with every raise and keeps frames alive. */
/* A list of n Nones (strong references). Not PyList_New(n): on free-threaded CPython (3.13t to
 * 3.15t; gh-152125, a fix proposed upstream) a PyList_New(n > 0) whose item array cannot be
 * allocated frees the stale array of a list reused from the freelist, corrupting the heap. Grown
 * from an empty list instead, whose failure path is sound. */
static inline PyObject *thrasks_list_new(Py_ssize_t n)
{
    PyObject *list = PyList_New(0);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        if (PyList_Append(list, Py_None) < 0) {
            Py_CLEAR(list);
        }
    }
    return list;
}

/* The keys of `dict` (pairs 0), or its (key, value) items (pairs 1), as a new list: what
 * PyDict_Keys / PyDict_Items return, without their PyList_New(n) (see thrasks_list_new). */
static inline PyObject *thrasks_dict_list(PyObject *dict, int pairs)
{
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    int failed = 0;
    Py_BEGIN_CRITICAL_SECTION(dict); /* PyDict_Next's requirement on free-threaded builds */
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (!failed && PyDict_Next(dict, &pos, &key, &value)) {
        PyObject *item = pairs ? PyTuple_Pack(2, key, value) : Py_NewRef(key);
        failed = item == NULL || PyList_Append(out, item) < 0;
        Py_XDECREF(item);
    }
    Py_END_CRITICAL_SECTION();
    if (failed) {
        Py_CLEAR(out);
    }
    return out;
}

static inline PyObject *thrasks_no_memory(void)
{
#ifdef THRASKS_FAULT_INJECTION
    PyErr_SetNone(PyExc_MemoryError);
    return NULL;
#else
    return PyErr_NoMemory();
#endif
}

/* The unit that owns each type gives module.c its spec; module.c creates the types in exec. */
#endif
