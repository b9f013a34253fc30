/* loop_runner.c - a worker thread running an asyncio event loop, and its mailbox.
 * Protocols and ownership are described in loop_runner.h. Touches: workers, jobs (through
 * job.h's functions), serve tokens and the shared queues they point at. Never a group. */
#define _GNU_SOURCE
#include "loop_runner.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

/* QUEUE balance (loop_runner.h): a serving worker that stops looking at its queue for this long is
 * busy; a freshly notified one gets NOTIFY_GRACE_NS to look for the first time. */
#define SERVE_BUSY_NS (500LL * 1000)
#define NOTIFY_GRACE_NS (20LL * 1000 * 1000)

/* The worker running on this thread (set by worker_run): per-thread state, like CPython's own
 * thread-local current thread state, so create_task can tell that a task spawns a sibling. */
static _Thread_local WorkerObject *current_worker;

WorkerObject *runner_current(void)
{
    return current_worker;
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------------------
 * wake-up fd: an eventfd on Linux, a pipe elsewhere. Written by any thread, read by the worker.
 * ---------------------------------------------------------------------------------------------- */

static int wakefd_open(WorkerObject *w)
{
    if (FAULT_PY()) {
        return -1;
    }
#ifdef __linux__
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    w->read_fd = w->write_fd = fd;
#else
    int fds[2];
    if (pipe(fds) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    w->read_fd = fds[0];
    w->write_fd = fds[1];
#endif
    return 0;
}

static void wakefd_close(WorkerObject *w)
{
    if (w->read_fd >= 0) {
        close(w->read_fd);
    }
    if (w->write_fd >= 0 && w->write_fd != w->read_fd) {
        close(w->write_fd);
    }
    w->read_fd = w->write_fd = -1;
}

/* Any thread. A full pipe (EAGAIN) already means "readable", so it is not an error. */
static void wakefd_signal(WorkerObject *w)
{
#ifdef __linux__
    uint64_t one = 1;
    while (write(w->write_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
#else
    char one = 1;
    while (write(w->write_fd, &one, 1) < 0 && errno == EINTR) {
    }
#endif
}

/* Worker thread: consume pending wake-ups (the fd is non-blocking). */
static void wakefd_consume(WorkerObject *w)
{
    char buf[64];
    while (read(w->read_fd, buf, sizeof buf) > 0) {
#ifdef __linux__
        break; /* one read resets an eventfd */
#endif
    }
}

/* ------------------------------------------------------------------------------------------------
 * resolving what no worker will run (a dead or stopped worker)
 * ---------------------------------------------------------------------------------------------- */

/* The error a job of a dead worker finishes with: a new RuntimeError naming the worker, chained
 * to the cause (NULL: stopped normally, the job is cancelled instead). Any thread. */
static PyObject *death_error(WorkerObject *w, PyObject *cause)
{
    if (cause == NULL) {
        return NULL;
    }
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *text = NULL;
    if (FAULT_PY()) {
        text = NULL;
    }
    else if (w->death_text != NULL) {
        text = PyUnicode_FromFormat("the worker thread %R running this task %s", w->name, w->death_text);
    }
    else {
        text = PyUnicode_FromFormat("the worker thread %R running this task died (its event loop stopped "
                                    "with %.200s); the pool replaces it on next use",
                                    w->name, Py_TYPE(cause)->tp_name);
    }
    PyObject *err = text ? PyObject_CallOneArg(PyExc_RuntimeError, text) : NULL;
    Py_XDECREF(text);
    if (err != NULL) {
        PyException_SetCause(err, Py_NewRef(cause));
    }
    else {
        PyErr_Clear();
        err = Py_NewRef(cause); /* no memory even for the error: the cause itself tells */
    }
    PyErr_SetRaisedException(exc);
    return err;
}

/* Stop serving `tok`: park its slot (so the next push notifies someone again), resolve the jobs
 * left in its queue, drop the token's owner reference. Any thread. */
static void orphan_serve(WorkerObject *w, runner_serve_token *tok, PyObject *cause)
{
    disp_shared_park(tok->shared, tok->slot);
    void *item;
    while ((item = mpmc_pop(&tok->shared->q)) != NULL) {
        job_abandon((JobObject *)item, death_error(w, cause));
    }
    Py_DECREF(tok->owner);
}

/* Resolve every message in the mailbox (the worker is dead). Any thread. */
static void orphan_mailbox(WorkerObject *w)
{
    PyObject *cause = w->death_cause; /* read after the acquire of `dead` (see post_done) */
    for (disp_node *n = disp_stack_take_all(&w->serves); n != NULL;) {
        runner_serve_token *tok = disp_container_of(n, runner_serve_token, node);
        n = n->next;
        orphan_serve(w, tok, cause);
    }
    for (disp_node *n = disp_stack_take_all(&w->starts); n != NULL;) {
        JobObject *job = disp_container_of(n, JobObject, start_node);
        n = n->next;
        /* relaxed: a statistic */
        atomic_fetch_sub_explicit(&w->inbox_len, 1, memory_order_relaxed);
        job_abandon(job, death_error(w, cause));
    }
    for (disp_node *n = disp_stack_take_all(&w->cancels); n != NULL;) {
        JobObject *job = disp_container_of(n, JobObject, cancel_node);
        n = n->next;
        /* release: our read of the node is over before a new request may push it again */
        atomic_store_explicit(&job->cancel_queued, 0, memory_order_release);
        Py_DECREF(job);
    }
    for (disp_node *n = disp_stack_take_all(&w->relays); n != NULL;) {
        JobObject *job = disp_container_of(n, JobObject, relay_node);
        n = n->next;
        job_relay_arrived(job, 0); /* its future's loop is gone: the owner still gets the job */
    }
}

/* After a push: wake the worker if the stack was empty, then check for death. */
static void post_done(WorkerObject *w, int was_empty)
{
    if (was_empty) {
        wakefd_signal(w);
    }
    /* seq_cst: pairs with the fence in worker_die (Dekker): either we see dead == 1 here, or the
     * worker's last take of the mailbox (after its fence) sees the message we pushed. */
    THRASKS_FENCE_SEQ_CST();
    /* acquire: pairs with the release store of dead, so death_cause is visible */
    if (atomic_load_explicit(&w->dead, memory_order_acquire)) {
        orphan_mailbox(w);
    }
}

void runner_post_start(WorkerObject *w, JobObject *job)
{
    /* relaxed: a statistic */
    atomic_fetch_add_explicit(&w->inbox_len, 1, memory_order_relaxed);
    post_done(w, disp_stack_push(&w->starts, &job->start_node)); /* the stack owns our job ref */
}

void runner_post_cancel(WorkerObject *w, JobObject *job)
{
    /* acq_rel: one request queued at a time; pairs with the release store of 0 by the worker once
     * it has read the node, so the node is free again before we push it. */
    if (atomic_exchange_explicit(&job->cancel_queued, 1, memory_order_acq_rel) != 0) {
        return; /* one is queued: the worker reads the (first) message when it handles it */
    }
    Py_INCREF(job); /* the stack owns one job reference */
    post_done(w, disp_stack_push(&w->cancels, &job->cancel_node));
}

void runner_post_serve(WorkerObject *w, runner_serve_token *tok)
{
    post_done(w, disp_stack_push(&w->serves, &tok->node)); /* the stack owns tok's owner ref */
}

void runner_post_relay(WorkerObject *w, JobObject *job)
{
    post_done(w, disp_stack_push(&w->relays, &job->relay_node)); /* the stack owns our job ref */
}

void runner_post_stop(WorkerObject *w)
{
    /* acq_rel: the first request wakes the worker; pairs with the acquire load in worker_drain */
    if (atomic_exchange_explicit(&w->stop_requested, 1, memory_order_acq_rel) == 0) {
        wakefd_signal(w);
    }
}

int runner_is_dead(WorkerObject *w)
{
    return atomic_load_explicit(&w->dead, memory_order_acquire); /* pairs with worker_die */
}

/* Worker thread, once: stop taking the mailbox and resolve what is in it (and whatever is posted
 * later, by the posters themselves). */
static void worker_die(WorkerObject *w, PyObject *cause)
{
    if (atomic_load_explicit(&w->dead, memory_order_relaxed)) { /* only this thread writes it */
        return;
    }
    w->death_cause = Py_XNewRef(cause);
    /* release: publishes death_cause to posters that acquire dead (post_done) */
    atomic_store_explicit(&w->dead, 1, memory_order_release);
    /* seq_cst: pairs with the fence in post_done (see there). */
    THRASKS_FENCE_SEQ_CST();
    orphan_mailbox(w);
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
    PyObject *args[5] = {NULL, coro, w->loop, job->name ? job->name : Py_None, job->context};
    PyObject *task = FAULT_PY() ? NULL
                                : PyObject_Vectorcall(st->task_type, args + 1,
                                                      1 | PY_VECTORCALL_ARGUMENTS_OFFSET, st->kw_task);
    if (task == NULL) {
        job_close_coro(st, coro); /* it never ran: no "never awaited" warning */
        Py_DECREF(coro);
        job_finished(job, OUTCOME_EXCEPTION, PyErr_GetRaisedException());
        return;
    }
    Py_DECREF(coro);
    /* The running dict takes the worker side's job reference over until the task is done. */
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
    /* relaxed: statistics (loop_runner.h) */
    atomic_fetch_add_explicit(&w->stats.started, 1, memory_order_relaxed);
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
    thrasks_state *st = w->st;
    PyObject *item = NULL;
    int found = PyDict_Pop(w->running, task, &item);
    if (found < 0) {
        return NULL;
    }
    if (found == 0) {
        Py_RETURN_NONE; /* not tracked any more: its job was resolved when the worker died */
    }
    JobObject *job = (JobObject *)item;
    /* One call in the common case: result() returns the value, or raises the task's exception
     * (which also marks it retrieved: the owner reports it) or CancelledError. */
    int kind = OUTCOME_RESULT;
    PyObject *outcome = PyObject_CallMethodNoArgs(task, st->s_result);
    if (outcome == NULL) {
        kind = OUTCOME_EXCEPTION;
        outcome = PyErr_GetRaisedException();
        if (PyErr_GivenExceptionMatches(outcome, st->cancelled_error)) {
            PyObject *r = PyObject_CallMethodNoArgs(task, st->s_cancelled);
            if (r == Py_True) {
                kind = OUTCOME_CANCELLED;
                Py_CLEAR(outcome);
            }
            else if (r == NULL) {
                PyErr_Clear(); /* keep the CancelledError as the exception: the outcome is known */
            }
            Py_XDECREF(r);
        }
    }
    runner_serve_token *tok = job->runner_token;
    if (tok != NULL) {
        job->runner_token = NULL;
        atomic_fetch_sub_explicit(&tok->in_flight, 1, memory_order_relaxed); /* see start_job */
    }
    /* relaxed: statistics */
    atomic_fetch_add_explicit(kind == OUTCOME_RESULT      ? &w->stats.finished
                              : kind == OUTCOME_CANCELLED ? &w->stats.cancelled
                                                          : &w->stats.failed,
                              1, memory_order_relaxed);
    job_finished(job, kind, outcome);
    if (tok != NULL) {
        wakefd_signal(w); /* a slot of ours got room: look at the queue again */
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
        orphan_serve(w, tok, NULL);
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

/* May this worker take another job from tok's queue now? (balance rule in loop_runner.h) */
static int may_take(runner_serve_token *tok, long long now)
{
    /* relaxed loads here: load figures for a heuristic; the queue itself publishes the jobs */
    long mine = atomic_load_explicit(&tok->in_flight, memory_order_relaxed);
    if (mine == 0) {
        return 1;
    }
    for (size_t i = 0; i < tok->n_siblings; i++) {
        runner_serve_token *s = &tok->siblings[i];
        if (s == tok || atomic_load_explicit(&s->in_flight, memory_order_relaxed) >= mine ||
            disp_shared_slot_state(tok->shared, s->slot) != DISP_SLOT_ACTIVE) {
            continue;
        }
        long long look = atomic_load_explicit(&s->last_look_ns, memory_order_relaxed);
        long long notified = atomic_load_explicit(&s->notified_ns, memory_order_relaxed);
        if (now - look < SERVE_BUSY_NS || (notified > look && now - notified < NOTIFY_GRACE_NS)) {
            return 0; /* a less loaded, responsive worker will take it */
        }
    }
    return 1;
}

/* One round: take at most one job from each queue served, if the balance rule allows. */
static void serve_round(WorkerObject *w)
{
    if (w->serving == NULL) {
        return;
    }
    long long now = now_ns();
    long queued = 0;
    runner_serve_token **link = &w->serving;
    while (*link != NULL) {
        runner_serve_token *tok = *link;
        atomic_store_explicit(&tok->last_look_ns, now, memory_order_relaxed); /* see may_take */
        void *item = NULL;
        if (!mpmc_empty_approx(&tok->shared->q) && !may_take(tok, now)) {
            link = &tok->serving_next; /* keep serving; look again next round */
            queued += (long)mpmc_size_approx(&tok->shared->q);
            continue;
        }
        if (disp_shared_pop(tok->shared, tok->slot, &item) == DISP_ITEM) {
            start_job(w, (JobObject *)item, tok);
            queued += (long)mpmc_size_approx(&tok->shared->q);
            link = &tok->serving_next;
        }
        else { /* parked: a producer will notify us again */
            *link = tok->serving_next;
            tok->serving_next = NULL;
            Py_DECREF(tok->owner);
        }
    }
    atomic_store_explicit(&w->shared_len, queued, memory_order_relaxed); /* a statistic */
    if (w->serving != NULL) {
        /* Look again on the next loop iteration, after what is ready now has run: a worker that
         * is busy computing or blocked therefore takes nothing more meanwhile. */
        wakefd_signal(w);
    }
}

static void stop_serving_all(WorkerObject *w, PyObject *cause)
{
    while (w->serving != NULL) {
        runner_serve_token *tok = w->serving;
        w->serving = tok->serving_next;
        tok->serving_next = NULL;
        orphan_serve(w, tok, cause);
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
    PyObject *tasks = PyDict_Keys(w->running);
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

/* The reader callback of the wake-up fd: take the mailbox, serve the shared queues. */
static PyObject *worker_drain(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    WorkerObject *w = (WorkerObject *)op;
    /* Consume the fd BEFORE taking the stacks (loop_runner.h). */
    wakefd_consume(w);
    for (disp_node *n = disp_stack_take_all(&w->serves); n != NULL;) {
        runner_serve_token *tok = disp_container_of(n, runner_serve_token, node);
        n = n->next;
        start_serving(w, tok);
    }
    long taken = 0;
    for (disp_node *n = disp_stack_take_all(&w->starts); n != NULL; taken++) {
        JobObject *job = disp_container_of(n, JobObject, start_node);
        n = n->next;
        start_job(w, job, NULL);
    }
    if (taken > 0) {
        atomic_fetch_sub_explicit(&w->inbox_len, taken, memory_order_relaxed); /* a statistic */
    }
    for (disp_node *n = disp_stack_take_all(&w->cancels); n != NULL;) {
        JobObject *job = disp_container_of(n, JobObject, cancel_node);
        n = n->next;
        /* release: we are done with the node; pairs with the acq_rel exchange in runner_post_cancel */
        atomic_store_explicit(&job->cancel_queued, 0, memory_order_release);
        if (job->task != NULL) { /* NULL once done: task is a worker-thread-only field */
            cancel_task(w, job->task, job_cancel_msg(job));
        }
        Py_DECREF(job);
    }
    for (disp_node *n = disp_stack_take_all(&w->relays); n != NULL;) {
        JobObject *job = disp_container_of(n, JobObject, relay_node);
        n = n->next;
        job_relay_arrived(job, 1);
    }
    serve_round(w);
    /* acquire: pairs with the acq_rel exchange in runner_post_stop */
    if (atomic_load_explicit(&w->stop_requested, memory_order_acquire)) {
        begin_stop(w);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------------
 * the thread
 * ---------------------------------------------------------------------------------------------- */

/* Is `exc` (a KeyboardInterrupt or SystemExit out of run_forever) the outcome of one of our
 * tasks? Then asyncio has set it on the task, and its done callback reports it: not a death. */
static int is_task_outcome(WorkerObject *w, PyObject *exc)
{
    PyObject *tasks = PyDict_Keys(w->running);
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
    worker_die(w, cause); /* the mailbox: inbox, cancels, serves */
    stop_serving_all(w, cause); /* their queued jobs fail with the cause too (orphan_serve) */
    PyObject *items = PyDict_Items(w->running);
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
        job_abandon(job, death_error(w, cause));
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
    worker_die(w, cause);
    stop_serving_all(w, cause);
    PyObject *items = PyDict_Items(w->running);
    if (items == NULL) {
        PyErr_WriteUnraisable((PyObject *)w);
        return;
    }
    PyDict_Clear(w->running);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        JobObject *job = (JobObject *)Py_NewRef(PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1));
        job->runner_token = NULL;
        job_abandon(job, death_error(w, cause));
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
    atomic_store_explicit(&w->stats.started_ns, now_ns(), memory_order_relaxed); /* a statistic */
    current_worker = w;
    PyObject *cause = NULL;
    PyObject *fd = PyLong_FromLong(w->read_fd);
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
        worker_die(w, NULL);
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

static PyMethodDef worker_drain_def = {"_drain", worker_drain, METH_NOARGS, NULL};
static PyMethodDef worker_done_def = {"_task_done", worker_task_done, METH_O, NULL};
static PyMethodDef worker_run_def = {"_run", worker_run, METH_NOARGS, NULL};

/* ------------------------------------------------------------------------------------------------
 * the Worker type
 * ---------------------------------------------------------------------------------------------- */

PyObject *runner_stats_dict(WorkerObject *w)
{
    /* relaxed loads: statistics, each a recent value of its own (loop_runner.h) */
    unsigned long long started = atomic_load_explicit(&w->stats.started, memory_order_relaxed);
    unsigned long long finished = atomic_load_explicit(&w->stats.finished, memory_order_relaxed);
    unsigned long long failed = atomic_load_explicit(&w->stats.failed, memory_order_relaxed);
    unsigned long long cancelled = atomic_load_explicit(&w->stats.cancelled, memory_order_relaxed);
    long long t0 = atomic_load_explicit(&w->stats.started_ns, memory_order_relaxed);
    double wall = t0 ? (double)(now_ns() - t0) * 1e-9 : 0.0;
    double busy = 0.0;
    struct timespec ts;
    /* acquire: pairs with the release store in worker_run (cpu_clock written) */
    if (atomic_load_explicit(&w->stats.cpu_clock_ok, memory_order_acquire) && !runner_is_dead(w) &&
        clock_gettime(w->stats.cpu_clock, &ts) == 0) {
        busy = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    unsigned long long done = finished + failed + cancelled;
    return Py_BuildValue("{s:N,s:K,s:K,s:K,s:K,s:K,s:l,s:l,s:d,s:d,s:O}", "thread", Py_NewRef(w->name),
                         "started", started, "finished", finished, "failed", failed, "cancelled",
                         cancelled, "running", started >= done ? started - done : 0ULL, "inbox",
                         atomic_load_explicit(&w->inbox_len, memory_order_relaxed), "shared_queue",
                         atomic_load_explicit(&w->shared_len, memory_order_relaxed), "busy_seconds", busy,
                         "idle_seconds", wall > busy ? wall - busy : 0.0, "alive",
                         runner_is_dead(w) ? Py_False : Py_True);
}

static int worker_traverse(PyObject *op, visitproc visit, void *arg)
{
    WorkerObject *w = (WorkerObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(w->module);
    Py_VISIT(w->loop);
    Py_VISIT(w->thread);
    Py_VISIT(w->name);
    Py_VISIT(w->drain_cb);
    Py_VISIT(w->done_cb);
    Py_VISIT(w->running);
    Py_VISIT(w->death_cause);
    for (runner_serve_token *t = w->serving; t != NULL; t = t->serving_next) {
        Py_VISIT(t->owner);
    }
    return 0;
}

static int worker_clear(PyObject *op)
{
    WorkerObject *w = (WorkerObject *)op;
    Py_CLEAR(w->drain_cb);
    Py_CLEAR(w->done_cb);
    Py_CLEAR(w->thread);
    Py_CLEAR(w->running);
    Py_CLEAR(w->death_cause);
    while (w->serving != NULL) {
        runner_serve_token *tok = w->serving;
        w->serving = tok->serving_next;
        tok->serving_next = NULL;
        Py_DECREF(tok->owner);
    }
    return 0;
}

static void worker_dealloc(PyObject *op)
{
    WorkerObject *w = (WorkerObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    /* Only reachable once the thread has finished (it holds a reference): the mailbox was taken
     * by worker_die, and later posts resolved themselves. A worker whose thread never started
     * resolves what it holds here. */
    if (!atomic_load_explicit(&w->dead, memory_order_relaxed)) {
        worker_die(w, NULL);
    }
    worker_clear(op);
    wakefd_close(w);
    Py_CLEAR(w->loop);
    Py_CLEAR(w->name);
    Py_CLEAR(w->module);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *worker_get_loop(PyObject *op, void *Py_UNUSED(c))
{
    return Py_NewRef(((WorkerObject *)op)->loop);
}

static PyObject *worker_get_thread(PyObject *op, void *Py_UNUSED(c))
{
    WorkerObject *w = (WorkerObject *)op;
    return Py_NewRef(w->thread ? w->thread : Py_None);
}

static PyObject *worker_get_alive(PyObject *op, void *Py_UNUSED(c))
{
    return PyBool_FromLong(!runner_is_dead((WorkerObject *)op));
}

static PyGetSetDef worker_getset[] = {
    {"loop", worker_get_loop, NULL, "The worker's event loop.", NULL},
    {"thread", worker_get_thread, NULL, "The threading.Thread running the worker.", NULL},
    {"alive", worker_get_alive, NULL, "False once the worker stopped or died.", NULL},
    {NULL},
};

static PyType_Slot worker_slots[] = {
    {Py_tp_doc, "A thrasks worker: one OS thread running one asyncio event loop (internal)."},
    {Py_tp_traverse, worker_traverse},
    {Py_tp_clear, worker_clear},
    {Py_tp_dealloc, worker_dealloc},
    {Py_tp_getset, worker_getset},
    {0, NULL},
};

PyType_Spec runner_worker_spec = {
    .name = "thrasks._core.Worker",
    .basicsize = sizeof(WorkerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = worker_slots,
};

/* The loop from loop_factory(), checked: an asyncio event loop, neither running nor closed. */
static PyObject *make_loop(thrasks_state *st, PyObject *loop_factory)
{
    if (loop_factory == NULL || loop_factory == Py_None) {
        return FAULT_PY() ? NULL : PyObject_CallNoArgs(st->new_event_loop);
    }
    PyObject *loop = PyObject_CallNoArgs(loop_factory);
    if (loop == NULL) {
        return NULL;
    }
    int ok = PyObject_IsInstance(loop, st->abstract_loop_type);
    if (ok <= 0) {
        if (ok == 0) {
            PyErr_Format(PyExc_TypeError,
                         "loop_factory must return an asyncio event loop (an asyncio.AbstractEventLoop), "
                         "got %.100s from %R",
                         Py_TYPE(loop)->tp_name, loop_factory);
        }
        Py_DECREF(loop);
        return NULL;
    }
    PyObject *running = PyObject_CallMethod(loop, "is_running", NULL);
    PyObject *closed = running ? PyObject_CallMethodNoArgs(loop, st->s_is_closed) : NULL;
    int bad = running == NULL || closed == NULL || running == Py_True || closed == Py_True;
    if (bad && !PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError,
                     "loop_factory must return a new event loop, not one that is %s: got %R",
                     running == Py_True ? "running" : "closed", loop);
    }
    Py_XDECREF(running);
    Py_XDECREF(closed);
    if (bad) {
        Py_DECREF(loop);
        return NULL;
    }
    return loop;
}

WorkerObject *runner_new(thrasks_state *st, PyObject *module, size_t index, PyObject *loop_factory,
                         unsigned long fork_generation)
{
    if (FAULT_PY()) {
        return NULL;
    }
    WorkerObject *w = PyObject_GC_New(WorkerObject, st->worker_type);
    if (w == NULL) {
        return NULL;
    }
    memset((char *)w + sizeof(PyObject), 0, sizeof(WorkerObject) - sizeof(PyObject));
    w->read_fd = w->write_fd = -1;
    w->st = st;
    w->module = Py_NewRef(module);
    w->index = index;
    w->fork_generation = fork_generation;
    disp_stack_init(&w->starts);
    disp_stack_init(&w->cancels);
    disp_stack_init(&w->serves);
    disp_stack_init(&w->relays);
    PyObject_GC_Track(w);
    if (wakefd_open(w) < 0) {
        goto fail;
    }
    PyObject *self = (PyObject *)w;
    if (FAULT_PY()) {
        goto fail;
    }
    w->running = PyDict_New();
    w->name = PyUnicode_FromFormat("thrasks-worker-%zu", index);
    w->drain_cb = PyCFunction_NewEx(&worker_drain_def, self, NULL);
    w->done_cb = PyCFunction_NewEx(&worker_done_def, self, NULL);
    if (!w->running || !w->name || !w->drain_cb || !w->done_cb) {
        goto fail;
    }
    /* The loop is made here and run by the thread: creating a loop is thread-agnostic. */
    w->loop = make_loop(st, loop_factory);
    if (w->loop == NULL) {
        goto fail;
    }
    PyObject *target = FAULT_PY() ? NULL : PyCFunction_NewEx(&worker_run_def, self, NULL);
    PyObject *kwnames = target ? PyTuple_Pack(3, st->s_target, st->s_name, st->s_daemon) : NULL;
    if (kwnames == NULL) {
        Py_XDECREF(target);
        goto fail;
    }
    /* daemon=True only so that a pool nobody shut down cannot hang interpreter exit; thrasks shuts
     * every pool down (and joins its threads) from an atexit hook before that matters. */
    PyObject *args[4] = {NULL, target, w->name, Py_True};
    w->thread = PyObject_Vectorcall(st->thread_type, args + 1, PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames);
    Py_DECREF(target);
    Py_DECREF(kwnames);
    if (w->thread == NULL) {
        goto fail;
    }
    return w;
fail:
    atomic_store_explicit(&w->dead, 1, memory_order_relaxed); /* never published: nobody posts yet */
    if (w->loop) {
        PyObject *exc = PyErr_GetRaisedException();
        PyObject *r2 = PyObject_CallMethodNoArgs(w->loop, st->s_close);
        Py_XDECREF(r2);
        PyErr_SetRaisedException(exc);
    }
    Py_DECREF(w);
    return NULL;
}

int runner_start(WorkerObject *w)
{
    PyObject *r = FAULT_PY() ? NULL : PyObject_CallMethodNoArgs(w->thread, w->st->s_start);
    if (r == NULL) {
        PyObject *exc = PyErr_GetRaisedException();
        worker_die(w, NULL);
        PyObject *r2 = PyObject_CallMethodNoArgs(w->loop, w->st->s_close);
        Py_XDECREF(r2);
        PyErr_Clear();
        PyErr_SetRaisedException(exc);
        return -1;
    }
    Py_DECREF(r);
    atomic_store_explicit(&w->thread_started, 1, memory_order_release); /* pairs with runner_join */
    return 0;
}

int runner_join(WorkerObject *w)
{
    /* acquire: pairs with the release in runner_start */
    if (!atomic_load_explicit(&w->thread_started, memory_order_acquire) || w->thread == NULL) {
        return 0;
    }
    PyObject *ident = PyObject_GetAttr(w->thread, w->st->s_ident);
    if (ident == NULL) {
        return -1;
    }
    unsigned long tid = ident == Py_None ? 0 : PyLong_AsUnsignedLong(ident);
    Py_DECREF(ident);
    if (tid == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    if (tid == PyThread_get_thread_ident()) {
        return 0; /* a worker shutting down its own pool: it stops after this callback */
    }
    PyObject *r = PyObject_CallMethodNoArgs(w->thread, w->st->s_join);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}
