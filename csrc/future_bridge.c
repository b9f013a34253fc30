/* future_bridge.c - the caller's side of a task: thrasks._core.Future and thrasks._core.Group.
 * The protocols (job state machine, completion batches, cancellation) are described in
 * future_bridge.h; the worker's side is in loop_runner.c. */
#include "future_bridge.h"
#include "loop_runner.h"

#define COMPLETIONS_CAPACITY 64

/* ------------------------------------------------------------------------------------------------
 * small helpers
 * ---------------------------------------------------------------------------------------------- */

static PyObject *call2(PyObject *func, PyObject *a, PyObject *b)
{
    PyObject *args[2] = {a, b};
    return PyObject_Vectorcall(func, args, b ? 2 : 1, NULL);
}

/* Call `func(a[, b])` and report (not raise) an error: used where we are a loop callback that
 * must deliver everything else in its batch even if one delivery fails. */
static void call2_report(PyObject *func, PyObject *a, PyObject *b)
{
    PyObject *r = call2(func, a, b);
    if (r == NULL) {
        PyErr_WriteUnraisable(a);
    }
    Py_XDECREF(r);
}

static int future_is_done(thrasks_state *st, PyObject *fut)
{
    PyObject *r = call2(st->base_done, fut, NULL);
    if (r == NULL) {
        return -1;
    }
    int done = (r == Py_True);
    Py_DECREF(r);
    return done;
}

/* Close a coroutine we will never run, so Python does not warn that it was never awaited. */
static void close_coro(thrasks_state *st, PyObject *coro)
{
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *r = PyObject_CallMethodNoArgs(coro, st->s_close);
    if (r == NULL) {
        PyErr_WriteUnraisable(coro);
    }
    Py_XDECREF(r);
    PyErr_SetRaisedException(exc);
}

/* ------------------------------------------------------------------------------------------------
 * the group's list of undelivered jobs (guarded by group->lock; the list owns one ref per job)
 * ---------------------------------------------------------------------------------------------- */

static void list_insert(GroupObject *g, PyObject *job, JobData *jd)
{
    PyMutex_Lock(&g->lock);
    jd->prev = NULL;
    jd->next = g->head;
    if (g->head) {
        job_data(g->st, g->head)->prev = job;
    }
    g->head = Py_NewRef(job);
    PyMutex_Unlock(&g->lock);
}

/* Unlink; returns the list's reference to the caller. */
static PyObject *list_remove(GroupObject *g, PyObject *job, JobData *jd)
{
    PyMutex_Lock(&g->lock);
    if (jd->prev) {
        job_data(g->st, jd->prev)->next = jd->next;
    }
    else {
        g->head = jd->next;
    }
    if (jd->next) {
        job_data(g->st, jd->next)->prev = jd->prev;
    }
    jd->prev = jd->next = NULL;
    PyMutex_Unlock(&g->lock);
    return job;
}

/* New references to every undelivered job, as a list (NULL on error). */
static PyObject *list_snapshot(GroupObject *g)
{
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    PyMutex_Lock(&g->lock);
    for (PyObject *j = g->head; j; j = job_data(g->st, j)->next) {
        if (PyList_Append(out, j) < 0) { /* allocation only: safe under a PyMutex */
            PyMutex_Unlock(&g->lock);
            Py_DECREF(out);
            return NULL;
        }
    }
    PyMutex_Unlock(&g->lock);
    return out;
}

/* ------------------------------------------------------------------------------------------------
 * cancellation requests (any thread)
 * ---------------------------------------------------------------------------------------------- */

/* Ask the worker to cancel the job's task (see the state machine in future_bridge.h).
 * 0, or -1 with an exception set. */
static int job_request_cancel(thrasks_state *st, PyObject *job, PyObject *msg, int defer)
{
    JobData *jd = job_data(st, job);
    if (defer) {
        /* relaxed: published by the release half of the CAS to CANCEL_PENDING below */
        atomic_store_explicit(&jd->cancel_deferred, 1, memory_order_relaxed);
    }
    if (msg != NULL && msg != Py_None) {
        PyObject *expected = NULL;
        Py_INCREF(msg);
        /* release: pairs with the acquire loads of cancel_msg on the worker (start_job, MSG_CANCEL)
         * and in delivery; only the first message is kept, like the first Task.cancel(msg). */
        if (!atomic_compare_exchange_strong_explicit(&jd->cancel_msg, &expected, msg,
                                                     memory_order_release, memory_order_relaxed)) {
            Py_DECREF(msg);
        }
    }
    /* acquire: pairs with the release CAS/store to RUNNING in start_job, so jd->worker is visible */
    int state = atomic_load_explicit(&jd->state, memory_order_acquire);
    for (;;) {
        switch (state) {
        case JOB_PENDING:
            /* acq_rel: the worker's CAS PENDING->RUNNING fails after this and then cancels the task
             * itself; on failure the acquire reload makes RUNNING's worker field visible. */
            if (atomic_compare_exchange_weak_explicit(&jd->state, &state, JOB_CANCEL_PENDING,
                                                      memory_order_acq_rel, memory_order_acquire)) {
                return 0;
            }
            continue;
        case JOB_RUNNING: {
            /* The message owns a job reference; the worker cancels jd->task if it still runs. */
            Py_INCREF(job);
            if (runner_post(jd->worker, msg_make(job, MSG_CANCEL)) < 0) {
                Py_DECREF(job);
                return -1;
            }
            return 0;
        }
        default: /* CANCEL_PENDING: the worker will cancel it; DONE: its outcome is on its way */
            return 0;
        }
    }
}

/* Cancel every undelivered job of the group. Returns how many there were, or -1 on error. */
static Py_ssize_t group_cancel_all(GroupObject *g, PyObject *msg, int defer)
{
    PyObject *jobs = list_snapshot(g);
    if (jobs == NULL) {
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(jobs);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (job_request_cancel(g->st, PyList_GET_ITEM(jobs, i), msg, defer) < 0) {
            Py_DECREF(jobs);
            return -1;
        }
    }
    Py_DECREF(jobs);
    return n;
}

/* ------------------------------------------------------------------------------------------------
 * thrasks._core.Future
 * ---------------------------------------------------------------------------------------------- */

/* Future.cancel(msg=None): like Task.cancel, a REQUEST. The future becomes cancelled once the
 * worker-side coroutine has finished cancelling; it gets a result instead if the coroutine
 * suppresses the cancellation. */
static PyObject *future_cancel(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    thrasks_state *st = thrasks_state_of_type(Py_TYPE(self));
    PyObject *msg = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1 || (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "msg") != 0)) {
        PyErr_SetString(PyExc_TypeError, "cancel() takes at most one argument, msg");
        return NULL;
    }
    if (nargs + nkw == 1) {
        msg = args[0];
    }
    int done = future_is_done(st, self);
    if (done != 0) {
        return done < 0 ? NULL : Py_NewRef(Py_False);
    }
    JobData *jd = job_data(st, self);
    if (jd->role == ROLE_JOB) {
        if (jd->group == NULL) { /* not made by a group: behave like a plain asyncio.Future */
            return call2(st->base_cancel, self, msg);
        }
        if (job_request_cancel(st, self, msg, 0) < 0) {
            return NULL;
        }
        Py_RETURN_TRUE;
    }
    /* the outer future of threaded_gather: like asyncio's _GatheringFuture.cancel */
    GroupObject *g = jd->group;
    if (g == NULL || g->outer_settled) {
        Py_RETURN_FALSE;
    }
    Py_ssize_t n = group_cancel_all(g, msg, 0);
    if (n < 0) {
        return NULL;
    }
    if (n > 0) {
        g->gather_cancel_requested = 1;
        if (msg != Py_None && jd->cancel_msg == NULL) {
            atomic_store_explicit(&jd->cancel_msg, Py_NewRef(msg), memory_order_relaxed); /* caller thread only */
        }
    }
    return PyBool_FromLong(n > 0);
}

static PyObject *future_refuse_set(PyObject *self, PyObject *Py_UNUSED(arg))
{
    PyErr_Format(PyExc_RuntimeError,
                 "%.100s does not support set_result() / set_exception(): its outcome comes from "
                 "the coroutine running on a worker thread (cancel() it instead)",
                 Py_TYPE(self)->tp_name);
    return NULL;
}

static int future_traverse(PyObject *self, visitproc visit, void *arg)
{
    PyTypeObject *tp = Py_TYPE(self);
    thrasks_state *st = thrasks_state_of_type(tp);
    if (st != NULL) {
        JobData *jd = job_data(st, self);
        Py_VISIT(jd->group);
        Py_VISIT(jd->coro);
        Py_VISIT(jd->context);
        Py_VISIT(jd->name);
        Py_VISIT(jd->outcome);
        Py_VISIT(jd->worker);
        /* jd->task belongs to the worker thread's bookkeeping; the worker's `running` dict holds it */
    }
    return st ? st->asyncio_future_type->tp_traverse(self, visit, arg) : 0;
}

static void job_clear_fields(thrasks_state *st, PyObject *self)
{
    JobData *jd = job_data(st, self);
    Py_CLEAR(jd->group);
    Py_CLEAR(jd->coro);
    Py_CLEAR(jd->context);
    Py_CLEAR(jd->name);
    Py_CLEAR(jd->outcome);
    Py_CLEAR(jd->task);
    Py_CLEAR(jd->worker);
    PyObject *msg = atomic_exchange_explicit(&jd->cancel_msg, NULL, memory_order_relaxed); /* last owner */
    Py_XDECREF(msg);
}

static int future_clear(PyObject *self)
{
    thrasks_state *st = thrasks_state_of_type(Py_TYPE(self));
    job_clear_fields(st, self);
    return st->asyncio_future_type->tp_clear(self);
}

static void future_dealloc(PyObject *self)
{
    thrasks_state *st = thrasks_state_of_type(Py_TYPE(self));
    PyObject_GC_UnTrack(self);
    JobData *jd = job_data(st, self);
    if (jd->coro != NULL) { /* never reached a worker (e.g. an error while creating it) */
        close_coro(st, jd->coro);
    }
    job_clear_fields(st, self);
    PyObject_GC_Track(self);
    /* asyncio.Future's dealloc runs the finalizer, untracks, frees and drops the type reference. */
    st->asyncio_future_type->tp_dealloc(self);
}

static PyMethodDef future_methods[] = {
    {"cancel", (PyCFunction)(void (*)(void))future_cancel, METH_FASTCALL | METH_KEYWORDS,
     "cancel($self, /, msg=None)\n--\n\nRequest cancellation of the task's coroutine on its worker thread.\n\n"
     "Like Task.cancel(): returns True if the request was made; the future becomes cancelled once\n"
     "the coroutine has finished cancelling (or gets its result if the coroutine suppresses it)."},
    {"set_result", future_refuse_set, METH_O, NULL},
    {"set_exception", future_refuse_set, METH_O, NULL},
    {NULL},
};

static PyType_Slot future_slots[] = {
    {Py_tp_doc, "The future of a coroutine running on a thrasks worker thread.\n\n"
                "An asyncio.Future bound to the loop that created it: await it, add callbacks,\n"
                "cancel it. Its result, exception or cancellation comes from the worker."},
    {Py_tp_methods, future_methods},
    {Py_tp_traverse, future_traverse},
    {Py_tp_clear, future_clear},
    {Py_tp_dealloc, future_dealloc},
    {0, NULL},
};

PyType_Spec bridge_future_spec = {
    .name = "thrasks._core.Future",
    .basicsize = -(int)sizeof(JobData), /* JobData follows asyncio.Future's own (opaque) layout */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = future_slots,
};

/* ------------------------------------------------------------------------------------------------
 * worker -> caller: completions
 * ---------------------------------------------------------------------------------------------- */

/* Drop every completion of a group whose loop is gone (any thread; the queue is MPMC-safe). */
static void drop_completions(GroupObject *g)
{
    void *item;
    while ((item = disp_inbox_pop(&g->completions)) != NULL) {
        Py_DECREF((PyObject *)item);
    }
}

void bridge_complete(thrasks_state *st, PyObject *job, int kind, PyObject *outcome)
{
    JobData *jd = job_data(st, job);
    GroupObject *g = jd->group;
    /* Written before the push: the completion queue's release/acquire hands them to _drain. */
    jd->outcome = outcome;
    jd->outcome_kind = kind;
    /* acquire: pairs with the release store below (another worker found the loop closed);
     * discarding: relaxed hint, see thrasks.h */
    if (atomic_load_explicit(&g->loop_dead, memory_order_acquire) ||
        atomic_load_explicit(&st->discarding, memory_order_relaxed)) {
        Py_DECREF(job);
        return;
    }
    int r = disp_inbox_push(&g->completions, job); /* the queue takes over our job reference */
    if (r == 0) {
        return; /* a wake for this batch is already on its way */
    }
    if (r < 0) {
        /* Out of memory for a new ring: deliver nothing rather than crash; the loop sees it. */
        PyErr_NoMemory();
        PyErr_WriteUnraisable(job);
        Py_DECREF(job);
        return;
    }
    /* First item of a batch: ONE call_soon_threadsafe wakes the caller's loop for all of it. The
     * handle holds a group reference until _drain ran, so the group outlives the batch. */
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *args[3] = {g->loop, st->drain_func, (PyObject *)g};
    PyObject *res = PyObject_VectorcallMethod(st->s_call_soon_threadsafe, args,
                                              3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (res == NULL) {
        /* The caller's loop is closed: nobody will deliver; drop this and later outcomes. */
        PyErr_Clear();
        /* release: pairs with the acquire load above in other workers' bridge_complete */
        atomic_store_explicit(&g->loop_dead, 1, memory_order_release);
        drop_completions(g);
    }
    Py_XDECREF(res);
    PyErr_SetRaisedException(exc);
}

void bridge_orphan_job(thrasks_state *st, PyObject *job)
{
    JobData *jd = job_data(st, job);
    if (jd->coro != NULL) {
        close_coro(st, jd->coro);
        Py_CLEAR(jd->coro);
    }
    /* release: nothing to publish to a canceller any more; DONE only stops MSG_CANCEL posts */
    atomic_store_explicit(&jd->state, JOB_DONE, memory_order_release);
    bridge_complete(st, job, OUTCOME_CANCELLED, NULL);
}

void bridge_orphan_serve(thrasks_state *st, GroupObject *g)
{
    void *item;
    while ((item = mpmc_pop(&g->shared.q)) != NULL) {
        bridge_orphan_job(st, (PyObject *)item);
    }
    Py_DECREF(g);
}

/* ------------------------------------------------------------------------------------------------
 * caller side: delivery (runs on the caller's loop, one call per batch)
 * ---------------------------------------------------------------------------------------------- */

static PyObject *make_cancelled_error(thrasks_state *st, PyObject *msg)
{
    return msg ? PyObject_CallOneArg(st->cancelled_error, msg) : PyObject_CallNoArgs(st->cancelled_error);
}

/* ThreadedTaskGroup / plain: put the outcome into the job's future. */
static void deliver_future(thrasks_state *st, PyObject *job, JobData *jd)
{
    switch (jd->outcome_kind) {
    case OUTCOME_RESULT:
        call2_report(st->base_set_result, job, jd->outcome);
        break;
    case OUTCOME_EXCEPTION:
        call2_report(st->base_set_exception, job, jd->outcome);
        break;
    default: {
        /* acquire: pairs with the release CAS in job_request_cancel */
        PyObject *msg = atomic_load_explicit(&jd->cancel_msg, memory_order_acquire);
        call2_report(st->base_cancel, job, msg);
        break;
    }
    }
}

/* asyncio.TaskGroup._on_task_done, for one delivered job (errors reported, not raised). */
static void taskgroup_account(GroupObject *g, PyObject *job, JobData *jd)
{
    thrasks_state *st = g->st;
    if (g->on_completed_fut && atomic_load_explicit(&g->pending, memory_order_relaxed) == 0) {
        int done = future_is_done(st, g->on_completed_fut);
        if (done == 0) {
            call2_report(st->base_set_result, g->on_completed_fut, Py_True);
        }
        else if (done < 0) {
            PyErr_WriteUnraisable(job);
        }
    }
    if (jd->outcome_kind != OUTCOME_EXCEPTION) {
        return;
    }
    PyObject *exc = jd->outcome;
    /* the group reports the error: mark it retrieved so the future does not log it again */
    PyObject *r = PyObject_CallMethodNoArgs(job, st->s_exception);
    Py_XDECREF(r);
    if (r == NULL) {
        PyErr_Clear();
    }
    if (g->errors == NULL || PyList_Append(g->errors, exc) < 0) {
        if (PyErr_Occurred()) {
            PyErr_WriteUnraisable(job);
        }
        return;
    }
    if (g->base_error == NULL && (PyErr_GivenExceptionMatches(exc, PyExc_SystemExit) ||
                                 PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt))) {
        /* asyncio.TaskGroup._is_base_error: these two are re-raised by the group as themselves */
        g->base_error = Py_NewRef(exc);
    }
    if (g->parent_task == NULL) {
        return;
    }
    r = PyObject_CallMethodNoArgs(g->parent_task, st->s_done);
    if (r == NULL) {
        PyErr_WriteUnraisable(job);
        return;
    }
    int parent_done = (r == Py_True);
    Py_DECREF(r);
    if (parent_done) {
        PyObject *ctx = Py_BuildValue("{s:N,s:O,s:O}", "message",
                                      PyUnicode_FromFormat("Task %R has errored out but its parent task "
                                                           "%R is already completed", job, g->parent_task),
                                      "exception", exc, "future", job);
        if (ctx) {
            r = PyObject_CallMethodOneArg(g->loop, st->s_call_exception_handler, ctx);
            Py_XDECREF(r);
            Py_DECREF(ctx);
        }
        if (ctx == NULL || r == NULL) {
            PyErr_WriteUnraisable(job);
        }
        return;
    }
    if (!atomic_load_explicit(&g->aborting, memory_order_relaxed) && !g->parent_cancel_requested) {
        /* like asyncio: abort the group, then cancel the parent task so its body stops waiting;
         * __aexit__ uncancels it. */
        atomic_store_explicit(&g->aborting, 1, memory_order_relaxed); /* read by create_task: advisory */
        if (group_cancel_all(g, NULL, 1) < 0) {
            PyErr_WriteUnraisable(job);
        }
        g->parent_cancel_requested = 1;
        r = PyObject_CallMethodNoArgs(g->parent_task, st->s_cancel);
        Py_XDECREF(r);
        if (r == NULL) {
            PyErr_WriteUnraisable(job);
        }
    }
}

/* Settle threaded_gather's outer future with `value` (a new reference, taken over; NULL reports
 * the pending error instead), as its exception or its result. */
static void gather_settle(GroupObject *g, PyObject *value, int is_exception)
{
    thrasks_state *st = g->st;
    if (value == NULL) {
        PyErr_WriteUnraisable(g->outer);
        return;
    }
    g->outer_settled = 1;
    PyObject *outer = g->outer;
    g->outer = NULL; /* the outer keeps the group (jd->group); the group lets go of the outer */
    call2_report(is_exception ? st->base_set_exception : st->base_set_result, outer, value);
    Py_DECREF(value);
    Py_DECREF(outer);
}

/* asyncio.gather's _done_callback, for one delivered child. */
static void gather_account(GroupObject *g, JobData *jd)
{
    thrasks_state *st = g->st;
    if (g->outer_settled) {
        return;
    }
    /* The child's outcome as asyncio.gather reports it: its result, its exception, or a new
     * CancelledError. Acquire: pairs with the release CAS of cancel_msg in job_request_cancel. */
    PyObject *res = jd->outcome_kind == OUTCOME_CANCELLED
                        ? make_cancelled_error(st, atomic_load_explicit(&jd->cancel_msg, memory_order_acquire))
                        : Py_NewRef(jd->outcome);
    if (!g->return_exceptions && jd->outcome_kind != OUTCOME_RESULT) {
        gather_settle(g, res, 1);
        return;
    }
    if (res == NULL) {
        PyErr_WriteUnraisable(g->outer);
        return;
    }
    PyList_SetItem(g->results, jd->index, res); /* steals res; index < len by construction */
    if (atomic_load_explicit(&g->pending, memory_order_relaxed) != 0) {
        return;
    }
    if (g->gather_cancel_requested) {
        JobData *od = job_data(st, g->outer);
        /* relaxed: the outer's cancel message is written and read on the caller thread */
        gather_settle(g, make_cancelled_error(st, atomic_load_explicit(&od->cancel_msg, memory_order_relaxed)), 1);
    }
    else {
        gather_settle(g, Py_NewRef(g->results), 0);
    }
}

PyObject *bridge_drain(PyObject *module, PyObject *arg)
{
    (void)module;
    GroupObject *g = (GroupObject *)arg;
    disp_inbox_begin_drain(&g->completions);
    void *item;
    while ((item = disp_inbox_pop(&g->completions)) != NULL) {
        PyObject *job = (PyObject *)item; /* the queue's job reference is now ours */
        JobData *jd = job_data(g->st, job);
        Py_DECREF(list_remove(g, job, jd)); /* the list's reference (we still hold the queue's) */
        /* relaxed: only the caller thread reads pending for the "all done" decision, and the
         * increments that matter happened-before the pushes we just acquired */
        atomic_fetch_sub_explicit(&g->pending, 1, memory_order_relaxed);
        if (g->kind == KIND_GATHER) {
            gather_account(g, jd);
        }
        else {
            deliver_future(g->st, job, jd);
            if (g->kind == KIND_TASKGROUP) {
                taskgroup_account(g, job, jd);
            }
        }
        /* delivered: the job no longer needs its group, outcome or context */
        Py_CLEAR(jd->outcome);
        Py_CLEAR(jd->context);
        Py_CLEAR(jd->group);
        Py_DECREF(job);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------------
 * thrasks._core.Group
 * ---------------------------------------------------------------------------------------------- */

static PyObject *group_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwds))
{
    thrasks_state *st = thrasks_state_of_type(type);
    if (st == NULL) {
        return NULL;
    }
    GroupObject *g = (GroupObject *)type->tp_alloc(type, 0);
    if (g == NULL) {
        return NULL;
    }
    g->st = st;
    g->module = Py_NewRef(thrasks_module_of_type(type));
    g->num_threads = 1;
    if (disp_inbox_init(&g->completions, COMPLETIONS_CAPACITY) < 0) {
        Py_DECREF(g);
        return PyErr_NoMemory();
    }
    g->inbox_inited = 1;
    g->errors = PyList_New(0);
    if (g->errors == NULL) {
        Py_DECREF(g);
        return NULL;
    }
    return (PyObject *)g;
}

/* Shared by Group.__init__ and gather: kind/num_threads/mode/pool, already validated by the shim
 * (num_threads also here, since the C API is reachable directly). */
static int group_configure(GroupObject *g, int kind, PyObject *num_threads, int mode, PyObject *pool)
{
    thrasks_state *st = g->st;
    size_t n;
    if (runner_check_num_threads(num_threads, &n) < 0) {
        return -1;
    }
    if (mode != MODE_ROUND_ROBIN && mode != MODE_QUEUE) {
        PyErr_Format(PyExc_ValueError, "unknown scheduling mode %d", mode);
        return -1;
    }
    if (!PyObject_TypeCheck(pool, st->pool_type)) {
        PyErr_Format(PyExc_TypeError, "pool must be a thrasks.WorkerPool, got %.100s", Py_TYPE(pool)->tp_name);
        return -1;
    }
    if (atomic_load_explicit(&g->entered, memory_order_relaxed)) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reconfigure a group that has been entered");
        return -1;
    }
    g->kind = kind;
    g->num_threads = n;
    g->mode = mode;
    Py_XSETREF(g->pool, Py_NewRef(pool));
    return 0;
}

static int group_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"num_threads", "mode", "pool", "kind", NULL};
    PyObject *num, *pool;
    int mode, kind = KIND_TASKGROUP;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiO|i:Group", kwlist, &num, &mode, &pool, &kind)) {
        return -1;
    }
    if (kind != KIND_TASKGROUP && kind != KIND_PLAIN) {
        PyErr_Format(PyExc_ValueError, "Group kind must be KIND_TASKGROUP or KIND_PLAIN, got %d", kind);
        return -1;
    }
    return group_configure((GroupObject *)self, kind, num, mode, pool);
}

static const char *group_label(GroupObject *g)
{
    return g->kind == KIND_TASKGROUP ? "ThreadedTaskGroup" : "group";
}

/* Caller thread, once: tie the group to the running loop and the pool's workers. */
static int group_bind_impl(GroupObject *g, PyObject *loop, PyObject *parent)
{
    if (g->pool == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Group.__init__() was not called");
        return -1;
    }
    int expected = 0;
    /* relaxed: entering is a caller-thread action; create_task from workers only happens later,
     * through jobs whose hand-off (the inbox) orders everything written here before them */
    if (!atomic_compare_exchange_strong_explicit(&g->entered, &expected, 1, memory_order_relaxed,
                                                 memory_order_relaxed)) {
        PyErr_Format(PyExc_RuntimeError, "%s %R has already been entered", group_label(g), g);
        return -1;
    }
    PoolObject *pool = (PoolObject *)g->pool;
    if (runner_pool_ensure(pool, g->num_threads) < 0) {
        atomic_store_explicit(&g->entered, 0, memory_order_relaxed);
        return -1;
    }
    g->pool_size = atomic_load_explicit(&pool->size, memory_order_acquire); /* pairs with ensure's release */
    disp_rr_init(&g->rr, &pool->rr_counter, g->num_threads);
    if (g->mode == MODE_QUEUE) {
        g->tokens = PyMem_Calloc(g->num_threads, sizeof(serve_token));
        if (g->tokens == NULL || disp_shared_init(&g->shared, g->num_threads, 64) < 0) {
            atomic_store_explicit(&g->entered, 0, memory_order_relaxed);
            PyErr_NoMemory();
            return -1;
        }
        g->shared_inited = 1;
        for (size_t i = 0; i < g->num_threads; i++) {
            g->tokens[i].group = g;
            g->tokens[i].slot = i;
        }
    }
    Py_XSETREF(g->loop, Py_NewRef(loop));
    Py_XSETREF(g->parent_task, parent == Py_None ? NULL : Py_NewRef(parent));
    return 0;
}

static PyObject *group_bind(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_bind(loop, parent_task)");
        return NULL;
    }
    if (group_bind_impl((GroupObject *)self, args[0], args[1]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Hand a new job to the workers. Takes over `job` on success and on failure (-1, exception set,
 * the job undone). */
static int group_submit(GroupObject *g, PyObject *job)
{
    PoolObject *pool = (PoolObject *)g->pool;
    if (g->mode == MODE_ROUND_ROBIN) {
        size_t slot = disp_rr_next_slot(&g->rr);
        WorkerObject *w = runner_pool_worker(pool, disp_rr_worker(&g->rr, slot, g->pool_size));
        return runner_post(w, msg_make(job, MSG_START)); /* the message owns our job reference */
    }
    long slot = disp_shared_push(&g->shared, job); /* the queue owns our job reference */
    if (slot == -2) {
        PyErr_NoMemory();
        return -1;
    }
    if (slot >= 0) {
        WorkerObject *w = runner_pool_worker(pool, disp_rr_worker(&g->rr, (size_t)slot, g->pool_size));
        Py_INCREF(g); /* the MSG_SERVE message owns a group reference */
        if (runner_post(w, msg_make(&g->tokens[slot], MSG_SERVE)) < 0) {
            /* The job is queued but its notification failed: the slot stays claimed, so serve it
             * from here is impossible; report the error (the queue still owns the job and the
             * other slots' consumers, or the group's abort, will take it). */
            Py_DECREF(g);
            return -1;
        }
    }
    return 0;
}

/* Make, register and submit one job. Returns a new reference to the job (a Future), or NULL. */
static PyObject *group_spawn(GroupObject *g, PyObject *coro, PyObject *name, PyObject *context,
                             Py_ssize_t index, int init_future)
{
    thrasks_state *st = g->st;
    PyObject *job;
    if (init_future) {
        PyObject *args[2] = {NULL, g->loop};
        job = PyObject_Vectorcall((PyObject *)st->future_type, args + 1,
                                  PY_VECTORCALL_ARGUMENTS_OFFSET, st->kw_loop);
    }
    else {
        /* threaded_gather's children are never exposed: the state machine only, no Future init */
        job = st->future_type->tp_alloc(st->future_type, 0);
    }
    if (job == NULL) {
        return NULL;
    }
    JobData *jd = job_data(st, job);
    jd->context = context == NULL || context == Py_None ? PyContext_CopyCurrent() : PyContext_Copy(context);
    if (jd->context == NULL) {
        Py_DECREF(job);
        return NULL;
    }
    jd->name = (name == NULL || name == Py_None) ? NULL : Py_NewRef(name);
    jd->coro = Py_NewRef(coro);
    jd->group = (GroupObject *)Py_NewRef(g);
    jd->role = ROLE_JOB;
    jd->index = index;
    /* relaxed: pending is read for decisions only on the caller thread, after the completion
     * queue's acquire (see bridge_drain); this increment is sequenced before our push */
    atomic_fetch_add_explicit(&g->pending, 1, memory_order_relaxed);
    list_insert(g, job, jd);
    Py_INCREF(job); /* for the worker side (message / shared queue) */
    if (group_submit(g, job) < 0) {
        Py_DECREF(job);
        Py_DECREF(list_remove(g, job, jd));
        atomic_fetch_sub_explicit(&g->pending, 1, memory_order_relaxed);
        Py_CLEAR(jd->coro); /* the caller still owns `coro` and closes it */
        Py_DECREF(job);
        return NULL;
    }
    return job;
}

static int check_coroutine(thrasks_state *st, PyObject *coro)
{
    if (PyCoro_CheckExact(coro)) {
        return 0;
    }
    PyObject *r = PyObject_CallOneArg(st->iscoroutine, coro);
    if (r == NULL) {
        return -1;
    }
    int ok = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (ok == 0) {
        PyErr_Format(PyExc_TypeError, "a coroutine was expected, got %R", coro);
    }
    return ok > 0 ? 0 : -1;
}

static PyObject *group_create_task(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    GroupObject *g = (GroupObject *)self;
    thrasks_state *st = g->st;
    PyObject *coro = NULL, *name = Py_None, *context = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "create_task() takes 1 positional argument but %zd were given", nargs);
        return NULL;
    }
    if (nargs == 1) {
        coro = args[0];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (nargs == 0 && PyUnicode_CompareWithASCIIString(key, "coro") == 0) {
            coro = args[nargs + i];
        }
        else if (PyUnicode_CompareWithASCIIString(key, "name") == 0) {
            name = args[nargs + i];
        }
        else if (PyUnicode_CompareWithASCIIString(key, "context") == 0) {
            context = args[nargs + i];
        }
        else {
            PyErr_Format(PyExc_TypeError, "create_task() got an unexpected keyword argument %R", key);
            return NULL;
        }
    }
    if (coro == NULL) {
        PyErr_SetString(PyExc_TypeError, "create_task() missing required argument: 'coro'");
        return NULL;
    }
    if (check_coroutine(st, coro) < 0) {
        return NULL;
    }
    const char *problem = NULL;
    /* relaxed: advisory state flags; the asyncio checks they mirror are not synchronising either */
    if (!atomic_load_explicit(&g->entered, memory_order_relaxed)) {
        problem = "has not been entered";
    }
    else if (atomic_load_explicit(&g->exiting, memory_order_relaxed) &&
             atomic_load_explicit(&g->pending, memory_order_relaxed) == 0) {
        problem = "is finished";
    }
    else if (atomic_load_explicit(&g->aborting, memory_order_relaxed)) {
        problem = "is shutting down";
    }
    if (problem) {
        close_coro(st, coro);
        PyErr_Format(PyExc_RuntimeError, "%s %R %s", group_label(g), self, problem);
        return NULL;
    }
    if (context != Py_None && !PyContext_CheckExact(context)) {
        PyErr_Format(PyExc_TypeError, "context must be a contextvars.Context, got %.100s",
                     Py_TYPE(context)->tp_name);
        return NULL;
    }
    if (runner_pool_check((PoolObject *)g->pool) < 0) {
        close_coro(st, coro);
        return NULL;
    }
    PyObject *job = group_spawn(g, coro, name, context, 0, 1);
    if (job == NULL) {
        close_coro(st, coro);
    }
    return job;
}

static PyObject *group_abort(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    GroupObject *g = (GroupObject *)self;
    atomic_store_explicit(&g->aborting, 1, memory_order_relaxed); /* advisory, see create_task */
    if (group_cancel_all(g, NULL, 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *group_get_flag(PyObject *self, void *closure)
{
    atomic_int *flag = (atomic_int *)((char *)self + (Py_ssize_t)closure);
    return PyBool_FromLong(atomic_load_explicit(flag, memory_order_relaxed)); /* advisory flags */
}

static int group_set_flag(PyObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0) {
        return -1;
    }
    atomic_int *flag = (atomic_int *)((char *)self + (Py_ssize_t)closure);
    atomic_store_explicit(flag, v, memory_order_relaxed);
    return 0;
}

static PyObject *group_get_pending(PyObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromSsize_t(atomic_load_explicit(&((GroupObject *)self)->pending, memory_order_relaxed));
}

static PyObject *group_get_num_threads(PyObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromSize_t(((GroupObject *)self)->num_threads);
}

static PyObject *group_get_pool(PyObject *self, void *Py_UNUSED(c))
{
    PyObject *pool = ((GroupObject *)self)->pool;
    return Py_NewRef(pool ? pool : Py_None);
}

static PyObject *group_get_pcr(PyObject *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(((GroupObject *)self)->parent_cancel_requested);
}

static int group_set_pcr(PyObject *self, PyObject *value, void *Py_UNUSED(c))
{
    int v = value ? PyObject_IsTrue(value) : 0;
    if (v < 0) {
        return -1;
    }
    ((GroupObject *)self)->parent_cancel_requested = v;
    return 0;
}

/* Object fields the Python side reads as None when unset (caller thread only). */
static PyObject *group_get_obj(PyObject *self, void *closure)
{
    PyObject *v = *(PyObject **)((char *)self + (Py_ssize_t)closure);
    return Py_NewRef(v ? v : Py_None);
}

static int group_set_obj(PyObject *self, PyObject *value, void *closure)
{
    PyObject **slot = (PyObject **)((char *)self + (Py_ssize_t)closure);
    Py_XSETREF(*slot, (value == NULL || value == Py_None) ? NULL : Py_NewRef(value));
    return 0;
}

static int group_traverse(PyObject *self, visitproc visit, void *arg)
{
    GroupObject *g = (GroupObject *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(g->module);
    Py_VISIT(g->pool);
    Py_VISIT(g->loop);
    Py_VISIT(g->parent_task);
    Py_VISIT(g->errors);
    Py_VISIT(g->base_error);
    Py_VISIT(g->on_completed_fut);
    Py_VISIT(g->outer);
    Py_VISIT(g->results);
    /* the undelivered jobs: the GC runs with the world stopped, so the list is stable */
    for (PyObject *j = g->head; j; j = job_data(g->st, j)->next) {
        Py_VISIT(j);
    }
    return 0;
}

static int group_clear(PyObject *self)
{
    GroupObject *g = (GroupObject *)self;
    Py_CLEAR(g->parent_task);
    Py_CLEAR(g->errors);
    Py_CLEAR(g->base_error);
    Py_CLEAR(g->on_completed_fut);
    Py_CLEAR(g->outer);
    Py_CLEAR(g->results);
    PyMutex_Lock(&g->lock);
    PyObject *head = g->head;
    g->head = NULL;
    PyMutex_Unlock(&g->lock);
    while (head) {
        JobData *jd = job_data(g->st, head);
        PyObject *next = jd->next;
        jd->prev = jd->next = NULL;
        Py_DECREF(head);
        head = next;
    }
    return 0;
}

static void group_dealloc(PyObject *self)
{
    GroupObject *g = (GroupObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (g->weakreflist) {
        PyObject_ClearWeakRefs(self);
    }
    group_clear(self);
    if (g->inbox_inited) {
        drop_completions(g);
        disp_inbox_destroy(&g->completions);
    }
    if (g->shared_inited) {
        /* Unreachable while jobs are queued (each holds a group reference); defensive. */
        void *item;
        while ((item = mpmc_pop(&g->shared.q)) != NULL) {
            Py_DECREF((PyObject *)item);
        }
        disp_shared_destroy(&g->shared);
    }
    PyMem_Free(g->tokens);
    Py_CLEAR(g->loop);
    Py_CLEAR(g->pool);
    Py_CLEAR(g->module);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef group_methods[] = {
    {"create_task", (PyCFunction)(void (*)(void))group_create_task, METH_FASTCALL | METH_KEYWORDS,
     "create_task($self, /, coro, *, name=None, context=None)\n--\n\n"
     "Run the coroutine on a worker thread; return an asyncio.Future of its result, bound to the\n"
     "caller's loop. name= names the worker-side task; the coroutine runs in a copy of context=\n"
     "(default: a copy of the caller's current context)."},
    {"_bind", (PyCFunction)(void (*)(void))group_bind, METH_FASTCALL, NULL},
    {"_abort", group_abort, METH_NOARGS, NULL},
    {NULL},
};

static PyMemberDef group_members[] = {
    {"_errors", Py_T_OBJECT_EX, offsetof(GroupObject, errors), 0, NULL},
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(GroupObject, weakreflist), Py_READONLY, NULL},
    {NULL},
};

/* Diagnostics (tests and debugging): (queued completions, wake pending). Approximate. */
static PyObject *group_get_completions_state(PyObject *self, void *Py_UNUSED(c))
{
    GroupObject *g = (GroupObject *)self;
    return Py_BuildValue("(ni)", (Py_ssize_t)mpmc_size_approx(&g->completions.q),
                         atomic_load_explicit(&g->completions.wake_pending, memory_order_relaxed));
}

static PyGetSetDef group_getset[] = {
    {"_completions_state", group_get_completions_state, NULL, NULL, NULL},
    {"_entered", group_get_flag, NULL, NULL, (void *)offsetof(GroupObject, entered)},
    {"_exiting", group_get_flag, group_set_flag, NULL, (void *)offsetof(GroupObject, exiting)},
    {"_aborting", group_get_flag, NULL, NULL, (void *)offsetof(GroupObject, aborting)},
    {"_parent_cancel_requested", group_get_pcr, group_set_pcr, NULL, NULL},
    {"_parent_task", group_get_obj, group_set_obj, NULL, (void *)offsetof(GroupObject, parent_task)},
    {"_base_error", group_get_obj, group_set_obj, NULL, (void *)offsetof(GroupObject, base_error)},
    {"_on_completed_fut", group_get_obj, group_set_obj, NULL, (void *)offsetof(GroupObject, on_completed_fut)},
    {"_loop", group_get_obj, NULL, NULL, (void *)offsetof(GroupObject, loop)},
    {"_pending", group_get_pending, NULL, "Tasks created and not yet delivered.", NULL},
    {"num_threads", group_get_num_threads, NULL, "Number of worker threads the group spreads over.", NULL},
    {"pool", group_get_pool, NULL, "The WorkerPool the group runs on.", NULL},
    {NULL},
};

static PyType_Slot group_slots[] = {
    {Py_tp_doc, "Group(num_threads, mode, pool, kind=0)\n--\n\nThe C core of ThreadedTaskGroup (internal)."},
    {Py_tp_new, group_new},
    {Py_tp_init, group_init},
    {Py_tp_traverse, group_traverse},
    {Py_tp_clear, group_clear},
    {Py_tp_dealloc, group_dealloc},
    {Py_tp_methods, group_methods},
    {Py_tp_members, group_members},
    {Py_tp_getset, group_getset},
    {0, NULL},
};

PyType_Spec bridge_group_spec = {
    .name = "thrasks._core.Group",
    .basicsize = sizeof(GroupObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = group_slots,
};

/* ------------------------------------------------------------------------------------------------
 * threaded_gather of coroutines: one group, one outer future, results gathered in C
 * ---------------------------------------------------------------------------------------------- */

PyObject *bridge_gather(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    thrasks_state *st = PyModule_GetState(module);
    if (nargs != 5 || !PyTuple_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "gather(coros: tuple, num_threads, return_exceptions, mode, pool)");
        return NULL;
    }
    PyObject *coros = args[0];
    int return_exceptions = PyObject_IsTrue(args[2]);
    int mode = PyLong_Check(args[3]) ? (int)PyLong_AsLong(args[3]) : -1;
    if (return_exceptions < 0 || (mode == -1 && PyErr_Occurred())) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(coros);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (check_coroutine(st, PyTuple_GET_ITEM(coros, i)) < 0) {
            return NULL;
        }
    }
    PyObject *loop = PyObject_CallNoArgs(st->get_running_loop);
    if (loop == NULL) {
        return NULL;
    }
    GroupObject *g = (GroupObject *)group_new(st->group_type, NULL, NULL);
    PyObject *outer = NULL;
    if (g == NULL || group_configure(g, KIND_GATHER, args[1], mode, args[4]) < 0 ||
        group_bind_impl(g, loop, Py_None) < 0) {
        goto fail;
    }
    g->return_exceptions = return_exceptions;
    g->results = PyList_New(n);
    PyObject *fargs[2] = {NULL, loop};
    outer = PyObject_Vectorcall((PyObject *)st->future_type, fargs + 1, PY_VECTORCALL_ARGUMENTS_OFFSET,
                                st->kw_loop);
    if (g->results == NULL || outer == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyList_SET_ITEM(g->results, i, Py_NewRef(Py_None));
    }
    JobData *od = job_data(st, outer);
    od->role = ROLE_GATHER_OUTER;
    od->group = (GroupObject *)Py_NewRef(g); /* outer -> group; group -> outer until settled */
    g->outer = Py_NewRef(outer);
    if (n == 0) {
        gather_settle(g, Py_NewRef(g->results), 0);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *job = group_spawn(g, PyTuple_GET_ITEM(coros, i), NULL, NULL, i, 0);
        if (job == NULL) {
            /* Cancel what started, close what did not; the outer settles when they are delivered. */
            PyObject *exc = PyErr_GetRaisedException();
            for (Py_ssize_t k = i; k < n; k++) {
                close_coro(st, PyTuple_GET_ITEM(coros, k));
            }
            (void)group_cancel_all(g, NULL, 0);
            PyErr_SetRaisedException(exc);
            goto fail;
        }
        Py_DECREF(job);
    }
    atomic_store_explicit(&g->exiting, 1, memory_order_relaxed); /* no more tasks: advisory */
    Py_DECREF(g);
    Py_DECREF(loop);
    return outer;
fail:
    Py_XDECREF(outer);
    Py_XDECREF(g);
    Py_DECREF(loop);
    return NULL;
}
