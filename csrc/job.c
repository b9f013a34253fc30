/* job.c - the job object, its state machine and the sink of finished jobs (contracts in job.h).
 * Touches: jobs, sinks, and the owner's loop (call_soon_threadsafe); nothing of workers or groups. */
#include "job.h"

#include <time.h>

/* ------------------------------------------------------------------------------------------------
 * the job object
 * ---------------------------------------------------------------------------------------------- */

void job_close_coro(thrasks_state *st, PyObject *coro)
{
    (void)st; /* by name, not through the module state: this also runs during interpreter teardown */
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *r = PyObject_CallMethod(coro, "close", NULL);
    if (r == NULL) {
        PyErr_WriteUnraisable(coro);
    }
    Py_XDECREF(r);
    PyErr_SetRaisedException(exc);
}

JobObject *job_new(thrasks_state *st, PyObject *coro, PyObject *context, PyObject *name,
                   PyObject *future, Py_ssize_t index)
{
    if (FAULT_PY()) {
        return NULL;
    }
    JobObject *job = PyObject_GC_New(JobObject, st->job_type);
    if (job == NULL) {
        return NULL;
    }
    memset((char *)job + sizeof(PyObject), 0, sizeof(JobObject) - sizeof(PyObject));
    job->st = st;
    job->index = index;
    atomic_init(&job->cancel_msg, NULL);
    atomic_init(&job->state, JOB_PENDING);
    atomic_init(&job->cancel_deferred, 0);
    atomic_init(&job->abort_claimed, 0);
    atomic_init(&job->cancel_queued, 0);
    if (FAULT_PY()) {
        job->context = NULL;
    }
    else {
        job->context = (context == NULL || context == Py_None) ? PyContext_CopyCurrent()
                                                               : PyContext_Copy(context);
    }
    if (job->context == NULL) {
        Py_DECREF(job);
        return NULL;
    }
    job->coro = Py_NewRef(coro);
    job->name = (name == NULL || name == Py_None) ? NULL : Py_NewRef(name);
    job->future = Py_XNewRef(future);
    PyObject_GC_Track(job);
    return job;
}

PyObject *job_take_coro(JobObject *job)
{
    PyObject *coro = job->coro; /* published by the post that brought the job (job.h) */
    job->coro = NULL;
    return coro;
}

int job_started(JobObject *job, PyObject *task, PyObject *worker)
{
    job->task = Py_NewRef(task);
    Py_XSETREF(job->worker, Py_NewRef(worker));
    int expected = JOB_PENDING;
    /* acq_rel: the release half publishes task/worker to a canceller's acquire load of RUNNING;
     * on failure, the acquire makes the cancel message and deferral written before CANCEL_PENDING
     * visible here. */
    if (atomic_compare_exchange_strong_explicit(&job->state, &expected, JOB_RUNNING,
                                                memory_order_acq_rel, memory_order_acquire)) {
        return JOB_START_RUN;
    }
    /* CANCEL_PENDING: the canceller left the cancel to us. relaxed: ordered by the acquire above. */
    int defer = atomic_load_explicit(&job->cancel_deferred, memory_order_relaxed);
    /* release: pairs with the acquire load in job_request_cancel (task/worker visible). */
    atomic_store_explicit(&job->state, JOB_RUNNING, memory_order_release);
    return defer ? JOB_START_CANCEL_SOON : JOB_START_CANCEL;
}

int job_request_cancel(JobObject *job, PyObject *msg, int defer)
{
    if (defer) {
        /* relaxed: published by the release half of the CAS to CANCEL_PENDING below */
        atomic_store_explicit(&job->cancel_deferred, 1, memory_order_relaxed);
    }
    if (msg != NULL && msg != Py_None) {
        PyObject *expected = NULL;
        Py_INCREF(msg);
        /* release: pairs with the acquire in job_cancel_msg; only the first message is kept, like
         * the first Task.cancel(msg). */
        if (!atomic_compare_exchange_strong_explicit(&job->cancel_msg, &expected, msg,
                                                     memory_order_release, memory_order_relaxed)) {
            Py_DECREF(msg);
        }
    }
    /* acquire: pairs with the release CAS/store to RUNNING in job_started (worker visible) */
    int state = atomic_load_explicit(&job->state, memory_order_acquire);
    for (;;) {
        switch (state) {
        case JOB_PENDING:
            /* acq_rel: the worker's CAS PENDING->RUNNING then fails and it cancels the task
             * itself; on failure the acquire reload makes RUNNING's worker field visible. */
            if (atomic_compare_exchange_weak_explicit(&job->state, &state, JOB_CANCEL_PENDING,
                                                      memory_order_acq_rel, memory_order_acquire)) {
                return JOB_CANCEL_RECORDED;
            }
            continue;
        case JOB_CANCEL_PENDING: /* the worker will cancel it */
            return JOB_CANCEL_RECORDED;
        case JOB_RUNNING:
            return JOB_CANCEL_POST;
        default: /* DONE: its outcome is on its way */
            return JOB_CANCEL_DONE;
        }
    }
}

int job_claim_abort(JobObject *job)
{
    /* relaxed: only the RMW's atomicity matters; the cancel request that follows publishes */
    return atomic_exchange_explicit(&job->abort_claimed, 1, memory_order_relaxed) == 0;
}

int job_wants_lazy_start(JobObject *job)
{
    /* acquire: pairs with the acq_rel CAS to CANCEL_PENDING (the deferral flag is set before it) */
    if (atomic_load_explicit(&job->state, memory_order_acquire) != JOB_CANCEL_PENDING) {
        return 0;
    }
    return !atomic_load_explicit(&job->cancel_deferred, memory_order_relaxed); /* ordered above */
}

int job_state(JobObject *job)
{
    /* acquire: pairs with the release transitions (job.h) */
    return atomic_load_explicit(&job->state, memory_order_acquire);
}

PyObject *job_worker(JobObject *job)
{
    return job->worker; /* published by the release to RUNNING, which the caller acquired */
}

PyObject *job_cancel_msg(JobObject *job)
{
    /* acquire: pairs with the release CAS in job_request_cancel */
    return atomic_load_explicit(&job->cancel_msg, memory_order_acquire);
}

/* ------------------------------------------------------------------------------------------------
 * finishing: the hand-off back to the owner's loop
 * ---------------------------------------------------------------------------------------------- */

/* Any thread: schedule the owner's drain on its loop. call_soon_threadsafe allocates; a failure
 * that is not "the loop is closed" is retried for up to about a second (a momentary allocation
 * failure must not leave a caller waiting forever), then reported. */
static void sink_wake(job_sink *s)
{
    thrasks_state *st = s->st;
    PyObject *exc = PyErr_GetRaisedException();
    for (int attempt = 0;; attempt++) {
        PyObject *args[2] = {s->loop, s->wake_cb};
        PyObject *r = FAULT_PY() ? NULL
                                 : PyObject_VectorcallMethod(st->s_call_soon_threadsafe, args,
                                                             2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (r != NULL) {
            Py_DECREF(r);
            break;
        }
        PyObject *err = PyErr_GetRaisedException();
        PyObject *closed = PyObject_CallMethodNoArgs(s->loop, st->s_is_closed);
        int is_closed = closed == Py_True;
        Py_XDECREF(closed);
        PyErr_Clear();
        if (is_closed || attempt >= 100) {
            if (!is_closed) {
                PyErr_SetRaisedException(err);
                PyErr_WriteUnraisable(s->owner);
            }
            else {
                Py_DECREF(err);
            }
            /* Nobody will deliver: drop this batch and everything after it. release: pairs with
             * the acquire load in job_finished. */
            atomic_store_explicit(&s->loop_dead, 1, memory_order_release);
            for (disp_node *n = disp_stack_take_all(&s->finished); n != NULL;) {
                JobObject *job = disp_container_of(n, JobObject, done_node);
                n = n->next;
                Py_DECREF(job);
            }
            break;
        }
        Py_DECREF(err);
        struct timespec ts = {0, 10 * 1000 * 1000}; /* 10 ms, with the thread state detached */
        Py_BEGIN_ALLOW_THREADS
        nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
    }
    PyErr_SetRaisedException(exc);
}

/* Hand a finished job to its sink (takes our job reference): the first of a batch wakes the loop. */
static void sink_push(JobObject *job)
{
    job_sink *s = job->sink;
    /* acquire: pairs with the release store in sink_wake (another thread found the loop closed);
     * discarding: a relaxed hint (thrasks.h) */
    if (s == NULL || atomic_load_explicit(&s->loop_dead, memory_order_acquire) ||
        atomic_load_explicit(&job->st->discarding, memory_order_relaxed)) {
        Py_DECREF(job);
        return;
    }
    /* Once pushed, the job may be delivered and the owner (which embeds s) freed by a drain that
     * is not this push's wake-up (a call_soon retry): hold the owner until the wake-up is done. */
    PyObject *owner = Py_NewRef(job->owner);
    int success = job->outcome_kind == OUTCOME_RESULT; /* read before the push hands the job over */
    /* The stack takes over our reference; the first job of a batch wakes the owner's loop. */
    int wake = disp_stack_push(&s->finished, &job->done_node);
    if (s->wake_when_all) {
        /* acq_rel: the decrements form one chain, so the last one comes after every other
         * finisher's push; its hub_post then publishes them all to the drain. */
        Py_ssize_t left = atomic_fetch_sub_explicit(&s->unfinished, 1, memory_order_acq_rel) - 1;
        wake = left == 0 || !success;
    }
    if (wake) {
        if (s->hub != NULL) {
            hub_post(s->hub, &s->hub_node);
        }
        else {
            sink_wake(s);
        }
    }
    Py_DECREF(owner); /* may be the last reference: then the owner goes here, on this thread */
}

void job_finished(JobObject *job, int kind, PyObject *outcome)
{
    /* acq_rel: exactly one finisher wins; its outcome is published by the push that follows
     * (the sink's finished stack, or the relay worker's mailbox). */
    if (atomic_exchange_explicit(&job->state, JOB_DONE, memory_order_acq_rel) == JOB_DONE) {
        Py_XDECREF(outcome);
        Py_DECREF(job);
        return;
    }
    Py_CLEAR(job->task);
    job->outcome = outcome;
    job->outcome_kind = kind;
    job_sink *s = job->sink;
    if (s != NULL && job->relay_worker != NULL && s->ops->relay != NULL) {
        s->ops->relay(job); /* the relay takes over our reference */
        return;
    }
    sink_push(job);
}

#define MAX_SETTLE_ATTEMPTS 8

void job_relay_arrived(JobObject *job, int settle)
{
    job_sink *s = job->sink;
    if (settle && s != NULL && s->ops->settle != NULL && s->ops->settle(s->owner, job) < 0) {
        if (++job->relay_attempts < MAX_SETTLE_ATTEMPTS && !PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) &&
            !PyErr_ExceptionMatches(PyExc_SystemExit)) {
            /* A task awaits this future: never leave it asleep for a momentary failure. Try
             * again from the relay worker's next drain (the repost allocates nothing). */
            PyErr_Clear();
            s->ops->relay(job);
            return;
        }
        PyErr_WriteUnraisable(job->future ? job->future : (PyObject *)job);
    }
    sink_push(job);
}

void job_abandon(JobObject *job, PyObject *error)
{
    PyObject *coro = job_take_coro(job);
    if (coro != NULL) {
        job_close_coro(job->st, coro);
        Py_DECREF(coro);
    }
    job_finished(job, error ? OUTCOME_EXCEPTION : OUTCOME_CANCELLED, error);
}

/* ------------------------------------------------------------------------------------------------
 * the sink
 * ---------------------------------------------------------------------------------------------- */

static PyObject *sink_hub_drain(hub_node *node)
{
    return job_sink_drain(disp_container_of(node, job_sink, hub_node));
}

void job_sink_init(job_sink *s, PyObject *owner, const job_sink_ops *ops, thrasks_state *st)
{
    memset(s, 0, sizeof *s);
    s->owner = owner;
    s->hub_node.owner = owner;
    s->hub_node.drain = sink_hub_drain;
    atomic_init(&s->hub_node.posted, 0);
    s->ops = ops;
    s->st = st;
    disp_stack_init(&s->finished);
    atomic_init(&s->loop_dead, 0);
    atomic_init(&s->pending, 0);
    atomic_init(&s->unfinished, 0);
}

void job_sink_bind(job_sink *s, PyObject *loop, PyObject *wake_cb)
{
    Py_XSETREF(s->loop, Py_NewRef(loop));
    Py_XSETREF(s->wake_cb, Py_NewRef(wake_cb));
    Py_XSETREF(s->hub, hub_for_loop(s->st, loop)); /* NULL: wake with call_soon_threadsafe */
    PyErr_Clear();
    s->bound = 1;
}

void job_sink_register(job_sink *s, JobObject *job)
{
    job->sink = s;
    job->owner = Py_NewRef(s->owner);
    /* relaxed: pending is decided on the owner's loop thread, after the acquire of the finished
     * stack; this increment is sequenced before the post that the job's completion follows. */
    atomic_fetch_add_explicit(&s->pending, 1, memory_order_relaxed);
    if (s->wake_when_all) { /* set on this thread before any registration, or never */
        /* relaxed: as pending (the post that follows publishes it to the finisher's decrement) */
        atomic_fetch_add_explicit(&s->unfinished, 1, memory_order_relaxed);
    }
    Py_BEGIN_CRITICAL_SECTION(s->owner);
    job->prev = NULL;
    job->next = s->undelivered;
    if (s->undelivered != NULL) {
        s->undelivered->prev = job;
    }
    s->undelivered = (JobObject *)Py_NewRef(job);
    Py_END_CRITICAL_SECTION();
}

/* Unlink a job from the undelivered list; returns the list's reference. */
static JobObject *sink_unlink(job_sink *s, JobObject *job)
{
    Py_BEGIN_CRITICAL_SECTION(s->owner);
    if (job->prev != NULL) {
        job->prev->next = job->next;
    }
    else if (s->undelivered == job) {
        s->undelivered = job->next;
    }
    if (job->next != NULL) {
        job->next->prev = job->prev;
    }
    job->prev = job->next = NULL;
    Py_END_CRITICAL_SECTION();
    return job;
}

/* wake_when_all mode: one unit of `unfinished` that never reaches `finished` (a job never posted,
 * or the owner's own unit); the last one wakes the loop for the batch waiting there. */
static void sink_unfinished_drop(job_sink *s)
{
    /* acq_rel: as in sink_push; after it every push is visible, so an empty stack means that
     * nothing waits (an empty gather, or a drain took the batch already) */
    if (atomic_fetch_sub_explicit(&s->unfinished, 1, memory_order_acq_rel) == 1 &&
        !disp_stack_empty_approx(&s->finished)) {
        hub_post(s->hub, &s->hub_node);
    }
}

void job_sink_wake_when_all(job_sink *s)
{
    if (s->hub != NULL) {
        /* relaxed: nothing is submitted yet; the posts that follow publish both */
        atomic_fetch_add_explicit(&s->unfinished, 1, memory_order_relaxed);
        s->wake_when_all = 1;
    }
}

void job_sink_all_submitted(job_sink *s)
{
    if (s->wake_when_all) {
        sink_unfinished_drop(s);
    }
}

void job_sink_unregister(job_sink *s, JobObject *job)
{
    Py_DECREF(sink_unlink(s, job));
    atomic_fetch_sub_explicit(&s->pending, 1, memory_order_relaxed); /* see job_sink_register */
    if (s->wake_when_all) {
        sink_unfinished_drop(s);
    }
    job->sink = NULL;
    Py_CLEAR(job->owner);
}

Py_ssize_t job_sink_pending(job_sink *s)
{
    return atomic_load_explicit(&s->pending, memory_order_relaxed); /* see job_sink_register */
}

PyObject *job_sink_snapshot(job_sink *s)
{
    /* Count, allocate outside the critical section, fill inside it (no allocation there); the
     * list may have grown meanwhile (create_task from another thread): then try again. */
    for (;;) {
        Py_ssize_t n = 0;
        Py_BEGIN_CRITICAL_SECTION(s->owner);
        for (JobObject *j = s->undelivered; j != NULL; j = j->next) {
            n++;
        }
        Py_END_CRITICAL_SECTION();
        PyObject *out = FAULT_PY() ? NULL : thrasks_list_new(n);
        if (out == NULL) {
            return NULL;
        }
        int fits = 1;
        Py_ssize_t i = 0;
        Py_BEGIN_CRITICAL_SECTION(s->owner);
        for (JobObject *j = s->undelivered; j != NULL; j = j->next) {
            if (i == n) {
                fits = 0;
                break;
            }
            PyList_SetItem(out, i++, Py_NewRef(j)); /* replaces a None: no allocation */
        }
        Py_END_CRITICAL_SECTION();
        if (fits && i == n) {
            return out;
        }
        if (fits) { /* shrank: keep what we have */
            if (PyList_SetSlice(out, i, n, NULL) < 0) {
                Py_DECREF(out);
                return NULL;
            }
            return out;
        }
        Py_DECREF(out);
    }
}

/* The job is delivered: unlink it, drop what it no longer needs, drop both references. */
static void sink_done_with(job_sink *s, JobObject *job)
{
    Py_DECREF(sink_unlink(s, job));
    atomic_fetch_sub_explicit(&s->pending, 1, memory_order_relaxed); /* see job_sink_register */
    Py_CLEAR(job->context);
    Py_CLEAR(job->future);
    Py_CLEAR(job->relay_worker);
    job->sink = NULL;
    PyObject *owner = job->owner;
    job->owner = NULL;
    Py_DECREF(job); /* the finished stack's reference */
    Py_XDECREF(owner);
}

/* Put `list` (oldest first) in front of the retry list, keeping order. */
static void sink_requeue(job_sink *s, disp_node *list)
{
    if (list == NULL) {
        return;
    }
    disp_node *last = list;
    while (last->next != NULL) {
        last = last->next;
    }
    last->next = s->retry ? &s->retry->done_node : NULL;
    s->retry = disp_container_of(list, JobObject, done_node);
}

/* Schedule another drain on our own loop (we are its thread): for jobs left in the retry list.
 * Through the hub when there is one: that allocates nothing, so a delivery that failed for want
 * of memory is retried even while call_soon would fail too. */
static int sink_reschedule(job_sink *s)
{
    if (s->hub != NULL) {
        hub_post(s->hub, &s->hub_node); /* a no-op if posted already: that drain is still to come */
        return 0;
    }
    PyObject *r = FAULT_PY() ? NULL : PyObject_CallMethodOneArg(s->loop, s->st->s_call_soon, s->wake_cb);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

#define MAX_DELIVERY_ATTEMPTS 8

PyObject *job_sink_drain(job_sink *s)
{
    if (!s->bound) {
        Py_RETURN_NONE;
    }
    /* The owner must outlive the drain: delivering the last job drops the jobs' owner refs. */
    PyObject *owner = Py_NewRef(s->owner);
    disp_node *list = s->retry ? &s->retry->done_node : NULL;
    s->retry = NULL;
    disp_node *fresh = disp_stack_take_all(&s->finished);
    if (list == NULL) {
        list = fresh;
    }
    else {
        disp_node *last = list;
        while (last->next != NULL) {
            last = last->next;
        }
        last->next = fresh;
    }
    PyObject *result = Py_None;
    int retry_later = 0;
    while (list != NULL) {
        JobObject *job = disp_container_of(list, JobObject, done_node);
        list = list->next;
        job->done_node.next = NULL;
        if (s->ops->deliver(s->owner, job) == 0) {
            sink_done_with(s, job);
            continue;
        }
        if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) || PyErr_ExceptionMatches(PyExc_SystemExit)) {
            /* Like an interrupt in any loop callback: it propagates out of the loop. What is left
             * is delivered by the next drain; this job's delivery is tried again too. */
            job->done_node.next = list;
            sink_requeue(s, &job->done_node);
            PyObject *exc = PyErr_GetRaisedException();
            if (sink_reschedule(s) < 0) {
                PyErr_WriteUnraisable(s->owner);
            }
            PyErr_SetRaisedException(exc);
            result = NULL;
            break;
        }
        if (++job->delivery_attempts >= MAX_DELIVERY_ATTEMPTS) {
            PyErr_WriteUnraisable(s->owner);
            sink_done_with(s, job); /* given up: do not keep the owner waiting for it forever */
            continue;
        }
        PyErr_Clear();
        job->done_node.next = NULL;
        sink_requeue(s, &job->done_node);
        retry_later = 1;
    }
    if (result != NULL && retry_later && sink_reschedule(s) < 0) {
        PyErr_WriteUnraisable(s->owner);
    }
    Py_DECREF(owner);
    return result ? Py_NewRef(result) : NULL;
}

int job_sink_traverse(job_sink *s, visitproc visit, void *arg)
{
    Py_VISIT(s->loop);
    Py_VISIT(s->wake_cb);
    Py_VISIT(s->hub);
    /* The GC runs with the world stopped, so the list and the stacks are stable. */
    for (JobObject *j = s->undelivered; j != NULL; j = j->next) {
        Py_VISIT(j);
    }
    /* Finished jobs own a reference too: visiting them lets the GC reclaim an owner whose loop
     * closed with its drain still scheduled (the handle dropped, nobody will take the stack). */
    /* relaxed: stop-the-world */
    for (disp_node *n = atomic_load_explicit(&s->finished.top, memory_order_relaxed); n != NULL; n = n->next) {
        Py_VISIT(disp_container_of(n, JobObject, done_node));
    }
    for (JobObject *j = s->retry; j != NULL;
         j = j->done_node.next ? disp_container_of(j->done_node.next, JobObject, done_node) : NULL) {
        Py_VISIT(j);
    }
    return 0;
}

/* Drop the finished jobs nobody will deliver (the GC breaks the owner's cycle, or it dies). */
static void sink_drop_finished(job_sink *s)
{
    disp_node *n = disp_stack_take_all(&s->finished);
    if (s->retry != NULL) {
        sink_requeue(s, n);
        n = &s->retry->done_node;
        s->retry = NULL;
    }
    while (n != NULL) {
        JobObject *job = disp_container_of(n, JobObject, done_node);
        n = n->next;
        job->done_node.next = NULL;
        Py_DECREF(job);
    }
}

void job_sink_clear(job_sink *s)
{
    sink_drop_finished(s);
    JobObject *head;
    Py_BEGIN_CRITICAL_SECTION(s->owner);
    head = s->undelivered;
    s->undelivered = NULL;
    Py_END_CRITICAL_SECTION();
    while (head != NULL) {
        JobObject *next = head->next;
        head->prev = head->next = NULL;
        Py_DECREF(head);
        head = next;
    }
    Py_CLEAR(s->wake_cb);
    Py_CLEAR(s->hub);
    Py_CLEAR(s->loop);
}

void job_sink_dealloc(job_sink *s)
{
    job_sink_clear(s);
}

/* ------------------------------------------------------------------------------------------------
 * thrasks._core.Job
 * ---------------------------------------------------------------------------------------------- */

static int job_traverse(PyObject *self, visitproc visit, void *arg)
{
    JobObject *job = (JobObject *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(job->owner);
    Py_VISIT(job->coro);
    Py_VISIT(job->context);
    Py_VISIT(job->name);
    Py_VISIT(job->future);
    Py_VISIT(job->relay_worker);
    Py_VISIT(job->worker);
    Py_VISIT(job->outcome);
    /* job->task belongs to the worker thread; the worker's `running` dict holds it */
    return 0;
}

static int job_clear(PyObject *self)
{
    JobObject *job = (JobObject *)self;
    Py_CLEAR(job->owner);
    job->sink = NULL;
    Py_CLEAR(job->context);
    Py_CLEAR(job->name);
    Py_CLEAR(job->future);
    Py_CLEAR(job->relay_worker);
    Py_CLEAR(job->worker);
    Py_CLEAR(job->outcome);
    Py_CLEAR(job->task);
    /* last owner: nobody else can race on cancel_msg now */
    PyObject *msg = atomic_exchange_explicit(&job->cancel_msg, NULL, memory_order_relaxed);
    Py_XDECREF(msg);
    return 0;
}

static void job_dealloc(PyObject *self)
{
    JobObject *job = (JobObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (job->coro != NULL) { /* never reached a worker */
        job_close_coro(job->st, job->coro);
        Py_CLEAR(job->coro);
    }
    (void)job_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *job_repr(PyObject *self)
{
    static const char *names[] = {"pending", "cancel pending", "running", "done"};
    int state = job_state((JobObject *)self);
    return PyUnicode_FromFormat("<thrasks._core.Job %s>", names[state & 3]);
}

static PyType_Slot job_slots[] = {
    {Py_tp_doc, "One coroutine handed to a thrasks worker (internal)."},
    {Py_tp_traverse, job_traverse},
    {Py_tp_clear, job_clear},
    {Py_tp_dealloc, job_dealloc},
    {Py_tp_repr, job_repr},
    {0, NULL},
};

PyType_Spec job_spec = {
    .name = "thrasks._core.Job",
    .basicsize = sizeof(JobObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = job_slots,
};
