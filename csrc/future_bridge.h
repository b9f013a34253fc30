/* future_bridge.h - the caller's side of a task: thrasks._core.Future (a job) and _core.Group.
 *
 * A job is an instance of thrasks._core.Future, a subclass of asyncio.Future bound to the CALLER's
 * loop. The worker runs the coroutine as an asyncio.Task on ITS loop and reports the outcome back:
 *
 *   caller thread                         worker thread                     caller thread
 *   create_task: job, push MSG_START  ->  Task(coro); state RUNNING   ...   (task runs)
 *                                         done: outcome; state DONE;
 *                                         push job on group->completions -> _drain: set the future,
 *                                         (one call_soon_threadsafe/batch)   group accounting
 *
 * Cancellation goes the other way: Future.cancel() (ours overrides asyncio's) only REQUESTS it, like
 * Task.cancel(): the worker cancels its task and the future becomes cancelled when the worker says
 * the coroutine has finished cancelling (or it finishes some other way, if it swallowed the cancel).
 *
 * Job state machine (JobData.state), transitions by CAS unless noted:
 *   PENDING --(canceller)--> CANCEL_PENDING     the worker will cancel the task right after creating it
 *   PENDING --(worker, after task/worker fields are written)--> RUNNING
 *   CANCEL_PENDING --(worker cancels the task, plain store)--> RUNNING
 *   RUNNING --(canceller: sends MSG_CANCEL to the job's worker; state unchanged)
 *   RUNNING --(worker, task done, plain store)--> DONE
 * Exactly one party turns a cancel request into task.cancel(): whoever wins the PENDING CAS.
 */
#ifndef THRASKS_FUTURE_BRIDGE_H
#define THRASKS_FUTURE_BRIDGE_H

#include "thrasks.h"

enum { JOB_PENDING = 0, JOB_CANCEL_PENDING = 1, JOB_RUNNING = 2, JOB_DONE = 3 };
enum { OUTCOME_RESULT = 0, OUTCOME_EXCEPTION = 1, OUTCOME_CANCELLED = 2 };
enum { ROLE_JOB = 0, ROLE_GATHER_OUTER = 1 };

/* Group kinds: how finished jobs are delivered. */
enum {
    KIND_TASKGROUP = 0,   /* ThreadedTaskGroup: set futures; first error aborts the group */
    KIND_PLAIN = 1,       /* futures only, no group semantics (threaded_gather with mixed inputs) */
    KIND_GATHER = 2,      /* threaded_gather of coroutines: results gathered in C, one outer future */
};
enum { MODE_ROUND_ROBIN = 0, MODE_QUEUE = 1 };

struct GroupObject;
struct WorkerObject;

/* The part of a thrasks._core.Future that follows asyncio.Future's own fields. */
typedef struct JobData {
    struct GroupObject *group;     /* strong: the group that delivers this job */
    PyObject *coro;                /* strong until the worker takes it over into its Task */
    PyObject *context;             /* strong: contextvars.Context the coroutine runs in */
    PyObject *name;                /* strong or NULL: name of the worker-side Task */
    PyObject *task;                /* strong, worker thread only: the worker-side Task while it runs */
    struct WorkerObject *worker;   /* strong: the worker running it; written before state RUNNING */
    PyObject *outcome;             /* strong: result or exception; written before the job is pushed
                                      on the completion queue (the queue's release/acquire hands it over) */
    _Atomic(PyObject *) cancel_msg; /* strong or NULL: first message given to cancel() */
    _Atomic int state;             /* JOB_* above */
    atomic_int cancel_deferred;    /* a CANCEL_PENDING job is cancelled after its first step (the
                                      group aborts because a sibling failed: like asyncio, tasks
                                      already created still start) rather than before it */
    int outcome_kind;              /* OUTCOME_*; same hand-off as outcome */
    int role;                      /* ROLE_*; fixed at creation */
    Py_ssize_t index;              /* position in threaded_gather's results */
    PyObject *prev, *next;         /* the group's list of undelivered jobs (guarded by group->lock;
                                      the list owns one reference to each member) */
} JobData;

typedef struct serve_token {      /* the MSG_SERVE payload: "serve slot `slot` of `group`" */
    struct GroupObject *group;     /* borrowed: the message that carries the token owns a group ref */
    size_t slot;
} serve_token;

typedef struct GroupObject {
    PyObject_HEAD
    thrasks_state *st;             /* borrowed: kept alive by `module` */
    PyObject *module;              /* strong */
    PyObject *pool;                /* strong: thrasks._core.Pool the tasks run on */
    PyObject *loop;                /* strong: the caller's loop; completions are delivered on it */
    disp_inbox completions;        /* finished jobs waiting for _drain (items own a job reference) */
    int kind, mode;
    size_t num_threads;
    size_t pool_size;              /* workers the round robin maps over, fixed when bound */
    disp_rr rr;
    disp_shared shared;            /* QUEUE mode only (inited when bound) */
    serve_token *tokens;           /* QUEUE mode: one per slot */
    int shared_inited, inbox_inited;
    _Atomic Py_ssize_t pending;    /* jobs created and not yet delivered */
    PyMutex lock;                  /* guards the undelivered-jobs list */
    PyObject *head;                /* first undelivered job (see JobData.prev/next) */
    atomic_int entered, exiting, aborting;
    atomic_int loop_dead;          /* 1 once the caller's loop refused call_soon_threadsafe (closed) */
    /* caller-thread state used by the Python side of ThreadedTaskGroup (thrasks/_group.py) */
    PyObject *parent_task;         /* strong or NULL */
    PyObject *errors;              /* strong: list of exceptions raised by tasks */
    PyObject *base_error;          /* strong or NULL: first non-Exception BaseException */
    PyObject *on_completed_fut;    /* strong or NULL: set to True when pending reaches 0 */
    int parent_cancel_requested;
    /* KIND_GATHER */
    PyObject *outer;               /* strong until finished: the future threaded_gather awaits */
    PyObject *results;             /* strong: list, one slot per coroutine */
    int return_exceptions;
    int gather_cancel_requested;
    int outer_settled;             /* caller thread only: outer has its result */
    PyObject *weakreflist;
} GroupObject;

static inline JobData *job_data(thrasks_state *st, PyObject *job)
{
    return (JobData *)PyObject_GetTypeData(job, st->future_type);
}

/* Worker side: the task of `job` finished (or could not start). Takes over `outcome` (a new
 * reference, or NULL for a cancellation) and the caller's reference to `job`. Never fails: if the
 * caller's loop is gone, the outcome is dropped. Called with a thread state attached. */
void bridge_complete(thrasks_state *st, PyObject *job, int kind, PyObject *outcome);

/* Someone's MSG_START could not reach a live worker: report the job cancelled without running it
 * (its coroutine is closed, so no "never awaited" warning). Takes over the reference to `job`. */
void bridge_orphan_job(thrasks_state *st, PyObject *job);

/* QUEUE mode: a MSG_SERVE could not reach a live worker: cancel every job left in the group's
 * shared queue. Takes over the message's reference to the group. */
void bridge_orphan_serve(thrasks_state *st, GroupObject *group);

/* Caller thread, scheduled by bridge_complete through loop.call_soon_threadsafe: deliver every
 * finished job waiting in the group's completion queue. */
PyObject *bridge_drain(PyObject *module, PyObject *group);

extern PyType_Spec bridge_future_spec;
extern PyType_Spec bridge_group_spec;

/* _core.gather(coros, num_threads, return_exceptions, mode, pool): run a tuple of coroutines on
 * the pool and return the (thrasks) future of the list of their results. */
PyObject *bridge_gather(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
