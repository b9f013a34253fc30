/* worker.c - the Worker object: making one (its loop, from the pool's loop factory, and its
 * thread), starting and joining its thread, its statistics, and its type. What the thread does is
 * in loop_runner.c. Touches: workers only. */
#include "loop_runner.h"

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
    unsigned long long lingers = atomic_load_explicit(&w->stats.lingers, memory_order_relaxed);
    unsigned long long hits = atomic_load_explicit(&w->stats.linger_hits, memory_order_relaxed);
    long long t0 = atomic_load_explicit(&w->stats.started_ns, memory_order_relaxed);
    double wall = t0 ? (double)(runner_now_ns() - t0) * 1e-9 : 0.0;
    double busy = 0.0;
    struct timespec ts;
    /* acquire: pairs with the release store in worker_run (cpu_clock written) */
    if (atomic_load_explicit(&w->stats.cpu_clock_ok, memory_order_acquire) && !runner_is_dead(w) &&
        clock_gettime(w->stats.cpu_clock, &ts) == 0) {
        busy = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    unsigned long long done = finished + failed + cancelled;
    return Py_BuildValue("{s:N,s:K,s:K,s:K,s:K,s:K,s:l,s:l,s:d,s:d,s:K,s:K,s:O}", "thread", Py_NewRef(w->name),
                         "started", started, "finished", finished, "failed", failed, "cancelled",
                         cancelled, "running", started >= done ? started - done : 0ULL, "inbox",
                         atomic_load_explicit(&w->inbox_len, memory_order_relaxed), "shared_queue",
                         atomic_load_explicit(&w->shared_len, memory_order_relaxed), "busy_seconds", busy,
                         "idle_seconds", wall > busy ? wall - busy : 0.0, "lingers", lingers,
                         "linger_hits", hits, "alive",
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
    Py_VISIT(w->relook_cb);
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
    Py_CLEAR(w->relook_cb);
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
        runner_die(w, NULL);
    }
    worker_clear(op);
    wakefd_close(&w->wake);
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
                         int linger, unsigned long fork_generation)
{
    if (FAULT_PY()) {
        return NULL;
    }
    WorkerObject *w = PyObject_GC_New(WorkerObject, st->worker_type);
    if (w == NULL) {
        return NULL;
    }
    memset((char *)w + sizeof(PyObject), 0, sizeof(WorkerObject) - sizeof(PyObject));
    wakefd_init(&w->wake);
    w->st = st;
    w->module = Py_NewRef(module);
    w->index = index;
    w->fork_generation = fork_generation;
    w->linger_off = !linger;
    disp_stack_init(&w->starts);
    disp_stack_init(&w->cancels);
    disp_stack_init(&w->serves);
    disp_stack_init(&w->relays);
    PyObject_GC_Track(w);
    if (FAULT_PY() || (wakefd_open(&w->wake) < 0 && PyErr_SetFromErrno(PyExc_OSError) == NULL)) {
        goto fail;
    }
    PyObject *self = (PyObject *)w;
    if (FAULT_PY()) {
        goto fail;
    }
    w->running = PyDict_New();
    w->name = PyUnicode_FromFormat("thrasks-worker-%zu", index);
    w->drain_cb = PyCFunction_NewEx(&runner_drain_def, self, NULL);
    w->relook_cb = PyCFunction_NewEx(&runner_relook_def, self, NULL);
    w->done_cb = PyCFunction_NewEx(&runner_task_done_def, self, NULL);
    if (!w->running || !w->name || !w->drain_cb || !w->relook_cb || !w->done_cb) {
        goto fail;
    }
    /* The loop is made here and run by the thread: creating a loop is thread-agnostic. */
    w->loop = make_loop(st, loop_factory);
    if (w->loop == NULL) {
        goto fail;
    }
    PyObject *target = FAULT_PY() ? NULL : PyCFunction_NewEx(&runner_run_def, self, NULL);
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
        runner_die(w, NULL);
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
