/* loop_runner.c - worker threads running asyncio event loops, and the pool that owns them.
 * Protocols and ownership are described in loop_runner.h. */
#include "loop_runner.h"
#include "future_bridge.h"
#include "atomics.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#define INBOX_CAPACITY 256

/* ------------------------------------------------------------------------------------------------
 * wake-up fd: an eventfd on Linux, a pipe elsewhere. Written by any thread, read by the worker.
 * ---------------------------------------------------------------------------------------------- */

static int wakefd_open(WorkerObject *w)
{
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
 * messages
 * ---------------------------------------------------------------------------------------------- */

/* Resolve a message no worker will handle (its worker is dead or stopping). Takes its reference. */
static void orphan_message(thrasks_state *st, void *msg)
{
    void *p = msg_ptr(msg);
    switch (msg_tag(msg)) {
    case MSG_START:
        bridge_orphan_job(st, (PyObject *)p);
        break;
    case MSG_CANCEL:
        Py_DECREF((PyObject *)p);
        break;
    case MSG_SERVE:
        bridge_orphan_serve(st, ((serve_token *)p)->group);
        break;
    default: /* MSG_STOP carries nothing */
        break;
    }
}

static void drain_orphans(WorkerObject *w)
{
    void *msg;
    while ((msg = disp_inbox_pop(&w->inbox)) != NULL) {
        orphan_message(w->st, msg);
    }
}

int runner_post(WorkerObject *w, void *msg)
{
    int r = disp_inbox_push(&w->inbox, msg);
    if (r < 0) {
        PyErr_NoMemory();
        return -1;
    }
    if (r == 1) {
        wakefd_signal(w);
    }
    /* seq_cst fence: pairs with the fence in worker_die. Either we see dead == 1 here, or the
     * worker's last drain (after its fence) sees the message we pushed. */
    THRASKS_FENCE_SEQ_CST();
    if (atomic_load_explicit(&w->dead, memory_order_relaxed)) {
        drain_orphans(w);
    }
    return 0;
}

/* Worker thread: call `task.cancel(msg)`; errors are reported, not raised (we are in a callback). */
static void cancel_task(thrasks_state *st, PyObject *task, PyObject *msg)
{
    PyObject *r = msg ? PyObject_CallMethodOneArg(task, st->s_cancel, msg)
                      : PyObject_CallMethodNoArgs(task, st->s_cancel);
    if (r == NULL) {
        PyErr_WriteUnraisable(task);
    }
    Py_XDECREF(r);
}

/* Worker thread: `task.cancel(msg)` from the next loop iteration, after the task's first step
 * (scheduled when it was created) has run. */
static void cancel_task_soon(WorkerObject *w, PyObject *task, PyObject *msg)
{
    PyObject *cancel = PyObject_GetAttr(task, w->st->s_cancel);
    PyObject *args[3] = {w->loop, cancel, msg};
    PyObject *r = cancel ? PyObject_VectorcallMethod(w->st->s_call_soon, args,
                                                     (msg ? 3 : 2) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL)
                         : NULL;
    if (r == NULL) {
        PyErr_WriteUnraisable(task);
        cancel_task(w->st, task, msg);
    }
    Py_XDECREF(r);
    Py_XDECREF(cancel);
}

/* Worker thread: start the job's coroutine as a Task on this loop. Takes the message's job ref. */
static void start_job(WorkerObject *w, PyObject *job)
{
    thrasks_state *st = w->st;
    JobData *jd = job_data(st, job);
    if (w->stopping) {
        bridge_orphan_job(st, job);
        return;
    }
    /* coro was written by the creator before the push; the inbox's release/acquire hands it over. */
    PyObject *coro = jd->coro;
    jd->coro = NULL;
    PyObject *args[5] = {NULL, coro, w->loop, jd->name ? jd->name : Py_None, jd->context};
    PyObject *task = PyObject_Vectorcall(st->task_type, args + 1,
                                         1 | PY_VECTORCALL_ARGUMENTS_OFFSET, st->kw_task);
    Py_DECREF(coro);
    if (task == NULL) {
        bridge_complete(st, job, OUTCOME_EXCEPTION, PyErr_GetRaisedException());
        return;
    }
    /* The running dict owns a job reference until the task is done (taken from the message). */
    if (PyDict_SetItem(w->running, task, job) < 0) {
        goto fail;
    }
    PyObject *cb_args[4] = {NULL, task, w->done_cb, jd->context};
    PyObject *r = PyObject_VectorcallMethod(st->s_add_done_callback, cb_args + 1,
                                            2 | PY_VECTORCALL_ARGUMENTS_OFFSET, st->kw_context);
    if (r == NULL) {
        (void)PyDict_DelItem(w->running, task);
        goto fail;
    }
    Py_DECREF(r);
    jd->task = task; /* worker thread only from here on */
    Py_INCREF(w);
    jd->worker = w;
    int expected = JOB_PENDING;
    /* acq_rel: release publishes task/worker to a canceller that acquires RUNNING (job_request_cancel);
     * acquire on failure makes the cancel message written before CANCEL_PENDING visible. */
    if (!atomic_compare_exchange_strong_explicit(&jd->state, &expected, JOB_RUNNING,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        PyObject *msg = atomic_load_explicit(&jd->cancel_msg, memory_order_acquire);
        /* relaxed: ordered by the acquire on the failed CAS (the flag is set before CANCEL_PENDING) */
        if (atomic_load_explicit(&jd->cancel_deferred, memory_order_relaxed)) {
            cancel_task_soon(w, task, msg);
        }
        else {
            cancel_task(st, task, msg);
        }
        /* release: pairs with the acquire load in job_request_cancel (task/worker visible). */
        atomic_store_explicit(&jd->state, JOB_RUNNING, memory_order_release);
    }
    Py_DECREF(job);
    return;
fail:
    /* The task exists but cannot be tracked: cancel it so it does not run unobserved. */
    {
        PyObject *exc = PyErr_GetRaisedException();
        cancel_task(st, task, NULL);
        Py_DECREF(task);
        bridge_complete(st, job, OUTCOME_EXCEPTION, exc);
    }
}

static int schedule_serve(WorkerObject *w)
{
    if (w->serve_scheduled) {
        return 0;
    }
    PyObject *r = PyObject_CallMethodOneArg(w->loop, w->st->s_call_soon, w->serve_cb);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    w->serve_scheduled = 1;
    return 0;
}

/* Worker thread: MSG_SERVE. Takes the message's group reference. */
static void start_serving(WorkerObject *w, serve_token *tok)
{
    GroupObject *g = tok->group;
    if (w->stopping) {
        bridge_orphan_serve(w->st, g);
        return;
    }
    for (size_t i = 0; i < w->n_serving; i++) {
        if (w->serving[i].group == (PyObject *)g && w->serving[i].slot == tok->slot) {
            Py_DECREF(g); /* already serving this slot: the notification was spurious */
            return;
        }
    }
    if (w->n_serving == w->cap_serving) {
        size_t cap = w->cap_serving ? 2 * w->cap_serving : 8;
        void *p = PyMem_Realloc(w->serving, cap * sizeof *w->serving);
        if (p == NULL) {
            bridge_orphan_serve(w->st, g);
            PyErr_NoMemory();
            PyErr_WriteUnraisable((PyObject *)w);
            return;
        }
        w->serving = p;
        w->cap_serving = cap;
    }
    w->serving[w->n_serving].group = (PyObject *)g; /* keeps the message's reference */
    w->serving[w->n_serving].slot = tok->slot;
    w->n_serving++;
    if (schedule_serve(w) < 0) {
        PyErr_WriteUnraisable((PyObject *)w);
    }
}

static void stop_serving_all(WorkerObject *w)
{
    while (w->n_serving > 0) {
        w->n_serving--;
        bridge_orphan_serve(w->st, (GroupObject *)w->serving[w->n_serving].group);
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

/* Worker thread: MSG_STOP. Cancel what runs; the loop stops when the last task has finished. */
static void begin_stop(WorkerObject *w)
{
    if (w->stopping) {
        return;
    }
    w->stopping = 1;
    stop_serving_all(w);
    PyObject *tasks = PyDict_Keys(w->running);
    if (tasks == NULL) {
        PyErr_WriteUnraisable((PyObject *)w);
    }
    else {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tasks); i++) {
            cancel_task(w->st, PyList_GET_ITEM(tasks, i), NULL);
        }
        Py_DECREF(tasks);
    }
    if (PyDict_GET_SIZE(w->running) == 0) {
        stop_loop(w);
    }
}

static void handle_message(WorkerObject *w, void *msg)
{
    void *p = msg_ptr(msg);
    switch (msg_tag(msg)) {
    case MSG_START:
        start_job(w, (PyObject *)p);
        break;
    case MSG_CANCEL: {
        JobData *jd = job_data(w->st, (PyObject *)p);
        if (jd->task != NULL) { /* NULL once done: task is a worker-thread-only field */
            cancel_task(w->st, jd->task, atomic_load_explicit(&jd->cancel_msg, memory_order_acquire));
        }
        Py_DECREF((PyObject *)p);
        break;
    }
    case MSG_SERVE:
        start_serving(w, (serve_token *)p);
        break;
    default:
        begin_stop(w);
        break;
    }
}

/* ------------------------------------------------------------------------------------------------
 * Worker methods (all run on the worker's own thread)
 * ---------------------------------------------------------------------------------------------- */

static PyObject *worker_drain(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    WorkerObject *w = (WorkerObject *)op;
    /* Consume the fd BEFORE clearing the flag: a producer whose exchange reads 0 after our
     * clear writes the fd after this read, so we are woken again. The other order loses that
     * wake-up for good (the fd is read, the flag stays 1, later producers never signal). */
    wakefd_consume(w);
    disp_inbox_begin_drain(&w->inbox);
    void *msg;
    while ((msg = disp_inbox_pop(&w->inbox)) != NULL) {
        handle_message(w, msg);
    }
    Py_RETURN_NONE;
}

/* QUEUE mode: take one job from each group served, then yield to the loop (call_soon) so the jobs
 * just started, and everything else ready, run before more are taken. A worker whose loop is busy
 * (blocked or computing) therefore leaves the shared queue to the others. */
static PyObject *worker_serve(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    WorkerObject *w = (WorkerObject *)op;
    w->serve_scheduled = 0;
    for (size_t i = w->n_serving; i-- > 0;) {
        GroupObject *g = (GroupObject *)w->serving[i].group;
        void *item;
        if (disp_shared_pop(&g->shared, w->serving[i].slot, &item) == DISP_ITEM) {
            start_job(w, (PyObject *)item);
        }
        else { /* parked: a producer will send MSG_SERVE again */
            w->serving[i] = w->serving[--w->n_serving];
            Py_DECREF(g);
        }
    }
    if (w->n_serving > 0 && schedule_serve(w) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Done callback of every task this worker runs. */
static PyObject *worker_task_done(PyObject *op, PyObject *task)
{
    WorkerObject *w = (WorkerObject *)op;
    thrasks_state *st = w->st;
    PyObject *job = NULL;
    if (PyDict_Pop(w->running, task, &job) <= 0) {
        return NULL; /* not ours (cannot happen) or error */
    }
    JobData *jd = job_data(st, job);
    /* One call in the common case: result() returns the value, or raises the task's exception
     * (which also marks it retrieved: the caller's side reports it) or CancelledError. */
    int kind = OUTCOME_RESULT;
    PyObject *r = NULL;
    PyObject *outcome = PyObject_CallMethodNoArgs(task, st->s_result);
    if (outcome == NULL) {
        kind = OUTCOME_EXCEPTION;
        outcome = PyErr_GetRaisedException();
        if (PyErr_GivenExceptionMatches(outcome, st->cancelled_error)) {
            r = PyObject_CallMethodNoArgs(task, st->s_cancelled);
            if (r == Py_True) {
                kind = OUTCOME_CANCELLED;
                Py_CLEAR(outcome);
            }
            else if (r == NULL) {
                PyErr_WriteUnraisable(task);
            }
        }
    }
    Py_XDECREF(r);
    Py_CLEAR(jd->task);
    /* release: pairs with the acquire load in job_request_cancel (no MSG_CANCEL needed any more). */
    atomic_store_explicit(&jd->state, JOB_DONE, memory_order_release);
    bridge_complete(st, job, kind, outcome);
    if (w->stopping && PyDict_GET_SIZE(w->running) == 0) {
        stop_loop(w);
    }
    Py_RETURN_NONE;
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

static void worker_die(WorkerObject *w)
{
    atomic_store_explicit(&w->dead, 1, memory_order_relaxed);
    /* seq_cst fence: pairs with the fence in runner_post (see loop_runner.h). */
    THRASKS_FENCE_SEQ_CST();
    drain_orphans(w);
}

/* The thread body: threading.Thread(target=worker._run). */
static PyObject *worker_run(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    WorkerObject *w = (WorkerObject *)op;
    thrasks_state *st = w->st;
    PyObject *fd = PyLong_FromLong(w->read_fd);
    PyObject *r = fd ? PyObject_CallMethodObjArgs(w->loop, st->s_add_reader, fd, w->drain_cb, NULL) : NULL;
    if (r == NULL) {
        Py_XDECREF(fd);
        worker_die(w);
        return NULL;
    }
    Py_DECREF(r);
    for (;;) {
        r = PyObject_CallMethodNoArgs(w->loop, st->s_run_forever);
        if (r != NULL) {
            Py_DECREF(r);
        }
        else if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
                 PyErr_ExceptionMatches(PyExc_SystemExit)) {
            /* A task raised it: asyncio set it on the task (its done callback reports it to the
             * caller, like asyncio.TaskGroup re-raises it) and re-raised it out of the loop. */
            PyErr_Clear();
            continue;
        }
        else {
            PyErr_WriteUnraisable((PyObject *)w);
            break;
        }
        if (w->stopping && PyDict_GET_SIZE(w->running) == 0) {
            break;
        }
        /* Someone else stopped the loop (a task called loop.stop()): keep serving. */
    }
    r = PyObject_CallMethodOneArg(w->loop, st->s_remove_reader, fd);
    Py_XDECREF(r);
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)w);
    }
    Py_DECREF(fd);
    run_cleanup(w, st->s_shutdown_asyncgens);
    run_cleanup(w, st->s_shutdown_default_executor);
    worker_die(w);
    r = PyObject_CallMethodNoArgs(w->loop, st->s_close);
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)w);
    }
    Py_XDECREF(r);
    Py_RETURN_NONE;
}

static PyMethodDef worker_drain_def = {"_drain", worker_drain, METH_NOARGS, NULL};
static PyMethodDef worker_serve_def = {"_serve", worker_serve, METH_NOARGS, NULL};
static PyMethodDef worker_done_def = {"_task_done", worker_task_done, METH_O, NULL};
static PyMethodDef worker_run_def = {"_run", worker_run, METH_NOARGS, NULL};

static int worker_traverse(PyObject *op, visitproc visit, void *arg)
{
    WorkerObject *w = (WorkerObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(w->module);
    Py_VISIT(w->loop);
    Py_VISIT(w->thread);
    Py_VISIT(w->drain_cb);
    Py_VISIT(w->serve_cb);
    Py_VISIT(w->done_cb);
    Py_VISIT(w->running);
    for (size_t i = 0; i < w->n_serving; i++) {
        Py_VISIT(w->serving[i].group);
    }
    return 0;
}

static int worker_clear(PyObject *op)
{
    WorkerObject *w = (WorkerObject *)op;
    Py_CLEAR(w->drain_cb);
    Py_CLEAR(w->serve_cb);
    Py_CLEAR(w->done_cb);
    Py_CLEAR(w->thread);
    Py_CLEAR(w->running);
    while (w->n_serving > 0) {
        w->n_serving--;
        Py_CLEAR(w->serving[w->n_serving].group);
    }
    return 0;
}

static void worker_dealloc(PyObject *op)
{
    WorkerObject *w = (WorkerObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    worker_clear(op);
    if (w->inbox_inited) {
        /* Only reachable once the thread has finished (the thread holds a reference): anything
         * still queued was posted after the final drain, and runner_post resolved it already. */
        disp_inbox_destroy(&w->inbox);
    }
    PyMem_Free(w->serving);
    wakefd_close(w);
    Py_CLEAR(w->loop);
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

/* Diagnostics (tests and debugging): (queued messages, wake pending). Approximate by nature. */
static PyObject *worker_get_inbox_state(PyObject *op, void *Py_UNUSED(c))
{
    WorkerObject *w = (WorkerObject *)op;
    return Py_BuildValue("(ni)", (Py_ssize_t)mpmc_size_approx(&w->inbox.q),
                         atomic_load_explicit(&w->inbox.wake_pending, memory_order_relaxed));
}

static PyGetSetDef worker_getset[] = {
    {"_inbox_state", worker_get_inbox_state, NULL, NULL, NULL},
    {"loop", worker_get_loop, NULL, "The worker's event loop.", NULL},
    {"thread", worker_get_thread, NULL, "The threading.Thread running the worker.", NULL},
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

/* Create worker `index` with its loop and start its thread. Called with pool->lock held. */
static WorkerObject *worker_start(PoolObject *pool, size_t index)
{
    thrasks_state *st = pool->st;
    WorkerObject *w = PyObject_GC_New(WorkerObject, st->worker_type);
    if (w == NULL) {
        return NULL;
    }
    memset((char *)w + sizeof(PyObject), 0, sizeof(WorkerObject) - sizeof(PyObject));
    w->read_fd = w->write_fd = -1;
    w->st = st;
    w->module = Py_NewRef(pool->module);
    w->index = index;
    w->fork_generation = pool->fork_generation;
    PyObject_GC_Track(w);
    if (disp_inbox_init(&w->inbox, INBOX_CAPACITY) < 0) {
        PyErr_NoMemory();
        goto fail;
    }
    w->inbox_inited = 1;
    if (wakefd_open(w) < 0) {
        goto fail;
    }
    PyObject *self = (PyObject *)w;
    w->running = PyDict_New();
    w->drain_cb = PyCFunction_NewEx(&worker_drain_def, self, NULL);
    w->serve_cb = PyCFunction_NewEx(&worker_serve_def, self, NULL);
    w->done_cb = PyCFunction_NewEx(&worker_done_def, self, NULL);
    if (!w->running || !w->drain_cb || !w->serve_cb || !w->done_cb) {
        goto fail;
    }
    /* The loop is made here and run by the thread: creating a loop is thread-agnostic. */
    w->loop = PyObject_CallNoArgs(st->new_event_loop);
    if (w->loop == NULL) {
        goto fail;
    }
    PyObject *target = PyCFunction_NewEx(&worker_run_def, self, NULL);
    PyObject *name = PyUnicode_FromFormat("thrasks-worker-%zu", index);
    PyObject *kwnames = PyTuple_Pack(3, st->s_target, st->s_name, st->s_daemon);
    if (!target || !name || !kwnames) {
        Py_XDECREF(target);
        Py_XDECREF(name);
        Py_XDECREF(kwnames);
        goto fail;
    }
    /* daemon=True only so that a pool nobody shut down cannot hang interpreter exit; thrasks shuts
     * every pool down (and joins its threads) from threading's atexit hook before that matters. */
    PyObject *args[4] = {NULL, target, name, Py_True};
    w->thread = PyObject_Vectorcall(st->thread_type, args + 1, PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames);
    Py_DECREF(target);
    Py_DECREF(name);
    Py_DECREF(kwnames);
    if (w->thread == NULL) {
        goto fail;
    }
    PyObject *r = PyObject_CallMethodNoArgs(w->thread, st->s_start);
    if (r == NULL) {
        goto fail;
    }
    Py_DECREF(r);
    return w;
fail:
    atomic_store_explicit(&w->dead, 1, memory_order_relaxed);
    if (w->loop) {
        PyObject *exc = PyErr_GetRaisedException();
        PyObject *r2 = PyObject_CallMethodNoArgs(w->loop, st->s_close);
        Py_XDECREF(r2);
        PyErr_SetRaisedException(exc);
    }
    Py_DECREF(w);
    return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Pool
 * ---------------------------------------------------------------------------------------------- */

int runner_pool_check(PoolObject *pool)
{
    if (pool->fork_generation != atomic_load_explicit(&pool->st->fork_generation, memory_order_relaxed)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this WorkerPool was created before os.fork() and its threads do not exist in "
                        "the child process; create a new WorkerPool in the child");
        return -1;
    }
    /* acquire: pairs with the release store in pool_shutdown */
    if (atomic_load_explicit(&pool->closed, memory_order_acquire)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this WorkerPool has been shut down; create a new WorkerPool (or use the "
                        "default pool by passing pool=None)");
        return -1;
    }
    return 0;
}

int runner_check_num_threads(PyObject *obj, size_t *n)
{
    if (!PyLong_Check(obj) || PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "num_threads must be an int, got %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t v = PyLong_AsSsize_t(obj);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < 1) {
        PyErr_Format(PyExc_ValueError, "num_threads must be >= 1, got %zd", v);
        return -1;
    }
    if (v > THRASKS_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "num_threads must be <= %d, got %zd", THRASKS_MAX_THREADS, v);
        return -1;
    }
    *n = (size_t)v;
    return 0;
}

int runner_pool_ensure(PoolObject *pool, size_t n)
{
    assert(n <= THRASKS_MAX_THREADS); /* callers validate with runner_check_num_threads */
    if (runner_pool_check(pool) < 0) {
        return -1;
    }
    /* acquire: pairs with the release store below; workers[0..size) are then fully built. */
    if (atomic_load_explicit(&pool->size, memory_order_acquire) >= n) {
        return 0;
    }
    int rc = 0;
    PyMutex_Lock(&pool->lock);
    if (atomic_load_explicit(&pool->closed, memory_order_relaxed)) { /* closed is written under lock */
        rc = runner_pool_check(pool);
    }
    size_t size = atomic_load_explicit(&pool->size, memory_order_relaxed); /* only written under lock */
    while (rc == 0 && size < n) {
        WorkerObject *w = worker_start(pool, size);
        if (w == NULL) {
            rc = -1;
            break;
        }
        pool->workers[size++] = w;
        /* release: publishes workers[size-1] to the acquire loads in runner_pool_ensure/group code */
        atomic_store_explicit(&pool->size, size, memory_order_release);
    }
    PyMutex_Unlock(&pool->lock);
    return rc;
}

static PyObject *pool_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"num_threads", NULL};
    PyObject *num = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:WorkerPool", kwlist, &num)) {
        return NULL;
    }
    size_t n = 0;
    if (num != Py_None && runner_check_num_threads(num, &n) < 0) {
        return NULL;
    }
    thrasks_state *st = thrasks_state_of_type(type);
    if (st == NULL) {
        return NULL;
    }
    PoolObject *pool = (PoolObject *)type->tp_alloc(type, 0);
    if (pool == NULL) {
        return NULL;
    }
    pool->st = st;
    pool->module = Py_NewRef(thrasks_module_of_type(type));
    pool->fork_generation = atomic_load_explicit(&st->fork_generation, memory_order_relaxed);
    pool->workers = PyMem_Calloc(THRASKS_MAX_THREADS, sizeof(WorkerObject *));
    if (pool->workers == NULL) {
        Py_DECREF(pool);
        return PyErr_NoMemory();
    }
    if (n > 0 && runner_pool_ensure(pool, n) < 0) {
        Py_DECREF(pool);
        return NULL;
    }
    return (PyObject *)pool;
}

/* Post MSG_STOP to every worker; optionally join their threads (not the calling thread's own). */
static int pool_shutdown_impl(PoolObject *pool, int wait)
{
    thrasks_state *st = pool->st;
    if (pool->fork_generation != atomic_load_explicit(&st->fork_generation, memory_order_relaxed)) {
        return 0; /* the threads belong to the parent process */
    }
    PyMutex_Lock(&pool->lock);
    int was_closed = atomic_load_explicit(&pool->closed, memory_order_relaxed);
    /* release: pairs with the acquire load in runner_pool_check */
    atomic_store_explicit(&pool->closed, 1, memory_order_release);
    size_t size = atomic_load_explicit(&pool->size, memory_order_relaxed);
    PyMutex_Unlock(&pool->lock);
    if (!was_closed) {
        for (size_t i = 0; i < size; i++) {
            if (runner_post(pool->workers[i], msg_make(NULL, MSG_STOP)) < 0) {
                return -1;
            }
        }
    }
    if (!wait) {
        return 0;
    }
    for (size_t i = 0; i < size; i++) {
        WorkerObject *w = pool->workers[i];
        PyObject *ident = PyObject_GetAttrString(w->thread, "ident");
        if (ident == NULL) {
            return -1;
        }
        unsigned long tid = PyLong_AsUnsignedLong(ident);
        Py_DECREF(ident);
        if (tid == PyThread_get_thread_ident()) {
            continue; /* a worker shutting down its own pool: it stops after this callback */
        }
        PyObject *r = PyObject_CallMethodNoArgs(w->thread, st->s_join);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    return 0;
}

static PyObject *pool_shutdown(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"wait", NULL};
    int wait = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:shutdown", kwlist, &wait)) {
        return NULL;
    }
    if (pool_shutdown_impl((PoolObject *)op, wait) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *pool_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (runner_pool_check((PoolObject *)op) < 0) {
        return NULL;
    }
    return Py_NewRef(op);
}

static PyObject *pool_exit(PyObject *op, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(n))
{
    if (pool_shutdown_impl((PoolObject *)op, 1) < 0) {
        return NULL;
    }
    Py_RETURN_FALSE;
}

static PyObject *pool_ensure_meth(PyObject *op, PyObject *arg)
{
    size_t n;
    if (runner_check_num_threads(arg, &n) < 0 || runner_pool_ensure((PoolObject *)op, n) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *pool_get_size(PyObject *op, void *Py_UNUSED(c))
{
    return PyLong_FromSize_t(atomic_load_explicit(&((PoolObject *)op)->size, memory_order_acquire));
}

static PyObject *pool_get_closed(PyObject *op, void *Py_UNUSED(c))
{
    return PyBool_FromLong(atomic_load_explicit(&((PoolObject *)op)->closed, memory_order_acquire));
}

static PyObject *pool_get_threads(PyObject *op, void *Py_UNUSED(c))
{
    PoolObject *pool = (PoolObject *)op;
    size_t size = atomic_load_explicit(&pool->size, memory_order_acquire); /* pairs with the release in ensure */
    PyObject *list = PyList_New((Py_ssize_t)size);
    for (size_t i = 0; list && i < size; i++) {
        PyList_SET_ITEM(list, (Py_ssize_t)i, Py_NewRef(pool->workers[i]->thread));
    }
    return list;
}

static PyObject *pool_get_workers(PyObject *op, void *Py_UNUSED(c))
{
    PoolObject *pool = (PoolObject *)op;
    size_t size = atomic_load_explicit(&pool->size, memory_order_acquire); /* pairs with the release in ensure */
    PyObject *list = PyList_New((Py_ssize_t)size);
    for (size_t i = 0; list && i < size; i++) {
        PyList_SET_ITEM(list, (Py_ssize_t)i, Py_NewRef(pool->workers[i]));
    }
    return list;
}

static int pool_traverse(PyObject *op, visitproc visit, void *arg)
{
    PoolObject *pool = (PoolObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(pool->module);
    size_t size = atomic_load_explicit(&pool->size, memory_order_relaxed); /* stop-the-world GC */
    for (size_t i = 0; i < size; i++) {
        Py_VISIT(pool->workers[i]);
    }
    return 0;
}

static void pool_dealloc(PyObject *op)
{
    PoolObject *pool = (PoolObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (pool->weakreflist) {
        PyObject_ClearWeakRefs(op);
    }
    if (pool->workers) {
        /* Nobody shut the pool down: let its threads finish on their own (no join here). */
        PyObject *exc = PyErr_GetRaisedException();
        if (pool_shutdown_impl(pool, 0) < 0) {
            PyErr_WriteUnraisable(op);
        }
        PyErr_SetRaisedException(exc);
        size_t size = atomic_load_explicit(&pool->size, memory_order_relaxed);
        for (size_t i = 0; i < size; i++) {
            Py_CLEAR(pool->workers[i]);
        }
        PyMem_Free(pool->workers);
    }
    Py_CLEAR(pool->module);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef pool_methods[] = {
    {"shutdown", (PyCFunction)(void (*)(void))pool_shutdown, METH_VARARGS | METH_KEYWORDS,
     "shutdown($self, /, wait=True)\n--\n\nStop the workers: their running tasks are cancelled, their loops "
     "closed. With wait=True, join their threads."},
    {"ensure", pool_ensure_meth, METH_O,
     "ensure($self, num_threads, /)\n--\n\nStart workers until the pool has at least num_threads."},
    {"__enter__", pool_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))pool_exit, METH_FASTCALL, NULL},
    {NULL},
};

static PyGetSetDef pool_getset[] = {
    {"size", pool_get_size, NULL, "Number of worker threads started.", NULL},
    {"closed", pool_get_closed, NULL, "True once shutdown() was called.", NULL},
    {"threads", pool_get_threads, NULL, "The workers' threading.Thread objects.", NULL},
    {"_workers", pool_get_workers, NULL, NULL, NULL},
    {NULL},
};

static PyMemberDef pool_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(PoolObject, weakreflist), Py_READONLY, NULL},
    {NULL},
};

static PyType_Slot pool_slots[] = {
    {Py_tp_doc,
     "WorkerPool(num_threads=None)\n--\n\n"
     "A pool of worker threads, each running its own asyncio event loop.\n\n"
     "Groups and threaded_gather use the shared default pool unless given pool=. A pool grows on\n"
     "demand to the largest num_threads asked of it and is reused by every group; num_threads here\n"
     "starts that many workers up front. Use it as a context manager to shut it down on exit."},
    {Py_tp_new, pool_new},
    {Py_tp_traverse, pool_traverse},
    {Py_tp_dealloc, pool_dealloc},
    {Py_tp_methods, pool_methods},
    {Py_tp_getset, pool_getset},
    {Py_tp_members, pool_members},
    {0, NULL},
};

PyType_Spec runner_pool_spec = {
    .name = "thrasks._core.WorkerPool",
    .basicsize = sizeof(PoolObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = pool_slots,
};
