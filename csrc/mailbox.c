/* mailbox.c - a worker's mailbox, from any thread: posting messages and waking the worker, and
 * the dead-worker hand-off that resolves what no worker will take (contracts in loop_runner.h).
 * Touches: workers' mailboxes and flags, jobs (through job.h), serve tokens. Never a group. */
#include "loop_runner.h"

/* ------------------------------------------------------------------------------------------------
 * resolving what no worker will run (a dead or stopped worker)
 * ---------------------------------------------------------------------------------------------- */

/* The error a job of a dead worker finishes with: a new RuntimeError naming the worker, chained
 * to the cause (NULL: stopped normally, the job is cancelled instead). Any thread. */
PyObject *runner_death_error(WorkerObject *w, PyObject *cause)
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
void runner_orphan_serve(WorkerObject *w, runner_serve_token *tok, PyObject *cause)
{
    disp_shared_park(tok->shared, tok->slot);
    void *item;
    while ((item = mpmc_pop(&tok->shared->q)) != NULL) {
        job_abandon((JobObject *)item, runner_death_error(w, cause));
    }
    Py_DECREF(tok->owner);
}

/* Resolve every message in the mailbox (the worker is dead). Any thread. */
void runner_orphan_mailbox(WorkerObject *w)
{
    PyObject *cause = w->death_cause; /* read after the acquire of `dead` (see post_done) */
    for (disp_node *n = disp_stack_take_all(&w->serves); n != NULL;) {
        runner_serve_token *tok = disp_container_of(n, runner_serve_token, node);
        n = n->next;
        runner_serve_token_read(tok);
        runner_orphan_serve(w, tok, cause);
    }
    for (disp_node *n = disp_stack_take_all(&w->starts); n != NULL;) {
        JobObject *job = disp_container_of(n, JobObject, start_node);
        n = n->next;
        /* relaxed: a statistic */
        atomic_fetch_sub_explicit(&w->inbox_len, 1, memory_order_relaxed);
        job_abandon(job, runner_death_error(w, cause));
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
        wakefd_signal(&w->wake);
    }
    /* seq_cst: pairs with the fence in worker_die (Dekker): either we see dead == 1 here, or the
     * worker's last take of the mailbox (after its fence) sees the message we pushed. */
    THRASKS_FENCE_SEQ_CST();
    /* acquire: pairs with the release store of dead, so death_cause is visible */
    if (atomic_load_explicit(&w->dead, memory_order_acquire)) {
        runner_orphan_mailbox(w);
    }
}

/* A job is on its way to w: it is not idle for the next route (runner_claim_idle). */
static void not_idle(WorkerObject *w)
{
    /* relaxed: a hint; loaded first so that a busy worker's line is not written per post */
    if (atomic_load_explicit(&w->idle_since, memory_order_relaxed) != 0) {
        atomic_store_explicit(&w->idle_since, 0, memory_order_relaxed);
    }
}

void runner_post_start(WorkerObject *w, JobObject *job)
{
    /* relaxed: a statistic */
    atomic_fetch_add_explicit(&w->inbox_len, 1, memory_order_relaxed);
    not_idle(w);
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
    /* acq_rel: one message queued at a time. Losing means the queued message has not been read
     * yet; the drain that reads it clears the flag with an acq_rel exchange that reads our write,
     * so our job's push to the shared queue happens before the serving that follows. */
    if (atomic_exchange_explicit(&tok->queued, 1, memory_order_acq_rel) != 0) {
        Py_DECREF(tok->owner); /* the message's reference: the caller still holds the owner */
        return;
    }
    not_idle(w);
    post_done(w, disp_stack_push(&w->serves, &tok->node)); /* the stack owns tok's owner ref */
}

void runner_serve_token_read(runner_serve_token *tok)
{
    /* acq_rel: pairs with the exchange in runner_post_serve (see there); after the caller read
     * tok->node.next, so the node is free to be pushed again. */
    atomic_exchange_explicit(&tok->queued, 0, memory_order_acq_rel);
}

void runner_post_relay(WorkerObject *w, JobObject *job)
{
    post_done(w, disp_stack_push(&w->relays, &job->relay_node)); /* the stack owns our job ref */
}

void runner_post_stop(WorkerObject *w)
{
    /* acq_rel: the first request wakes the worker; pairs with the acquire load in worker_drain */
    if (atomic_exchange_explicit(&w->stop_requested, 1, memory_order_acq_rel) == 0) {
        wakefd_signal(&w->wake);
    }
}

long runner_running(WorkerObject *w)
{
    /* relaxed: statistics (loop_runner.h) */
    unsigned long long started = atomic_load_explicit(&w->stats.started, memory_order_relaxed);
    unsigned long long done = atomic_load_explicit(&w->stats.finished, memory_order_relaxed) +
                              atomic_load_explicit(&w->stats.failed, memory_order_relaxed) +
                              atomic_load_explicit(&w->stats.cancelled, memory_order_relaxed);
    return started > done ? (long)(started - done) : 0;
}

int runner_is_dead(WorkerObject *w)
{
    return atomic_load_explicit(&w->dead, memory_order_acquire); /* pairs with worker_die */
}

/* Worker thread, once: stop taking the mailbox and resolve what is in it (and whatever is posted
 * later, by the posters themselves). */
void runner_die(WorkerObject *w, PyObject *cause)
{
    if (atomic_load_explicit(&w->dead, memory_order_relaxed)) { /* only this thread writes it */
        return;
    }
    w->death_cause = Py_XNewRef(cause);
    atomic_store_explicit(&w->idle_since, 0, memory_order_relaxed); /* relaxed: a hint, never again */
    /* release: publishes death_cause to posters that acquire dead (post_done) */
    atomic_store_explicit(&w->dead, 1, memory_order_release);
    /* seq_cst: pairs with the fence in post_done (see there). */
    THRASKS_FENCE_SEQ_CST();
    runner_orphan_mailbox(w);
}

