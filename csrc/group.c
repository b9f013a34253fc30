/* group.c - thrasks._core.Group (contracts in group.h).
 * Touches: groups, their futures (future_bridge.h), jobs (job.h) and routes (pool.h). */
#include "group.h"
#include "args.h"

enum { GROUP_UNBOUND = 0, GROUP_BINDING = 1, GROUP_BOUND = 2 };

/* Steps of taskgroup_deliver already done for a job (job->delivery_progress), for retries. */
enum { STEP_SETTLED = 1, STEP_COUNTED = 2 };

typedef struct GroupObject {
    PyObject_HEAD
    thrasks_state *st;             /* borrowed: kept alive by `module` */
    PyObject *module;              /* strong */
    job_sink sink;                 /* its jobs (job.h) */
    pool_route route;              /* how they reach the workers (pool.h) */
    int kind;                      /* KIND_*: fixed by __init__ before binding */
    atomic_int state;              /* GROUP_*; release on BOUND publishes sink, route and loop */
    atomic_int exiting, aborting;  /* advisory flags, like asyncio.TaskGroup's (relaxed) */
    atomic_int failed;             /* a task failed (set where its failure is first seen) */
    /* loop-thread state for thrasks/_group.py; object fields under the critical section */
    PyObject *parent_task;         /* strong or NULL */
    PyObject *errors;              /* strong: list of exceptions raised by tasks */
    PyObject *base_error;          /* strong or NULL: first SystemExit / KeyboardInterrupt */
    PyObject *on_completed_fut;    /* strong or NULL: set to True when the last task is delivered */
    int parent_cancel_requested;
    PyObject *weakreflist;
} GroupObject;

static const char *group_label(GroupObject *g)
{
    return g->kind == KIND_TASKGROUP ? "ThreadedTaskGroup" : "group";
}

/* A new reference to an object field, read under the group's critical section (or None). */
static PyObject *get_field(GroupObject *g, PyObject **slot)
{
    PyObject *v;
    (void)g; /* the critical section's only use: it is empty on a GIL build */
    Py_BEGIN_CRITICAL_SECTION(g);
    v = Py_NewRef(*slot ? *slot : Py_None);
    Py_END_CRITICAL_SECTION();
    return v;
}

/* ------------------------------------------------------------------------------------------------
 * delivery (the group's loop thread)
 * ---------------------------------------------------------------------------------------------- */

/* Cancel every undelivered job. 0, or -1 with an exception set (the snapshot failed). */
static int group_cancel_all(GroupObject *g, int defer)
{
    PyObject *jobs = job_sink_snapshot(&g->sink);
    if (jobs == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(jobs); i++) {
        JobObject *job = (JobObject *)PyList_GET_ITEM(jobs, i);
        if (job_claim_abort(job)) { /* each task is cancelled once by aborts, as in asyncio */
            (void)route_cancel(job, NULL, defer);
        }
    }
    Py_DECREF(jobs);
    return 0;
}

/* Settle the job's future, unless its relay worker did (or its loop is gone). */
static int settle(GroupObject *g, JobObject *job)
{
    if (job->future == NULL || job->relay_worker != NULL) {
        return 0;
    }
    return bridge_settle(g->st, job->future, job, g->kind == KIND_TASKGROUP);
}

static int plain_deliver(PyObject *owner, JobObject *job)
{
    return settle((GroupObject *)owner, job);
}

/* Relay hooks (job.h): a task spawned on a worker has its future settled there first. */
static void group_relay(JobObject *job)
{
    runner_post_relay((WorkerObject *)job->relay_worker, job);
}

static int group_settle_on_worker(PyObject *owner, JobObject *job)
{
    GroupObject *g = (GroupObject *)owner;
    if (g->kind == KIND_TASKGROUP && job->outcome_kind == OUTCOME_EXCEPTION &&
        !atomic_exchange_explicit(&g->failed, 1, memory_order_relaxed)) {
        /* asyncio.TaskGroup aborts (cancels every task) BEFORE the spawning task, which awaits
         * this child, is woken: so it sees CancelledError, not the child's error. The abort is
         * started here, on the spawner's worker (its task is cancelled synchronously); the rest
         * of the group's bookkeeping follows on the group's loop. */
        if (group_cancel_all(g, 1) < 0) {
            PyErr_WriteUnraisable((PyObject *)g);
        }
    }
    return bridge_settle_here(g->st, job->future, job, g->kind == KIND_TASKGROUP);
}

/* asyncio.TaskGroup._on_task_done, for one delivered job. Each step that can fail comes before
 * the state it changes, or is recorded in job->delivery_progress, so a retry repeats nothing. */
static int taskgroup_deliver(PyObject *owner, JobObject *job)
{
    GroupObject *g = (GroupObject *)owner;
    thrasks_state *st = g->st;
    if (!(job->delivery_progress & STEP_SETTLED)) {
        if (settle(g, job) < 0) {
            return -1;
        }
        job->delivery_progress |= STEP_SETTLED;
    }
    /* pending still counts this job: the sink drops it after we return */
    PyObject *done_fut = get_field(g, &g->on_completed_fut);
    if (done_fut != Py_None && job_sink_pending(&g->sink) == 1) {
        int done = bridge_is_done(st, done_fut);
        PyObject *r = done == 0 ? bridge_call(st->base_set_result, done_fut, Py_True) : NULL;
        Py_XDECREF(r);
        if (done < 0 || (done == 0 && r == NULL)) {
            Py_DECREF(done_fut);
            return -1;
        }
    }
    Py_DECREF(done_fut);
    if (job->outcome_kind != OUTCOME_EXCEPTION || (job->delivery_progress & STEP_COUNTED)) {
        return 0;
    }
    PyObject *exc = job->outcome;
    int rc = 0;
    Py_BEGIN_CRITICAL_SECTION(g);
    rc = (g->errors == NULL || FAULT_PY()) ? -1 : PyList_Append(g->errors, exc);
    if (rc == 0 && g->base_error == NULL &&
        (PyErr_GivenExceptionMatches(exc, PyExc_SystemExit) ||
         PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt))) {
        /* asyncio.TaskGroup._is_base_error: these two are re-raised by the group as themselves */
        g->base_error = Py_NewRef(exc);
    }
    Py_END_CRITICAL_SECTION();
    if (rc < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "the group's error list is gone");
        }
        return -1;
    }
    job->delivery_progress |= STEP_COUNTED;
    PyObject *parent = get_field(g, &g->parent_task);
    if (parent == Py_None) {
        Py_DECREF(parent);
        return 0;
    }
    PyObject *r = PyObject_CallMethodNoArgs(parent, st->s_done);
    if (r == NULL) {
        Py_DECREF(parent);
        PyErr_WriteUnraisable((PyObject *)g);
        return 0;
    }
    int parent_done = (r == Py_True);
    Py_DECREF(r);
    if (parent_done) {
        PyObject *what = job->future ? job->future : (PyObject *)job;
        PyObject *ctx = Py_BuildValue("{s:N,s:O,s:O}", "message",
                                      PyUnicode_FromFormat("Task %R has errored out but its parent task "
                                                           "%R is already completed", what, parent),
                                      "exception", exc, "future", what);
        r = ctx ? PyObject_CallMethodOneArg(g->sink.loop, st->s_call_exception_handler, ctx) : NULL;
        Py_XDECREF(ctx);
        Py_XDECREF(r);
        if (r == NULL) {
            PyErr_WriteUnraisable((PyObject *)g);
        }
    }
    else if (!atomic_load_explicit(&g->aborting, memory_order_relaxed) && !g->parent_cancel_requested) {
        atomic_store_explicit(&g->failed, 1, memory_order_relaxed); /* advisory: create_task */
        /* Like asyncio: abort the group, then cancel the parent task so its body stops waiting;
         * __aexit__ uncancels it. The deferred cancels let created tasks take their first step. */
        atomic_store_explicit(&g->aborting, 1, memory_order_relaxed); /* advisory: create_task */
        if (group_cancel_all(g, 1) < 0) {
            PyErr_WriteUnraisable((PyObject *)g);
        }
        g->parent_cancel_requested = 1;
        r = PyObject_CallMethodNoArgs(parent, st->s_cancel);
        Py_XDECREF(r);
        if (r == NULL) {
            PyErr_WriteUnraisable((PyObject *)g);
        }
    }
    Py_DECREF(parent);
    return 0;
}

static const job_sink_ops taskgroup_ops = {taskgroup_deliver, group_relay, group_settle_on_worker};
static const job_sink_ops plain_ops = {plain_deliver, group_relay, group_settle_on_worker};

static PyObject *group_deliver(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return job_sink_drain(&((GroupObject *)self)->sink);
}

static PyMethodDef group_deliver_def = {"_deliver", group_deliver, METH_NOARGS, NULL};

/* ------------------------------------------------------------------------------------------------
 * construction and binding
 * ---------------------------------------------------------------------------------------------- */

static PyObject *group_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwds))
{
    thrasks_state *st = thrasks_state_of_type(type);
    if (st == NULL) {
        return NULL;
    }
    GroupObject *g = FAULT_PY() ? NULL : (GroupObject *)type->tp_alloc(type, 0);
    if (g == NULL) {
        return NULL;
    }
    g->st = st;
    g->module = Py_NewRef(thrasks_module_of_type(type));
    job_sink_init(&g->sink, (PyObject *)g, &taskgroup_ops, st);
    g->errors = FAULT_PY() ? NULL : PyList_New(0);
    if (g->errors == NULL) {
        Py_DECREF(g);
        return NULL;
    }
    return (PyObject *)g;
}

/* Group(num_threads, mode, pool, kind=KIND_TASKGROUP): validated here, whoever calls it. */
static int group_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"num_threads", "mode", "pool", "kind", NULL};
    GroupObject *g = (GroupObject *)self;
    PyObject *num, *mode, *pool;
    int kind = KIND_TASKGROUP;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|i:Group", kwlist, &num, &mode, &pool, &kind)) {
        return -1;
    }
    if (kind != KIND_TASKGROUP && kind != KIND_PLAIN) {
        PyErr_Format(PyExc_ValueError, "Group kind must be KIND_TASKGROUP or KIND_PLAIN, got %d", kind);
        return -1;
    }
    int rc = -1;
    Py_BEGIN_CRITICAL_SECTION(g);
    /* relaxed: state is only written under this critical section before BOUND */
    if (atomic_load_explicit(&g->state, memory_order_relaxed) != GROUP_UNBOUND) {
        PyErr_Format(PyExc_RuntimeError, "cannot reconfigure %s %R: it has been entered", group_label(g), g);
    }
    else if (route_configure(&g->route, g->st, num, mode, pool) == 0) {
        g->kind = kind;
        g->sink.ops = kind == KIND_TASKGROUP ? &taskgroup_ops : &plain_ops;
        rc = 0;
    }
    Py_END_CRITICAL_SECTION();
    return rc;
}

/* _bind(loop, parent_task): the loop thread, once (__aenter__). */
static PyObject *group_bind(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"loop", "parent_task", NULL};
    static const args_spec spec = {"_bind", names, 2, 2, 2};
    PyObject *v[2];
    if (args_parse(&spec, args, nargs, kwnames, v) < 0) {
        return NULL;
    }
    GroupObject *g = (GroupObject *)self;
    int expected = GROUP_UNBOUND;
    /* acq_rel: one binder wins; the others see BINDING or BOUND */
    if (!atomic_compare_exchange_strong_explicit(&g->state, &expected, GROUP_BINDING, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        PyErr_Format(PyExc_RuntimeError, "%s %R has already been entered", group_label(g), g);
        return NULL;
    }
    PyObject *wake = FAULT_PY() ? NULL : PyCFunction_NewEx(&group_deliver_def, self, NULL);
    if (wake == NULL || route_bind(&g->route, self) < 0) {
        Py_XDECREF(wake);
        atomic_store_explicit(&g->state, GROUP_UNBOUND, memory_order_release);
        return NULL;
    }
    job_sink_bind(&g->sink, v[0], wake);
    Py_DECREF(wake);
    Py_BEGIN_CRITICAL_SECTION(g);
    Py_XSETREF(g->parent_task, v[1] == Py_None ? NULL : Py_NewRef(v[1]));
    Py_END_CRITICAL_SECTION();
    /* release: publishes the bound sink, route and loop to create_task's acquire (any thread) */
    atomic_store_explicit(&g->state, GROUP_BOUND, memory_order_release);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------------
 * create_task (any thread)
 * ---------------------------------------------------------------------------------------------- */

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

/* Where the new task's future lives: on the calling worker's loop when a task spawns a sibling
 * (*relay = that worker), on the running loop of any other thread that has one (*forward = 1),
 * else on the group's loop. New reference to the loop, or NULL with an exception set. */
static PyObject *future_loop(GroupObject *g, WorkerObject **relay, int *forward)
{
    WorkerObject *here = runner_current();
    if (here != NULL) {
        if (here->loop == g->sink.loop) {
            return Py_NewRef(g->sink.loop); /* the group runs on this worker's own loop */
        }
        *relay = here;
        return Py_NewRef(here->loop);
    }
    PyObject *running = PyObject_CallNoArgs(g->st->peek_running_loop);
    if (running == NULL) {
        return NULL;
    }
    if (running != Py_None && running != g->sink.loop) {
        *forward = 1;
        return running;
    }
    Py_DECREF(running);
    return Py_NewRef(g->sink.loop);
}

static PyObject *group_create_task(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    static const char *const names[] = {"coro", "name", "context", NULL};
    static const args_spec spec = {"create_task", names, 0, 1, 1};
    GroupObject *g = (GroupObject *)self;
    thrasks_state *st = g->st;
    PyObject *v[3];
    if (args_parse(&spec, args, nargs, kwnames, v) < 0) {
        return NULL;
    }
    PyObject *coro = v[0], *name = v[1], *context = v[2];
    if (check_coroutine(st, coro) < 0) {
        return NULL;
    }
    /* acquire: pairs with the release store of BOUND in _bind */
    int state = atomic_load_explicit(&g->state, memory_order_acquire);
    /* relaxed: advisory flags; the asyncio checks they mirror are not synchronising either */
    if (state != GROUP_BOUND) {
        job_close_coro(st, coro);
        if (g->kind == KIND_TASKGROUP) {
            PyErr_Format(PyExc_RuntimeError,
                         "ThreadedTaskGroup must be used in async with statement: %R has not been entered", g);
        }
        else {
            PyErr_Format(PyExc_RuntimeError, "group %R has not been entered", g);
        }
        return NULL;
    }
    const char *problem = NULL;
    if (atomic_load_explicit(&g->exiting, memory_order_relaxed) && job_sink_pending(&g->sink) == 0) {
        problem = "is finished";
    }
    else if (atomic_load_explicit(&g->aborting, memory_order_relaxed) ||
             atomic_load_explicit(&g->failed, memory_order_relaxed)) {
        problem = "is shutting down";
    }
    if (problem) {
        job_close_coro(st, coro);
        PyErr_Format(PyExc_RuntimeError, "%s %R %s", group_label(g), g, problem);
        return NULL;
    }
    if (context != NULL && context != Py_None && !PyContext_CheckExact(context)) {
        job_close_coro(st, coro);
        PyErr_Format(PyExc_TypeError, "context must be a contextvars.Context, got %.100s",
                     Py_TYPE(context)->tp_name);
        return NULL;
    }
    WorkerObject *relay = NULL;
    int forward = 0;
    PyObject *loop = future_loop(g, &relay, &forward);
    PyObject *fut = loop ? bridge_future_new(st, loop, forward) : NULL;
    Py_XDECREF(loop);
    JobObject *job = fut ? job_new(st, coro, context, name, fut, 0) : NULL;
    if (job == NULL) {
        Py_XDECREF(fut);
        job_close_coro(st, coro);
        return NULL;
    }
    bridge_future_attach(fut, job);
    job->relay_worker = (PyObject *)Py_XNewRef(relay);
    job_sink_register(&g->sink, job);
    if (route_submit(&g->route, job) < 0) { /* takes our job reference on success */
        job_sink_unregister(&g->sink, job);
        PyObject *c = job_take_coro(job);
        job_close_coro(st, c);
        Py_XDECREF(c);
        Py_DECREF(job);
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

static PyObject *group_abort(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    GroupObject *g = (GroupObject *)self;
    atomic_store_explicit(&g->aborting, 1, memory_order_relaxed); /* advisory, see create_task */
    if (group_cancel_all(g, 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------------
 * attributes for thrasks/_group.py
 * ---------------------------------------------------------------------------------------------- */

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

static PyObject *group_get_entered(PyObject *self, void *Py_UNUSED(c))
{
    /* acquire: pairs with the release store of BOUND in _bind */
    return PyBool_FromLong(atomic_load_explicit(&((GroupObject *)self)->state, memory_order_acquire) ==
                           GROUP_BOUND);
}

static PyObject *group_get_pending(PyObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromSsize_t(job_sink_pending(&((GroupObject *)self)->sink));
}

static PyObject *group_get_num_threads(PyObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromSize_t(((GroupObject *)self)->route.n);
}

static PyObject *group_get_pool(PyObject *self, void *Py_UNUSED(c))
{
    PyObject *pool = (PyObject *)((GroupObject *)self)->route.pool;
    return Py_NewRef(pool ? pool : Py_None);
}

static PyObject *group_get_loop(PyObject *self, void *Py_UNUSED(c))
{
    GroupObject *g = (GroupObject *)self;
    return get_field(g, &g->sink.loop);
}

static PyObject *group_get_pcr(PyObject *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(((GroupObject *)self)->parent_cancel_requested); /* loop thread only */
}

static int group_set_pcr(PyObject *self, PyObject *value, void *Py_UNUSED(c))
{
    int v = value ? PyObject_IsTrue(value) : 0;
    if (v < 0) {
        return -1;
    }
    ((GroupObject *)self)->parent_cancel_requested = v; /* loop thread only */
    return 0;
}

/* Object fields the Python side reads as None when unset; reads and writes under the group's
 * critical section, so a reader never sees a reference being replaced. */
static PyObject *group_get_obj(PyObject *self, void *closure)
{
    return get_field((GroupObject *)self, (PyObject **)((char *)self + (Py_ssize_t)closure));
}

static int group_set_obj(PyObject *self, PyObject *value, void *closure)
{
    PyObject **slot = (PyObject **)((char *)self + (Py_ssize_t)closure);
    PyObject *old;
    Py_BEGIN_CRITICAL_SECTION(self);
    old = *slot;
    *slot = (value == NULL || value == Py_None) ? NULL : Py_NewRef(value);
    Py_END_CRITICAL_SECTION();
    Py_XDECREF(old); /* outside: its finalizer may run Python code */
    return 0;
}

static PyObject *group_get_errors(PyObject *self, void *Py_UNUSED(c))
{
    GroupObject *g = (GroupObject *)self;
    return get_field(g, &g->errors);
}

static int group_set_errors(PyObject *self, PyObject *value, void *Py_UNUSED(c))
{
    if (value == NULL || !PyList_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "_errors must be a list");
        return -1;
    }
    return group_set_obj(self, value, (void *)offsetof(GroupObject, errors));
}

/* Diagnostics (tests and debugging): undelivered jobs and whether finished ones are waiting. */
static PyObject *group_get_completions_state(PyObject *self, void *Py_UNUSED(c))
{
    GroupObject *g = (GroupObject *)self;
    return Py_BuildValue("(ni)", job_sink_pending(&g->sink), !disp_stack_empty_approx(&g->sink.finished));
}

/* ------------------------------------------------------------------------------------------------
 * the type
 * ---------------------------------------------------------------------------------------------- */

static int group_traverse(PyObject *self, visitproc visit, void *arg)
{
    GroupObject *g = (GroupObject *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(g->module);
    Py_VISIT(g->parent_task);
    Py_VISIT(g->errors);
    Py_VISIT(g->base_error);
    Py_VISIT(g->on_completed_fut);
    if (route_traverse(&g->route, visit, arg) != 0) {
        return -1;
    }
    return job_sink_traverse(&g->sink, visit, arg);
}

static int group_clear(PyObject *self)
{
    GroupObject *g = (GroupObject *)self;
    Py_CLEAR(g->parent_task);
    Py_CLEAR(g->errors);
    Py_CLEAR(g->base_error);
    Py_CLEAR(g->on_completed_fut);
    job_sink_clear(&g->sink);
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
    job_sink_dealloc(&g->sink);
    route_destroy(&g->route);
    Py_CLEAR(g->module);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef group_methods[] = {
    {"create_task", (PyCFunction)(void (*)(void))group_create_task, METH_FASTCALL | METH_KEYWORDS,
     "create_task($self, /, coro, *, name=None, context=None)\n--\n\n"
     "Run the coroutine on a worker thread; return an asyncio.Future of its result, bound to the\n"
     "loop of the calling thread (the group's loop, or a worker's loop when a task spawns a\n"
     "sibling). name= names the worker-side task; the coroutine runs in a copy of context=\n"
     "(default: a copy of the caller's current context)."},
    {"_bind", (PyCFunction)(void (*)(void))group_bind, METH_FASTCALL | METH_KEYWORDS,
     "_bind($self, loop, parent_task, /)\n--\n\nTie the group to the running loop (__aenter__)."},
    {"_abort", group_abort, METH_NOARGS, "_abort($self, /)\n--\n\nCancel every task not yet delivered."},
    {"_deliver", group_deliver, METH_NOARGS,
     "_deliver($self, /)\n--\n\nDeliver the finished tasks (scheduled on the group's loop)."},
    {NULL},
};

static PyMemberDef group_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(GroupObject, weakreflist), Py_READONLY, NULL},
    {NULL},
};

static PyGetSetDef group_getset[] = {
    {"_completions_state", group_get_completions_state, NULL, NULL, NULL},
    {"_entered", group_get_entered, NULL, NULL, NULL},
    {"_exiting", group_get_flag, group_set_flag, NULL, (void *)offsetof(GroupObject, exiting)},
    {"_aborting", group_get_flag, NULL, NULL, (void *)offsetof(GroupObject, aborting)},
    {"_parent_cancel_requested", group_get_pcr, group_set_pcr, NULL, NULL},
    {"_parent_task", group_get_obj, group_set_obj, NULL, (void *)offsetof(GroupObject, parent_task)},
    {"_base_error", group_get_obj, group_set_obj, NULL, (void *)offsetof(GroupObject, base_error)},
    {"_on_completed_fut", group_get_obj, group_set_obj, NULL, (void *)offsetof(GroupObject, on_completed_fut)},
    {"_errors", group_get_errors, group_set_errors, NULL, NULL},
    {"_loop", group_get_loop, NULL, NULL, NULL},
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

PyType_Spec group_spec = {
    .name = "thrasks._core.Group",
    .basicsize = sizeof(GroupObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = group_slots,
};
