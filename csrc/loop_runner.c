/* loop_runner.c - what a worker thread does: its mailbox, the tasks of its jobs, QUEUE serving,
 * and its end (stop, death, a forked child). Protocols and ownership are in loop_runner.h; the
 * Worker object itself (creation, its loop, its thread, stats) is in worker.c. Touches: workers,
 * jobs (through job.h's functions), serve tokens and the shared queues they point at. Never a
 * group or a gather. */
#define _GNU_SOURCE
#include "loop_runner.h"
#include "linger.h"

#include <pthread.h>
#include <sched.h>

/* QUEUE balance (loop_runner.h): a serving worker that has not looked at its queue for this long
 * is busy; a freshly notified one gets NOTIFY_GRACE_NS to look for the first time. Both are far
 * above a wake-up (~0.1 ms) and above the scheduling stalls of a shared 2-core machine (~1-4 ms),
 * so a sibling that is merely slow to get a core is not mistaken for a busy one. */
#define SERVE_BUSY_NS (3LL * 1000 * 1000)
#define NOTIFY_GRACE_NS (10LL * 1000 * 1000)

/* The worker running on this thread (set by worker_run): per-thread state, like CPython's own
 * thread-local current thread state, so create_task can tell that a task spawns a sibling. */
static _Thread_local WorkerObject *current_worker;

WorkerObject *runner_current(void)
{
    return current_worker;
}


/* ------------------------------------------------------------------------------------------------
 * running jobs (worker thread)
 * ---------------------------------------------------------------------------------------------- */

/* `task.cancel(msg)`; errors are reported, not raised (we are in a loop callback). */
static void cancel_task(WorkerObject *w, PyObject *task, PyObject *msg)
{
    PyObject *r = msg ? PyObject_CallMethodOneArg(task, w->st->s_cancel, msg)
                      : PyObject_CallMethodNoArgs(task, w->st->s_cancel);
    if (r == NULL) {
        PyErr_WriteUnraisable(task);
    }
    Py_XDECREF(r);
}

void runner_cancel_now(WorkerObject *w, JobObject *job)
{
    if (job->task != NULL) { /* NULL once done: a worker-thread-only field, and this is the thread */
        cancel_task(w, job->task, job_cancel_msg(job));
    }
}

/* `task.cancel(msg)` from the next loop iteration, after the task's first step has run. */
static void cancel_task_soon(WorkerObject *w, PyObject *task, PyObject *msg)
{
    PyObject *cancel = FAULT_PY() ? NULL : PyObject_GetAttr(task, w->st->s_cancel);
    PyObject *args[3] = {w->loop, cancel, msg};
    PyObject *r = cancel ? PyObject_VectorcallMethod(w->st->s_call_soon, args,
                                                     (msg ? 3 : 2) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL)
                         : NULL;
    if (r == NULL) {
        PyErr_Clear();
        cancel_task(w, task, msg); /* at once, then: the cancellation itself must not be lost */
    }
    Py_XDECREF(r);
    Py_XDECREF(cancel);
}

/* The outcome of a done task: its kind, with a new reference to the result or exception (NULL
 * for a cancellation) in *outcome. One call in the common case: result() returns the value, or
 * raises the task's exception (which also marks it retrieved: the owner reports it). */
static int task_outcome(thrasks_state *st, PyObject *task, PyObject **outcome)
{
    *outcome = PyObject_CallMethodNoArgs(task, st->s_result);
    if (*outcome != NULL) {
        return OUTCOME_RESULT;
    }
    PyObject *exc = PyErr_GetRaisedException();
    if (PyErr_GivenExceptionMatches(exc, st->cancelled_error)) {
        PyObject *r = PyObject_CallMethodNoArgs(task, st->s_cancelled);
        int cancelled = r == Py_True;
        Py_XDECREF(r);
        PyErr_Clear(); /* on error keep the CancelledError as the exception: the outcome is known */
        if (cancelled) {
            Py_DECREF(exc);
            *outcome = NULL;
            return OUTCOME_CANCELLED;
        }
    }
    *outcome = exc;
    return OUTCOME_EXCEPTION;
}

static void count_outcome(WorkerObject *w, int kind)
{
    /* relaxed: statistics */
    atomic_fetch_add_explicit(kind == OUTCOME_RESULT      ? &w->stats.finished
                              : kind == OUTCOME_CANCELLED ? &w->stats.cancelled
                                                          : &w->stats.failed,
                              1, memory_order_relaxed);
}

/* The job's Task on this loop. Eagerly started (asyncio's eager_start: its first step runs now,
 * inside the drain, as asyncio.eager_task_factory does), unless a cancel request came before
 * the start and is not deferred: that coroutine must never run, so the task is created lazily
 * and cancelled before its first step. Built with tp_new + tp_init so that the task object
 * survives an interrupt raised in its first step (KeyboardInterrupt / SystemExit come out of
 * the constructor). New reference, or NULL with an exception set and *task_out the task if
 * one exists (new reference) or NULL. */
static PyObject *new_task(WorkerObject *w, JobObject *job, PyObject *coro, PyObject **task_out)
{
    thrasks_state *st = w->st;
    PyTypeObject *tp = (PyTypeObject *)st->task_type;
    *task_out = NULL;
    int eager = !job_wants_lazy_start(job);
    PyObject *args = FAULT_PY() ? NULL : PyTuple_Pack(1, coro);
    PyObject *kwargs = args ? PyDict_New() : NULL;
    if (kwargs == NULL || PyDict_SetItem(kwargs, st->s_loop, w->loop) < 0 ||
        (job->name && PyDict_SetItem(kwargs, st->s_name, job->name) < 0) ||
        PyDict_SetItem(kwargs, st->s_context, job->context) < 0 ||
        (eager && PyDict_SetItem(kwargs, st->s_eager_start, Py_True) < 0)) {
        Py_XDECREF(args);
        Py_XDECREF(kwargs);
        return NULL;
    }
    PyObject *task = tp->tp_new(tp, st->empty_tuple, NULL);
    int rc = task ? tp->tp_init(task, args, kwargs) : -1;
    Py_DECREF(args);
    Py_DECREF(kwargs);
    if (rc < 0) {
        *task_out = task;
        return NULL;
    }
    return task;
}

/* Start the job's coroutine as a Task on this loop. Takes the worker side's job reference.
 * `tok`: the QUEUE serve token it came from, or NULL. */
static void start_job(WorkerObject *w, JobObject *job, runner_serve_token *tok)
{
    thrasks_state *st = w->st;
    if (w->stopping) {
        job_abandon(job, NULL);
        return;
    }
    PyObject *coro = job_take_coro(job);
    if (coro == NULL) { /* cannot happen: a job is started once */
        job_finished(job, OUTCOME_CANCELLED, NULL);
        return;
    }
    /* relaxed: statistics (loop_runner.h) */
    atomic_fetch_add_explicit(&w->stats.started, 1, memory_order_relaxed);
    PyObject *half = NULL;
    w->starting = job; /* its first step runs Python code: a fork now finds the job here */
    PyObject *task = new_task(w, job, coro, &half);
    if (task == NULL) {
        PyObject *exc = PyErr_GetRaisedException();
        PyObject *done = half ? PyObject_CallMethodNoArgs(half, st->s_done) : NULL;
        if (done == Py_True) {
            /* An interrupt out of its first step: asyncio has set it on the task, which owns it;
             * mark it retrieved (the owner reports it) and make it the job's outcome. */
            PyObject *r = PyObject_CallMethod(half, "exception", NULL);
            Py_XDECREF(r);
        }
        else {
            job_close_coro(st, coro); /* it never ran: no "never awaited" warning */
        }
        PyErr_Clear();
        Py_XDECREF(done);
        Py_XDECREF(half);
        Py_DECREF(coro);
        count_outcome(w, OUTCOME_EXCEPTION);
        w->starting = NULL; /* handed over: every path below clears it before it hands the job on */
        job_finished(job, OUTCOME_EXCEPTION, exc);
        return;
    }
    Py_DECREF(coro);
    PyObject *done = PyObject_CallMethodNoArgs(task, st->s_done);
    if (done == Py_True) {
        /* It finished in its first step: report it now, no done callback, no extra iteration. */
        Py_DECREF(done);
        PyObject *outcome;
        int kind = task_outcome(st, task, &outcome);
        Py_DECREF(task);
        count_outcome(w, kind);
        w->starting = NULL;
        job_finished(job, kind, outcome);
        return;
    }
    Py_XDECREF(done);
    PyErr_Clear();
    /* The running dict takes the worker side's job reference over until the task is done. */
    w->starting = NULL;
    if (FAULT_PY() || PyDict_SetItem(w->running, task, (PyObject *)job) < 0) {
        goto fail;
    }
    PyObject *cb_args[4] = {NULL, task, w->done_cb, job->context};
    PyObject *r = FAULT_PY() ? NULL
                             : PyObject_VectorcallMethod(st->s_add_done_callback, cb_args + 1,
                                                         2 | PY_VECTORCALL_ARGUMENTS_OFFSET, st->kw_context);
    if (r == NULL) {
        PyObject *exc = PyErr_GetRaisedException();
        (void)PyDict_DelItem(w->running, task);
        PyErr_Clear();
        PyErr_SetRaisedException(exc);
        goto fail;
    }
    Py_DECREF(r);
    Py_DECREF(job); /* the dict holds it now */
    if (tok != NULL) {
        job->runner_token = tok;
        /* relaxed: a load figure for balance decisions; no data is published through it */
        atomic_fetch_add_explicit(&tok->in_flight, 1, memory_order_relaxed);
    }
    switch (job_started(job, task, (PyObject *)w)) {
    case JOB_START_CANCEL:
        cancel_task(w, task, job_cancel_msg(job));
        break;
    case JOB_START_CANCEL_SOON:
        cancel_task_soon(w, task, job_cancel_msg(job));
        break;
    default:
        break;
    }
    Py_DECREF(task);
    return;
fail:
    /* The task exists but cannot be tracked: cancel it so it does not run unobserved. */
    {
        PyObject *exc = PyErr_GetRaisedException();
        cancel_task(w, task, NULL);
        Py_DECREF(task);
        count_outcome(w, OUTCOME_EXCEPTION);
        job_finished(job, OUTCOME_EXCEPTION, exc);
    }
}

static void stop_loop(WorkerObject *w)
{
    PyObject *r = PyObject_CallMethodNoArgs(w->loop, w->st->s_stop);
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)w);
    }
    Py_XDECREF(r);
}

/* Done callback of every task this worker runs. */
static PyObject *worker_task_done(PyObject *op, PyObject *task)
{
    WorkerObject *w = (WorkerObject *)op;
    PyObject *item = NULL;
    int found = PyDict_Pop(w->running, task, &item);
    if (found < 0) {
        return NULL;
    }
    if (found == 0) {
        Py_RETURN_NONE; /* not tracked any more: its job was resolved when the worker died */
    }
    JobObject *job = (JobObject *)item;
    PyObject *outcome;
    int kind = task_outcome(w->st, task, &outcome);
    runner_serve_token *tok = job->runner_token;
    if (tok != NULL) {
        job->runner_token = NULL;
        atomic_fetch_sub_explicit(&tok->in_flight, 1, memory_order_relaxed); /* see start_job */
    }
    count_outcome(w, kind);
    job_finished(job, kind, outcome);
    if (tok != NULL) {
        wakefd_signal(&w->wake); /* a slot of ours got room: look at the queue again */
    }
    if (w->stopping && PyDict_GET_SIZE(w->running) == 0) {
        stop_loop(w);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------------
 * QUEUE mode: serving shared queues (worker thread)
 * ---------------------------------------------------------------------------------------------- */

static void start_serving(WorkerObject *w, runner_serve_token *tok)
{
    if (w->stopping) {
        runner_orphan_serve(w, tok, NULL);
        return;
    }
    for (runner_serve_token *t = w->serving; t != NULL; t = t->serving_next) {
        if (t == tok) {
            Py_DECREF(tok->owner); /* already serving it: the notification was spurious */
            return;
        }
    }
    tok->serving_next = w->serving;
    w->serving = tok; /* keeps the message's owner reference */
}

/* Wake the worker of sibling slot `s` if it sleeps waiting for a sibling to take a job. */
static void nudge(runner_serve_token *s)
{
    /* relaxed: `waiting` is a hint that only decides whether to write an eventfd. The woken
     * worker's relaxed loads of in_flight may still be stale (no happens-before with us); then it
     * just defers again until its timer. The exchange makes one nudger per wait write the fd. */
    if (atomic_load_explicit(&s->waiting, memory_order_relaxed) &&
        atomic_exchange_explicit(&s->waiting, 0, memory_order_relaxed)) {
        /* acquire: pairs with the release store in route_submit; the pool keeps the worker (and
         * its fd) alive while the owner we serve holds the pool (pool.c, retired workers) */
        WorkerObject *other = atomic_load_explicit(&s->worker, memory_order_acquire);
        if (other != NULL) {
            wakefd_signal(&other->wake);
        }
    }
}

/* May this worker take another job from tok's queue now (balance rule in loop_runner.h)? 1 yes;
 * 0 no, leaving it to a less loaded sibling that is responsive, with *recheck lowered to the time
 * by which that sibling's chance to respond runs out (0: not set yet). */
static int may_take(runner_serve_token *tok, long long now, long long *recheck)
{
    /* relaxed loads here: load figures for a heuristic; the queue itself publishes the jobs */
    long mine = atomic_load_explicit(&tok->in_flight, memory_order_relaxed);
    if (mine == 0) {
        return 1;
    }
    int defer = 0;
    for (size_t i = 0; i < tok->n_siblings; i++) {
        runner_serve_token *s = &tok->siblings[i];
        if (s == tok || atomic_load_explicit(&s->in_flight, memory_order_relaxed) >= mine ||
            disp_shared_slot_state(tok->shared, s->slot) != DISP_SLOT_ACTIVE) {
            continue;
        }
        long long look = atomic_load_explicit(&s->last_look_ns, memory_order_relaxed);
        long long notified = atomic_load_explicit(&s->notified_ns, memory_order_relaxed);
        long long until;
        if (now - look < SERVE_BUSY_NS) {
            until = look + SERVE_BUSY_NS; /* it keeps looking: it will take the job */
        }
        else if (notified > look && now - notified < NOTIFY_GRACE_NS) {
            until = notified + NOTIFY_GRACE_NS; /* notified and waking up */
        }
        else if (atomic_load_explicit(&s->waiting, memory_order_relaxed)) {
            nudge(s); /* asleep, waiting on stale figures: wake it, it will look */
            until = now + SERVE_BUSY_NS;
        }
        else {
            continue; /* busy: computing or blocked */
        }
        defer = 1;
        if (*recheck == 0 || until < *recheck) {
            *recheck = until;
        }
    }
    return !defer;
}

/* Look at the queues again at `at` at the latest (a call_later timer), unless a timer that fires
 * no later is armed. Without a timer (no memory) look again on the next iteration instead. */
static void arm_relook(WorkerObject *w, long long at)
{
    if (w->relook_ns != 0 && w->relook_ns <= at) {
        return;
    }
    long long now = runner_now_ns(); /* not the round's: its first steps may have taken a while */
    PyObject *delay = FAULT_PY() ? NULL : PyFloat_FromDouble((double)(at > now ? at - now : 0) / 1e9);
    PyObject *args[3] = {w->loop, delay, w->relook_cb};
    PyObject *h = delay ? PyObject_VectorcallMethod(w->st->s_call_later, args,
                                                   3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL)
                        : NULL;
    Py_XDECREF(delay);
    if (h == NULL) {
        PyErr_Clear();
        wakefd_signal(&w->wake);
        return;
    }
    Py_DECREF(h);
    w->relook_ns = at;
}

/* One round: take at most one job from each queue served, if the balance rule allows. 1 if it
 * took a job or stopped serving a queue (work was done: the worker may linger after it). */
static int serve_round(WorkerObject *w)
{
    if (w->serving == NULL) {
        return 0;
    }
    long long now = runner_now_ns();
    long long recheck = 0;
    int took = 0, parked = 0;
    long queued = 0;
    runner_serve_token **link = &w->serving;
    while (*link != NULL) {
        runner_serve_token *tok = *link;
        atomic_store_explicit(&tok->last_look_ns, now, memory_order_relaxed); /* see may_take */
        /* relaxed + seq_cst fence: Dekker with a sibling that takes a job (its in_flight increment,
         * a fence, its load of our flag in nudge): it sees `waiting`, or we see its new load. */
        atomic_store_explicit(&tok->waiting, 1, memory_order_relaxed);
        THRASKS_FENCE_SEQ_CST();
        void *item = NULL;
        if (!mpmc_empty_approx(&tok->shared->q) && !may_take(tok, now, &recheck)) {
            link = &tok->serving_next; /* keep serving; `waiting` stays set */
            queued += (long)mpmc_size_approx(&tok->shared->q);
            continue;
        }
        atomic_store_explicit(&tok->waiting, 0, memory_order_relaxed); /* relaxed: see above */
        if (disp_shared_pop(tok->shared, tok->slot, &item) == DISP_ITEM) {
            start_job(w, (JobObject *)item, tok);
            took = 1;
            if (!mpmc_empty_approx(&tok->shared->q)) {
                /* seq_cst: the other side of the Dekker above (our in_flight increment, then the
                 * siblings' flags): our load changed, so siblings waiting on it look again */
                THRASKS_FENCE_SEQ_CST();
                for (size_t i = 0; i < tok->n_siblings; i++) {
                    if (&tok->siblings[i] != tok) {
                        nudge(&tok->siblings[i]);
                    }
                }
            }
            queued += (long)mpmc_size_approx(&tok->shared->q);
            link = &tok->serving_next;
        }
        else { /* parked: a producer will notify us again */
            *link = tok->serving_next;
            tok->serving_next = NULL;
            Py_DECREF(tok->owner);
            parked = 1;
        }
    }
    atomic_store_explicit(&w->shared_len, queued, memory_order_relaxed); /* a statistic */
    if (took) {
        /* Look again on the next loop iteration, after what is ready now has run: a worker that
         * is busy computing or blocked therefore takes nothing more meanwhile. */
        wakefd_signal(&w->wake);
    }
    else if (recheck != 0) {
        arm_relook(w, recheck); /* sleep; a sibling's take nudges us earlier */
    }
    return took || parked;
}

static void stop_serving_all(WorkerObject *w, PyObject *cause)
{
    while (w->serving != NULL) {
        runner_serve_token *tok = w->serving;
        w->serving = tok->serving_next;
        tok->serving_next = NULL;
        atomic_store_explicit(&tok->waiting, 0, memory_order_relaxed); /* a hint (see nudge) */
        runner_orphan_serve(w, tok, cause);
    }
}

/* MSG stop: cancel what runs; the loop stops when the last task has finished. */
static void begin_stop(WorkerObject *w)
{
    if (w->stopping) {
        return;
    }
    w->stopping = 1;
    stop_serving_all(w, NULL);
    PyObject *tasks = thrasks_dict_list(w->running, 0);
    if (tasks == NULL) {
        PyErr_WriteUnraisable((PyObject *)w);
    }
    else {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tasks); i++) {
            cancel_task(w, PyList_GET_ITEM(tasks, i), NULL);
        }
        Py_DECREF(tasks);
    }
    if (PyDict_GET_SIZE(w->running) == 0) {
        stop_loop(w);
    }
}

/* Take the mailbox and serve the shared queues once (the fd was consumed before). How much it
 * did: messages taken, plus 1 if a queue served gave a job or was left; 0 for an empty drain. */
static long drain_once(WorkerObject *w)
{
    long messages = 0;
    for (disp_node *n = disp_stack_take_all(&w->serves); n != NULL;) {
        runner_serve_token *tok = disp_container_of(n, runner_serve_token, node);
        n = n->next;
        messages++;
        runner_serve_token_read(tok); /* before serving: a new claim must post it again */
        start_serving(w, tok);
    }
    long taken = 0;
    /* The batch in hand lives in the worker (not on the C stack): a fork while a job's first
     * step runs finds it there (runner_forsake). */
    w->batch_starts = disp_stack_take_all(&w->starts);
    while (w->batch_starts != NULL) {
        JobObject *job = disp_container_of(w->batch_starts, JobObject, start_node);
        w->batch_starts = w->batch_starts->next;
        taken++;
        start_job(w, job, NULL);
    }
    if (taken > 0) {
        atomic_fetch_sub_explicit(&w->inbox_len, taken, memory_order_relaxed); /* a statistic */
    }
    messages += taken;
    for (disp_node *n = disp_stack_take_all(&w->cancels); n != NULL;) {
        JobObject *job = disp_container_of(n, JobObject, cancel_node);
        n = n->next;
        messages++;
        /* release: we are done with the node; pairs with the acq_rel exchange in runner_post_cancel */
        atomic_store_explicit(&job->cancel_queued, 0, memory_order_release);
        if (job->task != NULL) { /* NULL once done: task is a worker-thread-only field */
            cancel_task(w, job->task, job_cancel_msg(job));
        }
        Py_DECREF(job);
    }
    w->batch_relays = disp_stack_take_all(&w->relays); /* in the worker, as batch_starts */
    while (w->batch_relays != NULL) {
        JobObject *job = disp_container_of(w->batch_relays, JobObject, relay_node);
        w->batch_relays = w->batch_relays->next;
        messages++;
        job_relay_arrived(job, 1);
    }
    messages += serve_round(w);
    /* acquire: pairs with the acq_rel exchange in runner_post_stop */
    if (atomic_load_explicit(&w->stop_requested, memory_order_acquire)) {
        begin_stop(w);
    }
    return messages;
}

/* Python's len(getattr(obj, name)), or -1 (no error left set). */
static Py_ssize_t attr_len(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    Py_ssize_t n = v != NULL ? PyObject_Length(v) : -1;
    Py_XDECREF(v);
    if (n < 0) {
        PyErr_Clear();
    }
    return n;
}

/* Is the worker's loop quiet, so that a linger delays nothing on it, and for how long (ns)? Quiet:
 * no callback ready (BaseEventLoop._ready empty), and no file descriptor watched but its own two
 * (the wake-up fd and asyncio's self-pipe): a socket a task left on this loop would otherwise wait
 * for its readiness. The linger ends before the loop's earliest timer (`_scheduled[0].when()`
 * against `loop.time()`), so a timer a task left behind fires on time. 0 when not quiet or
 * unknown (not a selector loop): no linger. */
static long long loop_quiet_ns(WorkerObject *w, long long window)
{
    thrasks_state *st = w->st;
    if (attr_len(w->loop, st->s_ready) != 0) {
        return 0;
    }
    PyObject *selector = PyObject_GetAttr(w->loop, st->s_selector);
    PyObject *map = selector != NULL ? PyObject_CallMethodNoArgs(selector, st->s_get_map) : NULL;
    Py_ssize_t fds = map != NULL ? PyObject_Length(map) : -1;
    Py_XDECREF(map);
    Py_XDECREF(selector);
    if (fds < 0 || fds > 2) {
        PyErr_Clear();
        return 0;
    }
    PyObject *timers = PyObject_GetAttr(w->loop, st->s_scheduled);
    if (timers == NULL || !PyList_Check(timers)) { /* a heap (list) in BaseEventLoop */
        Py_XDECREF(timers);
        PyErr_Clear();
        return 0;
    }
    if (PyList_GET_SIZE(timers) > 0) {
        PyObject *first = Py_NewRef(PyList_GET_ITEM(timers, 0)); /* the heap's earliest */
        PyObject *when = PyObject_CallMethodNoArgs(first, st->s_when);
        PyObject *now = when != NULL ? PyObject_CallMethodNoArgs(w->loop, st->s_time) : NULL;
        double left = now != NULL ? PyFloat_AsDouble(when) - PyFloat_AsDouble(now) : -1.0;
        Py_DECREF(first);
        Py_XDECREF(when);
        Py_XDECREF(now);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            left = -1.0;
        }
        if (left <= 0.0) {
            window = 0; /* due now (or unknown): run it */
        }
        else if (left * 1e9 < (double)window) {
            window = (long long)(left * 1e9);
        }
    }
    Py_DECREF(timers);
    return window;
}

long long runner_idle_since(WorkerObject *w)
{
    return atomic_load_explicit(&w->idle_since, memory_order_relaxed); /* relaxed: a hint */
}

int runner_claim_idle(WorkerObject *w, long long since)
{
    /* relaxed: a hint (the post and its eventfd write carry everything); the CAS makes the claim
     * exclusive, so one route per idle spell is steered here */
    return since != 0 && atomic_compare_exchange_strong_explicit(&w->idle_since, &since, 0,
                                                                 memory_order_relaxed,
                                                                 memory_order_relaxed);
}

/* A message came (the drain began at `arrived`, before the jobs' first steps ran): if the last
 * linger gave up, learn from how long the worker then waited for it (linger.h). The idle time
 * counts from the start of that linger. */
static void linger_learn(WorkerObject *w, long long arrived)
{
    if (w->linger_missed_at != 0) {
        w->linger_ns = linger_window_after_miss(w->linger_ns, arrived - w->linger_missed_at);
        w->linger_missed_at = 0;
    }
}

/* Look at the mailbox for up to the linger window (linger.h), yielding the CPU (and the thread
 * state) meanwhile, if the worker is idle: no task of its own in flight (none waits for I/O or a
 * timer that the wait would delay), no queue served, and a quiet loop (loop_quiet_ns: nothing
 * ready, no other fd watched; the linger ends before its earliest timer). 1 if a message came.
 * Why and what it gains: docs/design.md, "The linger" and "The learning linger". */
static int linger(WorkerObject *w)
{
    if (w->linger_off || w->stopping || w->serving != NULL || PyDict_GET_SIZE(w->running) != 0) {
        return 0;
    }
    if (w->linger_ns == 0) {
        w->linger_ns = LINGER_BASE_NS;
    }
    long long window = loop_quiet_ns(w, w->linger_ns);
    if (window <= 0) {
        return 0;
    }
    int got = 0;
    long long begin = runner_now_ns(), end = begin + window;
    /* relaxed: a hint for routes (runner_claim_idle); the post itself is what wakes us */
    atomic_store_explicit(&w->idle_since, begin, memory_order_relaxed);
    Py_BEGIN_ALLOW_THREADS
    do {
        /* relaxed (empty_approx) and acquire (stop_requested): hints to stop waiting; the drain
         * that follows consumes the fd, then takes the stacks with their own orders */
        got = !disp_stack_empty_approx(&w->starts) || !disp_stack_empty_approx(&w->serves) ||
              !disp_stack_empty_approx(&w->cancels) || !disp_stack_empty_approx(&w->relays) ||
              atomic_load_explicit(&w->stop_requested, memory_order_acquire);
        if (got) {
            break;
        }
        sched_yield(); /* another thread queued on this core runs first */
    } while (runner_now_ns() < end);
    Py_END_ALLOW_THREADS
    /* relaxed: statistics, written by this thread only (runner_stats) */
    atomic_fetch_add_explicit(&w->stats.lingers, 1, memory_order_relaxed);
    if (got) {
        atomic_fetch_add_explicit(&w->stats.linger_hits, 1, memory_order_relaxed);
        /* relaxed: a hint (runner_claim_idle); a message is in, the worker is about to work */
        atomic_store_explicit(&w->idle_since, 0, memory_order_relaxed);
    }
    /* A linger that gave up leaves idle_since set (the worker sleeps, idle) and is a miss to learn
     * from, unless a timer cut it short: then the window was not what ended it. */
    w->linger_missed_at = !got && window == w->linger_ns ? begin : 0;
    return got;
}

/* The reader callback of the wake-up fd: take the mailbox, serve the shared queues; then, if the
 * loop has nothing else to do, linger for the next message. A drain that found nothing (the fd
 * write of a message a linger already took) goes back to sleep at once. */
static PyObject *worker_drain(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    WorkerObject *w = (WorkerObject *)op;
    long messages;
    do {
        /* Consume the fd BEFORE taking the stacks (loop_runner.h). */
        wakefd_consume(&w->wake);
        /* relaxed: this thread wrote `dead`. A dying worker's loop still runs (worker_died lets
         * its tasks finish cancelling) and may call us (its reader, a relook timer): start
         * nothing, and resolve what was posted as the posters would (the stacks hand each
         * message to one taker). */
        if (atomic_load_explicit(&w->dead, memory_order_relaxed)) {
            runner_orphan_mailbox(w);
            Py_RETURN_NONE;
        }
        /* idle_since needs no update here: the posts that bring work (starts, serves) cleared it
         * (mailbox.c, not_idle), and a linger that saw a message cleared it too. */
        long long arrived = runner_now_ns();
        messages = drain_once(w);
        if (messages > 0) {
            linger_learn(w, arrived);
        }
    } while (messages > 0 && linger(w));
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------------
 * the thread
 * ---------------------------------------------------------------------------------------------- */

/* Is `exc` (a KeyboardInterrupt or SystemExit out of run_forever) the outcome of one of our
 * tasks? Then asyncio has set it on the task, and its done callback reports it: not a death. */
static int is_task_outcome(WorkerObject *w, PyObject *exc)
{
    PyObject *tasks = thrasks_dict_list(w->running, 0);
    if (tasks == NULL) {
        PyErr_Clear();
        return 0;
    }
    int found = 0;
    for (Py_ssize_t i = 0; !found && i < PyList_GET_SIZE(tasks); i++) {
        PyObject *task = PyList_GET_ITEM(tasks, i);
        PyObject *done = PyObject_CallMethodNoArgs(task, w->st->s_done);
        if (done == Py_True) {
            /* exception() marks it retrieved; the done callback calls result() anyway */
            PyObject *e = PyObject_CallMethod(task, "exception", NULL);
            found = (e == exc);
            Py_XDECREF(e);
        }
        Py_XDECREF(done);
        PyErr_Clear();
    }
    Py_DECREF(tasks);
    return found;
}

/* The loop died with `cause`: resolve every job (running ones first), then try to let the tasks
 * finish cancelling on the loop, bounded, so their coroutines' finally blocks run if they can. */
static void worker_died(WorkerObject *w, PyObject *cause)
{
    runner_die(w, cause); /* the mailbox: inbox, cancels, serves */
    stop_serving_all(w, cause); /* their queued jobs fail with the cause too (orphan_serve) */
    PyObject *items = thrasks_dict_list(w->running, 1);
    if (items == NULL) {
        PyErr_WriteUnraisable((PyObject *)w);
        return;
    }
    PyDict_Clear(w->running);
    PyObject *tasks = PyList_New(0);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        PyObject *task = PyTuple_GET_ITEM(pair, 0);
        JobObject *job = (JobObject *)Py_NewRef(PyTuple_GET_ITEM(pair, 1)); /* the dict's ref */
        runner_serve_token *tok = job->runner_token;
        if (tok != NULL) {
            job->runner_token = NULL;
            atomic_fetch_sub_explicit(&tok->in_flight, 1, memory_order_relaxed); /* see start_job */
        }
        job_abandon(job, runner_death_error(w, cause));
        if (tasks != NULL && PyList_Append(tasks, task) == 0) {
            cancel_task(w, task, NULL);
        }
    }
    Py_DECREF(items);
    if (tasks != NULL && PyList_GET_SIZE(tasks) > 0) {
        PyObject *asyncio = PyImport_ImportModule("asyncio");
        PyObject *wait = asyncio ? PyObject_CallMethod(asyncio, "wait", "Od", tasks, 1.0) : NULL;
        PyObject *r = wait ? PyObject_CallMethodOneArg(w->loop, w->st->s_run_until_complete, wait) : NULL;
        Py_XDECREF(r);
        Py_XDECREF(wait);
        Py_XDECREF(asyncio);
        PyErr_Clear(); /* best effort: the loop may be unusable */
    }
    Py_XDECREF(tasks);
    PyErr_Clear();
}

void runner_forsake(WorkerObject *w, PyObject *cause)
{
    if (atomic_load_explicit(&w->dead, memory_order_relaxed)) { /* the child's only thread */
        return;
    }
    w->death_text = "does not exist in this process (it belonged to the parent of an os.fork())";
    runner_die(w, cause);
    stop_serving_all(w, cause);
    /* What the drain had in hand when the process forked (loop_runner.h). */
    if (w->starting != NULL) {
        JobObject *job = w->starting;
        w->starting = NULL;
        job_abandon(job, runner_death_error(w, cause)); /* the start's reference */
    }
    while (w->batch_starts != NULL) {
        JobObject *job = disp_container_of(w->batch_starts, JobObject, start_node);
        w->batch_starts = w->batch_starts->next;
        job_abandon(job, runner_death_error(w, cause));
    }
    while (w->batch_relays != NULL) {
        JobObject *job = disp_container_of(w->batch_relays, JobObject, relay_node);
        w->batch_relays = w->batch_relays->next;
        job_relay_arrived(job, 0);
    }
    PyObject *items = thrasks_dict_list(w->running, 1);
    if (items == NULL) {
        PyErr_WriteUnraisable((PyObject *)w);
        return;
    }
    PyDict_Clear(w->running);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        JobObject *job = (JobObject *)Py_NewRef(PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1));
        job->runner_token = NULL;
        job_abandon(job, runner_death_error(w, cause));
    }
    Py_DECREF(items);
}

/* Run `loop.run_until_complete(loop.<name>())`, reporting (not raising) errors. */
static void run_cleanup(WorkerObject *w, PyObject *name)
{
    PyObject *coro = PyObject_CallMethodNoArgs(w->loop, name);
    PyObject *r = coro ? PyObject_CallMethodOneArg(w->loop, w->st->s_run_until_complete, coro) : NULL;
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)w);
    }
    Py_XDECREF(coro);
    Py_XDECREF(r);
}

/* The thread body: threading.Thread(target=worker._run). */
static PyObject *worker_run(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    WorkerObject *w = (WorkerObject *)op;
    thrasks_state *st = w->st;
    if (pthread_getcpuclockid(pthread_self(), &w->stats.cpu_clock) == 0) {
        /* release: publishes cpu_clock to runner_stats_dict's acquire */
        atomic_store_explicit(&w->stats.cpu_clock_ok, 1, memory_order_release);
    }
    atomic_store_explicit(&w->stats.started_ns, runner_now_ns(), memory_order_relaxed); /* a statistic */
    current_worker = w;
    PyObject *cause = NULL;
    PyObject *fd = PyLong_FromLong(w->wake.read_fd);
    PyObject *r = fd ? PyObject_CallMethodObjArgs(w->loop, st->s_add_reader, fd, w->drain_cb, NULL) : NULL;
    if (r == NULL) {
        cause = PyErr_GetRaisedException();
        worker_died(w, cause);
        goto close;
    }
    Py_DECREF(r);
    for (;;) {
        r = PyObject_CallMethodNoArgs(w->loop, st->s_run_forever);
        if (r != NULL) {
            Py_DECREF(r);
            if (w->stopping && PyDict_GET_SIZE(w->running) == 0) {
                break;
            }
            continue; /* someone else stopped the loop (a task called loop.stop()): keep serving */
        }
        PyObject *exc = PyErr_GetRaisedException();
        if ((PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt) ||
             PyErr_GivenExceptionMatches(exc, PyExc_SystemExit)) && is_task_outcome(w, exc)) {
            Py_DECREF(exc); /* a task raised it: its done callback reports it to the owner */
            continue;
        }
        cause = exc; /* anything else that escapes the loop kills the worker */
        worker_died(w, cause);
        break;
    }
    r = PyObject_CallMethodOneArg(w->loop, st->s_remove_reader, fd);
    Py_XDECREF(r);
    PyErr_Clear(); /* the loop may be broken (a dead worker); nothing to report */
    if (cause == NULL) {
        run_cleanup(w, st->s_shutdown_asyncgens);
        run_cleanup(w, st->s_shutdown_default_executor);
        runner_die(w, NULL);
    }
close:
    Py_XDECREF(fd);
    r = PyObject_CallMethodNoArgs(w->loop, st->s_close);
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)w);
    }
    Py_XDECREF(r);
    current_worker = NULL;
    if (cause != NULL) {
        /* Say so once, like an exception escaping any thread, but keep running the process. */
        PyErr_SetRaisedException(cause);
        PyErr_WriteUnraisable((PyObject *)w);
    }
    Py_RETURN_NONE;
}

/* The re-look timer of arm_relook: no timer is armed any more; look as a drain does. */
static PyObject *worker_relook(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ((WorkerObject *)op)->relook_ns = 0;
    return worker_drain(op, NULL);
}

PyMethodDef runner_drain_def = {"_drain", worker_drain, METH_NOARGS, NULL};
PyMethodDef runner_relook_def = {"_relook", worker_relook, METH_NOARGS, NULL};
PyMethodDef runner_task_done_def = {"_task_done", worker_task_done, METH_O, NULL};
PyMethodDef runner_run_def = {"_run", worker_run, METH_NOARGS, NULL};
