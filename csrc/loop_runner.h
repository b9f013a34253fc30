/* loop_runner.h - a worker: one OS thread running one asyncio event loop, and the mailbox through
 * which other threads hand it work. Knows jobs (job.h), never groups or gathers.
 *
 * Mailbox: three intrusive stacks (dispatcher.h, section 4) and a stop flag. Posting never
 * allocates, so it never fails:
 *   runner_post_start   a job to run: its coroutine becomes an asyncio.Task on this loop
 *   runner_post_cancel  task.cancel(msg) for a job running here (coalesced while one is queued)
 *   runner_post_serve   QUEUE mode: serve a slot of an owner's shared queue (a serve token)
 *   runner_post_stop    cancel what runs, stop the loop once it has finished, close it
 *   runner_post_relay   a finished job whose future lives on this loop (a task spawned here):
 *                       settle the future here first, then pass the job on to its owner
 * A post that makes a stack non-empty writes the worker's eventfd (a pipe elsewhere), registered
 * with loop.add_reader. The worker's drain reads the fd FIRST and then takes the stacks: the other
 * order could eat a wake-up that belongs to the next batch and leave the worker asleep for good.
 *
 * Death: whatever escapes the loop's run_forever (other than a task's own KeyboardInterrupt or
 * SystemExit, which reach the caller through the task) kills the worker. It stores the cause,
 * then `dead`, then takes its mailbox one last time; a poster pushes, then loads `dead` (a seq_cst
 * fence on each side between the two steps), so at least one of them sees each message and
 * resolves it: every job the worker held - running, in its mailbox, or queued for a slot it served
 * - finishes with a RuntimeError naming the worker thread, chained to the cause. A worker stopped
 * by runner_post_stop resolves late messages the same way, with a cancellation instead.
 *
 * QUEUE balance (runner_serve_token): a worker takes a job from a shared queue while it has none
 * of that owner's jobs in flight; with some in flight, only when no other ACTIVE slot of the
 * queue is less loaded and responsive: its worker looked at the queue in the last SERVE_BUSY_NS,
 * or sleeps `waiting` for a sibling, or was notified less than NOTIFY_GRACE_NS ago and has not
 * looked yet. So tasks that await at once spread over the workers by count, and a worker that is
 * computing or blocked (it stops looking) leaves the queue to the others. A worker that leaves a
 * job to a sibling does not spin: it sets `waiting` and sleeps until the sibling takes a job
 * (which nudges it awake) or, at the latest, until the sibling's time to respond runs out (a
 * call_later timer). Spinning there held the very core the sibling was queued on (measured: the
 * sibling woke 4 ms late and then one worker took 19 of 20 tasks).
 *
 * Ownership: the pool owns its workers; a worker owns its loop; the worker's thread (a
 * threading.Thread whose target is the bound worker._run) holds the worker alive while it runs.
 * Every message owns a reference: a started job, a cancel request (a job reference), a serve
 * token (a reference to its owner).
 */
#ifndef THRASKS_LOOP_RUNNER_H
#define THRASKS_LOOP_RUNNER_H

#include "job.h"
#include "wakefd.h"

#include <time.h>

typedef struct WorkerObject WorkerObject;

/* "Serve slot `slot` of `shared`": lives in its owner (an array of one token per slot), so posting
 * it allocates nothing. A token is on at most one mailbox at a time, through its `queued` flag:
 * claims of the slot alone do not ensure it (a worker whose re-check lost the slot to a producer
 * keeps serving, may park again before that producer's message arrives, and a second producer
 * then claims the slot while the first message is still on its way). */
typedef struct runner_serve_token {
    disp_node node;                /* a worker's serve stack */
    atomic_int queued;             /* 1 from runner_post_serve's push until a drain has read it */
    PyObject *owner;               /* borrowed: the object embedding the token; the poster gave
                                      the message a strong reference, dropped when serving stops */
    disp_shared *shared;           /* borrowed: owned by `owner` */
    size_t slot;
    struct runner_serve_token *siblings; /* the owner's array of n tokens (balance decisions) */
    size_t n_siblings;
    _Atomic long in_flight;        /* jobs this slot's worker took and has not finished */
    _Atomic long long last_look_ns; /* when this slot's worker last looked at the queue */
    _Atomic long long notified_ns; /* when a producer last claimed the slot (route_submit) */
    _Atomic(struct WorkerObject *) worker; /* the worker last notified for the slot (pool keeps it) */
    atomic_int waiting;            /* its worker left a job to a less loaded sibling and sleeps:
                                      nudge it (wake it up) when that changes (loop_runner.c) */
    struct runner_serve_token *serving_next; /* worker thread: the worker's list of served tokens */
} runner_serve_token;

/* Per-worker counters (WorkerPool.stats()): written by the worker thread only (relaxed atomics:
 * readers want a recent value, nothing is published through them). */
typedef struct runner_stats {
    _Atomic unsigned long long started, finished, failed, cancelled;
    _Atomic unsigned long long lingers, linger_hits;  /* lingers begun; those that saw a message */
    _Atomic long long started_ns;  /* when the thread started (monotonic); 0 before */
    clockid_t cpu_clock;           /* the thread's CPU-time clock, written before cpu_clock_ok */
    atomic_int cpu_clock_ok;       /* release: cpu_clock is valid */
} runner_stats;

struct WorkerObject {
    PyObject_HEAD
    thrasks_state *st;             /* borrowed: kept alive by `module` */
    PyObject *module;              /* strong */
    disp_stack starts, cancels, serves, relays;  /* the mailbox (see above) */
    atomic_int stop_requested;
    wakefd wake;                   /* watched by the loop (add_reader): a post wakes the worker */
    PyObject *loop;                /* strong: this worker's event loop */
    PyObject *thread;              /* strong: the threading.Thread running _run */
    PyObject *name;                /* strong: the thread's name */
    PyObject *drain_cb;            /* strong: bound self._drain */
    PyObject *relook_cb;           /* strong: bound self._relook (QUEUE balance timer) */
    PyObject *done_cb;             /* strong: bound self._task_done */
    PyObject *running;             /* strong, worker thread only: dict Task -> job */
    runner_serve_token *serving;   /* worker thread only: tokens served (each holds an owner ref) */
    /* Worker thread only, read by a forked child (runner_forsake): what the drain holds in hand
     * while it runs Python code, so that a fork at that moment loses none of it. */
    disp_node *batch_starts;       /* the started jobs taken and not handled yet */
    disp_node *batch_relays;       /* the relayed jobs taken and not handled yet */
    JobObject *starting;           /* the job start_job is starting (worker side's reference) */
    _Atomic long inbox_len;        /* jobs posted and not yet taken (stats) */
    _Atomic long shared_len;       /* worker thread writes: queued jobs of the slots it serves (stats) */
    int stopping;                  /* worker thread only */
    long long relook_ns;           /* worker thread only: a re-look timer (call_later) is armed for
                                      this time; 0: none */
    long long linger_ns;           /* worker thread only: the linger window (linger.h); 0: not yet */
    int linger_off;                /* WorkerPool(linger=False): never linger. Written by runner_new
                                      before the thread starts (the start publishes it), then
                                      read-only */
    _Atomic long long idle_since;  /* when the worker last began to linger; 0 from when a start or
                                      serve is posted to it, its linger sees a message, a route
                                      claims it, or it dies. A hint for routes
                                      (runner_claim_idle), nothing more */
    long long linger_missed_at;    /* worker thread only: when the last linger that gave up began;
                                      0: the last linger caught its message, or none since */
    atomic_int dead;               /* 1 once the worker no longer takes its mailbox */
    PyObject *death_cause;         /* strong or NULL: written before `dead` (release) */
    const char *death_text;        /* what happened, for the jobs' RuntimeError (with death_cause) */
    atomic_int thread_started;     /* its thread was started (join it on shutdown) */
    runner_stats stats;
    unsigned long fork_generation; /* fork generation the worker's thread was started in */
    size_t index;
};

/* Make worker `index` and its loop (loop_factory(), or asyncio.new_event_loop() if NULL/None);
 * `linger` 0: it never lingers (WorkerPool(linger=False)). The thread is not started yet. New
 * reference, or NULL with an exception set. */
WorkerObject *runner_new(thrasks_state *st, PyObject *module, size_t index, PyObject *loop_factory,
                         int linger, unsigned long fork_generation);
/* Start the worker's thread. 0, or -1 with an exception set (the worker is then dead). */
int runner_start(WorkerObject *w);
/* Join the worker's thread (not if it is the calling thread). 0, or -1 with an exception set. */
int runner_join(WorkerObject *w);

/* Any thread. Take over the reference the message carries (see above). Never fail. */
void runner_post_start(WorkerObject *w, JobObject *job);
void runner_post_cancel(WorkerObject *w, JobObject *job);     /* borrows job (takes a ref if queued) */
void runner_post_serve(WorkerObject *w, runner_serve_token *tok);
/* The worker (or whoever resolves a dead worker's mailbox) has taken tok off a serve stack and
 * read its `next`: another serve message may be posted from now on. */
void runner_serve_token_read(runner_serve_token *tok);
void runner_post_stop(WorkerObject *w);
/* The worker's own thread: cancel the job's task now, as Task.cancel() would (a cancel request
 * made on the worker that runs the job needs no hop through the mailbox). */
void runner_cancel_now(WorkerObject *w, JobObject *job);

/* A finished job whose future lives on this worker's loop: settle it here, then pass it on to
 * its owner (job_relay_arrived). Takes the job reference. */
void runner_post_relay(WorkerObject *w, JobObject *job);

/* Resolve every message in a dead worker's mailbox (any thread): what posters do after they see
 * `dead`, and what the dead worker's own late drains do instead of starting anything. */
void runner_orphan_mailbox(WorkerObject *w);

/* The worker whose thread is calling, or NULL (not a worker thread). */
WorkerObject *runner_current(void);

/* Any thread: since when the worker is idle (it began to linger, loop_runner.c, and has taken no
 * message since), unclaimed; 0 if it is not. A hint only: a post reaches the worker however it
 * waits. */
long long runner_idle_since(WorkerObject *w);
/* Claim an idle worker whose runner_idle_since was `since`: 1 for exactly one caller. */
int runner_claim_idle(WorkerObject *w, long long since);

/* Any thread: tasks the worker runs now (relaxed counters: a recent value). */
long runner_running(WorkerObject *w);

/* Any thread: the worker died or was stopped (it takes no more messages). */
int runner_is_dead(WorkerObject *w);

/* A forked child: the worker's thread does not exist here. Resolve every job it held with a
 * RuntimeError chained to `cause` (the child's only thread; it owns the worker's state now). */
void runner_forsake(WorkerObject *w, PyObject *cause);

/* The error a job of a dead worker finishes with: a new RuntimeError naming the worker, chained
 * to `cause` (NULL: the worker was stopped, the job is cancelled: NULL is returned). Any thread. */
PyObject *runner_death_error(WorkerObject *w, PyObject *cause);

/* Stop serving `tok` for good (the worker stopped or died): park its slot, resolve the jobs left
 * in its queue (cancelled, or with the death error), drop the token's owner reference. */
void runner_orphan_serve(WorkerObject *w, runner_serve_token *tok, PyObject *cause);

/* The worker will never take its mailbox again (its thread is ending, or never started): store
 * `cause` (NULL: stopped) and resolve what the mailbox holds, and anything posted later. Its own
 * thread, or a thread that owns a worker nobody else runs. */
void runner_die(WorkerObject *w, PyObject *cause);

/* The methods the worker's loop and thread call (worker.c binds them). */
extern PyMethodDef runner_drain_def, runner_relook_def, runner_task_done_def, runner_run_def;

static inline long long runner_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Diagnostics: a dict of the worker's counters and queue depths (WorkerPool.stats()). */
PyObject *runner_stats_dict(WorkerObject *w);

extern PyType_Spec runner_worker_spec;

#endif
