/* job.h - a task's life: the job object, its state machine, and the hand-off of finished jobs back
 * to the loop that waits for them (the sink). The functions below are the ONLY code that moves a
 * job from one state to the next.
 *
 * A job is one coroutine handed to the workers by an owner (a task group, or a gather). It is a
 * small GC object of its own (thrasks._core.Job), not the future the user sees: a task group's
 * job points at its Future (future_bridge.c), a gather's jobs have no future at all.
 *
 * State machine (JobObject.state):
 *
 *                job_request_cancel (any thread)
 *     PENDING ─────────────────────────────────────> CANCEL_PENDING
 *        │                                                │
 *        │ job_started (worker): RUNNING                  │ job_started (worker): RUNNING, and it
 *        v                                                v   returns JOB_START_CANCEL[_SOON]: the
 *     RUNNING <───────────────────────────────────────────┘   worker cancels the new task itself
 *        │   job_request_cancel on RUNNING returns JOB_CANCEL_POST: the caller must post a cancel
 *        │   request to job_worker(job) (runner_cancel_job); the state does not change
 *        v
 *      DONE    job_finished (from any state: the task's done callback; or a job that never
 *              started: its worker stopped or died, or Task() failed). DONE is final: a second
 *              job_finished (a dying worker and a late done callback) drops its outcome.
 *
 * Exactly one party turns a cancel request into task.cancel(): whoever wins the PENDING CAS.
 *
 * Hand-offs and what publishes them:
 *   - coro, context, name, owner: written by the creator before the job is posted; the post
 *     (a release push on a mailbox or the shared queue) hands them to the worker.
 *   - task, worker: written by the worker in job_started, published by its release CAS/store to
 *     RUNNING; a canceller reads them after an acquire load of RUNNING.
 *   - cancel_msg: the first message wins a release CAS; readers acquire it.
 *   - outcome, outcome_kind: written by the winner of job_finished's exchange to DONE, published
 *     to the sink's consumer by the release push on the sink's finished stack.
 *
 * The sink (job_sink) is embedded in the owner. It keeps the owner's undelivered jobs (a list
 * guarded by the owner's critical section, and a pending count) and the stack of finished ones.
 * The first job pushed on an empty stack wakes the owner's loop ONCE for the batch: it posts the
 * sink on the loop's hub (loop_hub.h: a write() on an eventfd, no Python on the worker), or, for
 * a loop without a hub, schedules `loop.call_soon_threadsafe(wake_cb)`. Either way the loop then
 * runs job_sink_drain, which hands each finished job to the owner's deliver hook on the owner's
 * loop thread.
 */
#ifndef THRASKS_JOB_H
#define THRASKS_JOB_H

#include "thrasks.h"
#include "dispatcher.h"
#include "loop_hub.h"

enum { JOB_PENDING = 0, JOB_CANCEL_PENDING = 1, JOB_RUNNING = 2, JOB_DONE = 3 };
enum { OUTCOME_RESULT = 0, OUTCOME_EXCEPTION = 1, OUTCOME_CANCELLED = 2 };

typedef struct JobObject JobObject;
typedef struct job_sink job_sink;

/* What an owner does with its finished jobs; called on the owner's loop thread by job_sink_drain. */
typedef struct job_sink_ops {
    /* Deliver one finished job (its outcome is job->outcome / job->outcome_kind). 0 when done;
     * -1 with an exception set: KeyboardInterrupt and SystemExit propagate out of the drain (the
     * remaining jobs are delivered by a drain scheduled again), any other error makes the drain
     * retry this job later (the hook must be safe to call again for the same job). */
    int (*deliver)(PyObject *owner, JobObject *job);
    /* Optional, for jobs with a relay worker (a task spawned from a worker's loop, whose future
     * lives there): relay(job) posts the finished job to job->relay_worker (any thread; never
     * fails), and settle(owner, job) puts its outcome into its future on that worker's thread
     * (0, or -1 with an exception set, reported). */
    void (*relay)(JobObject *job);
    int (*settle)(PyObject *owner, JobObject *job);
} job_sink_ops;

struct JobObject {
    PyObject_HEAD
    thrasks_state *st;             /* borrowed: the job's type keeps the module alive */
    job_sink *sink;                /* borrowed: embedded in `owner` */
    PyObject *owner;               /* strong until delivered (keeps `sink` alive) */
    PyObject *coro;                /* strong until the worker takes it (job_take_coro) */
    PyObject *context;             /* strong until delivered: the contextvars.Context it runs in */
    PyObject *name;                /* strong or NULL: name of the worker-side Task */
    PyObject *future;              /* strong or NULL until delivered: the Future the user sees */
    PyObject *relay_worker;        /* strong or NULL: the worker whose loop `future` lives on; a
                                      finished job goes there first (job_relay_arrived) */
    PyObject *task;                /* worker thread only: the worker-side Task while it runs */
    PyObject *worker;              /* strong or NULL: the worker running it (see job_started) */
    PyObject *outcome;             /* strong or NULL: result or exception (see job_finished) */
    _Atomic(PyObject *) cancel_msg; /* strong or NULL: the first message given to a cancel request */
    _Atomic int state;             /* JOB_* above */
    atomic_int abort_claimed;      /* its owner's abort has requested its cancellation (once) */
    atomic_int cancel_deferred;    /* the cancel waits for the task's first step (a group aborting
                                      after a sibling failed: like asyncio, created tasks start) */
    int outcome_kind;              /* OUTCOME_*, with outcome */
    int delivery_attempts;         /* owner's loop thread: failed deliveries so far */
    int delivery_progress;         /* owner's loop thread: steps of the deliver hook already done */
    int relay_attempts;            /* relay worker's thread: failed settles of its future so far */
    Py_ssize_t index;              /* the owner's slot for it (gather: position in the results) */
    JobObject *prev, *next;        /* the sink's undelivered list: owner's critical section */
    disp_node done_node;           /* on the sink's finished stack (job.c) */
    /* Owned by the loop runner (loop_runner.c): links of a worker's mailbox. */
    disp_node start_node;          /* on a worker's start stack */
    disp_node cancel_node;         /* on a worker's cancel stack */
    disp_node relay_node;          /* on its relay worker's relay stack */
    atomic_int cancel_queued;      /* 1 while cancel_node is on a stack */
    void *runner_token;            /* worker thread: the QUEUE serve token it was taken from */
};

struct job_sink {
    PyObject *owner;               /* borrowed: the sink is embedded in it */
    const job_sink_ops *ops;
    thrasks_state *st;
    PyObject *loop;                /* strong: the owner's loop, where jobs are delivered */
    PyObject *wake_cb;             /* strong: the owner's bound `_deliver` (a reference cycle the
                                      GC sees: the owner traverses the sink) */
    PyObject *hub;                 /* strong or NULL: the loop's hub (loop_hub.h); NULL: the loop
                                      is woken with call_soon_threadsafe(wake_cb) */
    hub_node hub_node;             /* posted on the hub when `finished` becomes non-empty */
    disp_stack finished;           /* finished jobs; each node owns one job reference */
    atomic_int loop_dead;          /* the owner's loop refused call_soon_threadsafe (closed) */
    _Atomic Py_ssize_t pending;    /* registered and not yet delivered */
    _Atomic Py_ssize_t unfinished; /* wake_when_all mode only: registered and not yet on
                                      `finished`, +1 while the owner still submits */
    int wake_when_all;             /* set before any submission: wake the loop only for the last
                                      job or an unsuccessful one (job_sink_wake_when_all) */
    JobObject *undelivered;        /* list head (owner's critical section); the list owns a ref each */
    JobObject *retry;              /* owner's loop thread: jobs whose delivery must be retried */
    int bound;
};

/* ---- the job ---- */

/* Make a job for `coro` (strong refs to coro, context, name, future are taken). context NULL or
 * None: a copy of the current context. Not yet registered or posted. NULL with an exception set. */
JobObject *job_new(thrasks_state *st, PyObject *coro, PyObject *context, PyObject *name,
                   PyObject *future, Py_ssize_t index);

/* Worker thread: take the coroutine over (a new reference), or NULL if already taken. */
PyObject *job_take_coro(JobObject *job);

enum { JOB_START_RUN = 0, JOB_START_CANCEL = 1, JOB_START_CANCEL_SOON = 2 };
/* Worker thread, right after creating the job's Task: record task and worker (strong refs taken)
 * and move to RUNNING. Returns JOB_START_RUN, or JOB_START_CANCEL / _SOON if a cancel request came
 * first: the worker must cancel the task now / after its first step, with job_cancel_msg(job). */
int job_started(JobObject *job, PyObject *task, PyObject *worker);

enum { JOB_CANCEL_DONE = 0, JOB_CANCEL_RECORDED = 1, JOB_CANCEL_POST = 2 };
/* Any thread: request cancellation with `msg` (NULL or None: none; the first message is kept).
 * defer: cancel after the task's first step rather than before it. Returns JOB_CANCEL_DONE if
 * the job is already done (nothing to cancel), JOB_CANCEL_RECORDED if the worker will see the
 * request when it starts the job, JOB_CANCEL_POST when the job is RUNNING: the caller then posts
 * runner_post_cancel(job_worker(job), job). Never fails. */
int job_request_cancel(JobObject *job, PyObject *msg, int defer);

/* Any thread: 1 the first time it is called for this job, then 0. An owner that aborts (cancels
 * every undelivered job) claims each job first, so two aborts - say, one on a worker when a
 * spawned child fails and one on the owner's loop - cancel each task once, as asyncio does. */
int job_claim_abort(JobObject *job);

/* Worker thread, before starting the job: 1 if a cancel request came first and is not deferred
 * (the coroutine must never run: start it lazily and cancel it before its first step). */
int job_wants_lazy_start(JobObject *job);

/* Any thread: the job's state now (acquire; see the state machine). */
int job_state(JobObject *job);
/* After an acquire of RUNNING (job_request_cancel returned JOB_CANCEL_POST): its worker (borrowed). */
PyObject *job_worker(JobObject *job);
/* The first cancel message, or NULL (borrowed; acquire). */
PyObject *job_cancel_msg(JobObject *job);

/* The job is over: `kind` with `outcome` (a new reference, taken over; NULL for a cancellation).
 * Any thread with an attached thread state; the worker's for a task it ran. Moves to DONE and
 * pushes the job on its sink (consuming the reference the worker side held). If the job was
 * already DONE, drops `outcome` and the reference. Never fails. */
void job_finished(JobObject *job, int kind, PyObject *outcome);

/* A finished job reached its relay worker (its thread; settle=1), or could not (a poster
 * resolving a dead worker's mailbox; settle=0): settle its future through the sink's settle hook,
 * then hand it to its sink like job_finished. Takes the relay's job reference. */
void job_relay_arrived(JobObject *job, int settle);

/* A job that will never run to its end (its worker stopped or died, or it could not be started):
 * close its coroutine if it never started (no "never awaited" warning) and finish it with `error`
 * (a new reference, taken over), or as cancelled if `error` is NULL. Takes the worker side's
 * reference. */
void job_abandon(JobObject *job, PyObject *error);

/* Close a coroutine that will never run (keeps any pending exception). */
void job_close_coro(thrasks_state *st, PyObject *coro);

/* ---- the sink ---- */

/* Owner's creation: the sink starts unbound. No allocation. */
void job_sink_init(job_sink *s, PyObject *owner, const job_sink_ops *ops, thrasks_state *st);
/* Owner's loop thread, once: deliver on `loop` through `wake_cb` (strong refs taken). */
void job_sink_bind(job_sink *s, PyObject *loop, PyObject *wake_cb);

/* Owner's loop thread, after bind and before the first registration: the owner looks at nothing
 * but the last outcome or an unsuccessful one (a gather), so a successful job that is not the last
 * does not wake the loop; it is delivered with the batch the last one wakes. Only with a hub
 * (hub_post is idempotent); else every batch wakes as usual. The owner holds one unit of
 * `unfinished` until job_sink_all_submitted, so a job finishing during the submissions is never
 * taken for the last one. */
void job_sink_wake_when_all(job_sink *s);
/* Owner's loop thread: every job is submitted (or the rest never will be): drop that unit. */
void job_sink_all_submitted(job_sink *s);

/* Register a new job: the list and the job take references to each other (job->owner), pending
 * goes up. Any thread. Never fails. */
void job_sink_register(job_sink *s, JobObject *job);
/* Undo job_sink_register for a job that was never posted. */
void job_sink_unregister(job_sink *s, JobObject *job);

/* Owner's loop thread: deliver every finished job (the owner's `_deliver` method). New None, or
 * NULL with KeyboardInterrupt/SystemExit (or an error rescheduling the drain) set. */
PyObject *job_sink_drain(job_sink *s);

/* Every undelivered job, as a new list (NULL on error). Any thread. */
PyObject *job_sink_snapshot(job_sink *s);

/* Jobs registered and not yet delivered (relaxed: exact on the owner's loop thread). */
Py_ssize_t job_sink_pending(job_sink *s);

int job_sink_traverse(job_sink *s, visitproc visit, void *arg);
void job_sink_clear(job_sink *s);    /* drops list refs, loop, wake_cb (GC clear or dealloc) */
void job_sink_dealloc(job_sink *s);  /* job_sink_clear, and drops finished jobs never delivered */

extern PyType_Spec job_spec;

#endif
