/* thrasks.h - what the Python-facing units share: module state and the message format of inboxes.
 *
 * Ownership conventions used across csrc/:
 *   - "strong" fields own one reference; "borrowed" fields are kept alive by someone named beside them.
 *   - An item in any queue (inbox, completion queue, shared queue) owns one reference to the object
 *     it points at; whoever pops it takes that reference over.
 */
#ifndef THRASKS_H
#define THRASKS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdatomic.h>
#include <stdint.h>
#include "dispatcher.h"

#define THRASKS_MAX_THREADS 1024

typedef struct thrasks_state {
    PyTypeObject *pool_type;
    PyTypeObject *worker_type;
    PyTypeObject *group_type;
    PyTypeObject *future_type;          /* thrasks._core.Future, a subclass of asyncio.Future */
    PyTypeObject *asyncio_future_type;  /* _asyncio.Future (strong) */
    PyObject *task_type;                /* _asyncio.Task (strong) */
    PyObject *cancelled_error;          /* asyncio.CancelledError (strong) */
    PyObject *new_event_loop;           /* asyncio.new_event_loop (strong) */
    PyObject *iscoroutine;              /* asyncio.iscoroutine (strong) */
    PyObject *thread_type;              /* threading.Thread (strong) */
    PyObject *base_cancel;              /* _asyncio.Future.cancel, unbound: cancels without our override */
    PyObject *base_set_result;          /* _asyncio.Future.set_result, unbound (ours refuses callers) */
    PyObject *base_set_exception;       /* _asyncio.Future.set_exception, unbound */
    PyObject *base_done;                /* _asyncio.Future.done, unbound */
    PyObject *get_running_loop;         /* asyncio.get_running_loop (strong) */
    PyObject *drain_func;               /* module function _drain(group): scheduled on caller loops */
    /* interned method and keyword names */
    PyObject *s_call_soon, *s_call_soon_threadsafe, *s_add_done_callback, *s_cancel, *s_cancelled,
        *s_exception, *s_result, *s_done, *s_loop, *s_name, *s_context, *s_add_reader,
        *s_remove_reader, *s_run_forever, *s_stop, *s_close, *s_run_until_complete,
        *s_shutdown_asyncgens, *s_shutdown_default_executor, *s_start, *s_join, *s_target,
        *s_daemon, *s_call_exception_handler;
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

/* ---- inbox messages: tagged pointers (objects are at least 8-byte aligned, so 2 tag bits are free) ---- */
enum { MSG_START = 0, MSG_CANCEL = 1, MSG_SERVE = 2, MSG_STOP = 3 };
#define MSG_TAG_MASK ((uintptr_t)3)

static inline void *msg_make(void *ptr, int tag) { return (void *)((uintptr_t)ptr | (uintptr_t)tag); }
static inline int msg_tag(void *msg) { return (int)((uintptr_t)msg & MSG_TAG_MASK); }
static inline void *msg_ptr(void *msg) { return (void *)((uintptr_t)msg & ~MSG_TAG_MASK); }

/* The module definition (module.c): how heap types find their module, and so its state. */
extern PyModuleDef thrasks_module;

/* Module state from one of our heap types or a subclass of one (NULL with TypeError otherwise). */
thrasks_state *thrasks_state_of_type(PyTypeObject *tp);

/* The module object of one of our heap types or a subclass (borrowed). */
PyObject *thrasks_module_of_type(PyTypeObject *tp);

#endif
