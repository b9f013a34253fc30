/* gather.c - threaded_gather of coroutines: one GatheringFuture owns the jobs (contracts in
 * gather.h). Touches: its own future type, jobs (job.h), routes (pool.h), futures' helpers
 * (future_bridge.h). */
#include "gather.h"
#include "args.h"

/* The data after asyncio.Future's own fields. The outer future IS the owner of its jobs: it
 * embeds their sink and route, so one gather is one object plus one job per coroutine. */
typedef struct gather_data {
    thrasks_state *st;             /* borrowed: the type keeps the module alive */
    job_sink sink;
    pool_route route;
    PyObject *results;             /* strong until settled: one slot per coroutine */
    PyObject *dups;                /* strong or NULL: (slot, first slot) of a coroutine given twice */
    PyObject *cancel_msg;          /* strong or NULL: the first message given to cancel() */
    PyObject *iter;                /* strong or NULL: the await iterator behind send/throw/close */
    int return_exceptions;
    int cancel_requested;          /* loop thread: cancel() reached a child (asyncio's rule) */
    int settled;                   /* loop thread: the outer future has its outcome */
} gather_data;

static gather_data *gdata(PyObject *outer)
{
    /* GatheringFuture is final (not a base type), so its data sits at one offset */
    return (gather_data *)PyObject_GetTypeData(outer, Py_TYPE(outer));
}

/* Settle the outer future with `value` (a new reference, taken over) as its result or exception. */
static int gather_settle(PyObject *outer, PyObject *value, int is_exception)
{
    gather_data *d = gdata(outer);
    thrasks_state *st = d->st;
    if (value == NULL) {
        return -1;
    }
    int done = bridge_is_done(st, outer);
    PyObject *r = done == 0 ? bridge_call(is_exception ? st->base_set_exception : st->base_set_result,
                                          outer, value)
                            : NULL;
    Py_DECREF(value);
    if (done < 0 || (done == 0 && r == NULL)) {
        return -1;
    }
    Py_XDECREF(r);
    d->settled = 1;
    Py_CLEAR(d->results);
    Py_CLEAR(d->dups);
    return 0;
}

/* asyncio.gather's _done_callback, for one delivered child. */
static int gather_deliver(PyObject *outer, JobObject *job)
{
    gather_data *d = gdata(outer);
    thrasks_state *st = d->st;
    if (d->settled) {
        return 0; /* like asyncio: later outcomes are dropped (exceptions count as retrieved) */
    }
    if (!d->return_exceptions && job->outcome_kind != OUTCOME_RESULT) {
        PyObject *exc = job->outcome_kind == OUTCOME_CANCELLED ? bridge_cancelled_error(st, job_cancel_msg(job))
                                                               : Py_NewRef(job->outcome);
        return gather_settle(outer, exc, 1);
    }
    PyObject *res = job->outcome_kind == OUTCOME_CANCELLED ? bridge_cancelled_error(st, job_cancel_msg(job))
                                                           : Py_NewRef(job->outcome);
    if (res == NULL) {
        return -1;
    }
    PyList_SetItem(d->results, job->index, res); /* steals res; index < len by construction */
    if (job_sink_pending(&d->sink) != 1) {       /* this job still counts: the last one settles */
        return 0;
    }
    if (d->cancel_requested) {
        return gather_settle(outer, bridge_cancelled_error(st, d->cancel_msg), 1);
    }
    /* a coroutine given twice ran once (asyncio.gather): its result fills every slot it had */
    for (Py_ssize_t i = 0; d->dups != NULL && i < PyList_GET_SIZE(d->dups); i++) {
        PyObject *pair = PyList_GET_ITEM(d->dups, i);
        Py_ssize_t slot = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 0));
        Py_ssize_t first = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 1));
        PyList_SetItem(d->results, slot, Py_NewRef(PyList_GET_ITEM(d->results, first)));
    }
    return gather_settle(outer, Py_NewRef(d->results), 0);
}

static const job_sink_ops gather_ops = {gather_deliver, NULL, NULL};

static PyObject *gathering_deliver(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return job_sink_drain(&gdata(self)->sink);
}

static PyMethodDef gathering_deliver_def = {"_deliver", gathering_deliver, METH_NOARGS, NULL};

/* GatheringFuture.cancel(msg=None): like asyncio's _GatheringFuture.cancel. */
static PyObject *gathering_cancel(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"msg", NULL};
    static const args_spec spec = {"cancel", names, 0, 1, 0};
    PyObject *v[1];
    if (args_parse(&spec, args, nargs, kwnames, v) < 0) {
        return NULL;
    }
    gather_data *d = gdata(self);
    int done = bridge_is_done(d->st, self);
    if (done != 0) {
        return done < 0 ? NULL : Py_NewRef(Py_False);
    }
    PyObject *jobs = job_sink_snapshot(&d->sink);
    if (jobs == NULL) {
        return NULL;
    }
    PyObject *msg = v[0] ? v[0] : Py_None;
    int any = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(jobs); i++) {
        any |= route_cancel((JobObject *)PyList_GET_ITEM(jobs, i), msg, 0);
    }
    Py_DECREF(jobs);
    if (any) {
        /* propagate the cancellation whatever return_exceptions says (asyncio, bpo-32684) */
        d->cancel_requested = 1;
        if (msg != Py_None && d->cancel_msg == NULL) {
            d->cancel_msg = Py_NewRef(msg);
        }
    }
    return PyBool_FromLong(any);
}

/* The coroutine protocol (send, throw, close) on top of the future's own await iterator: the
 * seed library's threaded_gather was an `async def`, so code passes its result to
 * asyncio.create_task() or TaskGroup.create_task(); registered as a collections.abc.Coroutine
 * by the shim, the already started gather is accepted there too. The loop thread only. */
static PyObject *gathering_iter(PyObject *self)
{
    gather_data *d = gdata(self);
    if (d->iter == NULL) {
        unaryfunc am_await = Py_TYPE(self)->tp_as_async ? Py_TYPE(self)->tp_as_async->am_await : NULL;
        d->iter = am_await ? am_await(self) : PyObject_CallMethod(self, "__await__", NULL);
    }
    return d->iter;
}

static PyObject *gathering_send(PyObject *self, PyObject *value)
{
    PyObject *it = gathering_iter(self);
    return it ? PyObject_CallMethod(it, "send", "O", value) : NULL;
}

static PyObject *gathering_throw(PyObject *self, PyObject *args)
{
    PyObject *it = gathering_iter(self);
    PyObject *throw = it ? PyObject_GetAttrString(it, "throw") : NULL;
    PyObject *r = throw ? PyObject_CallObject(throw, args) : NULL;
    Py_XDECREF(throw);
    return r;
}

static PyObject *gathering_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    gather_data *d = gdata(self);
    if (d->iter != NULL) {
        PyObject *r = PyObject_CallMethod(d->iter, "close", NULL);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
        Py_CLEAR(d->iter);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------------
 * _core.gather
 * ---------------------------------------------------------------------------------------------- */

/* Record every slot whose coroutine already appeared earlier (d->dups), as (slot, first slot). */
static int find_duplicates(gather_data *d, PyObject *coros)
{
    PyObject *first = PyDict_New();
    if (first == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(coros); i++) {
        PyObject *idx = PyLong_FromSsize_t(i);
        PyObject *prev = NULL;
        if (idx == NULL || PyDict_SetDefaultRef(first, PyTuple_GET_ITEM(coros, i), idx, &prev) < 0) {
            Py_XDECREF(idx);
            Py_DECREF(first);
            return -1;
        }
        if (prev != idx) {
            PyObject *pair = PyTuple_Pack(2, idx, prev);
            if (d->dups == NULL) {
                d->dups = PyList_New(0);
            }
            if (pair == NULL || d->dups == NULL || PyList_Append(d->dups, pair) < 0) {
                Py_XDECREF(pair);
                Py_DECREF(prev);
                Py_DECREF(idx);
                Py_DECREF(first);
                return -1;
            }
            Py_DECREF(pair);
        }
        Py_DECREF(prev);
        Py_DECREF(idx);
    }
    Py_DECREF(first);
    return 0;
}

static int is_duplicate(gather_data *d, Py_ssize_t slot)
{
    for (Py_ssize_t i = 0; d->dups != NULL && i < PyList_GET_SIZE(d->dups); i++) {
        if (PyLong_AsSsize_t(PyTuple_GET_ITEM(PyList_GET_ITEM(d->dups, i), 0)) == slot) {
            return 1;
        }
    }
    return 0;
}

/* Close the coroutines from slot `from` on that never started; a repeat of one that started
 * earlier is skipped (closing it would break the running one). */
static void close_from(thrasks_state *st, gather_data *d, PyObject *coros, Py_ssize_t from)
{
    for (Py_ssize_t k = from; k < PyTuple_GET_SIZE(coros); k++) {
        PyObject *c = PyTuple_GET_ITEM(coros, k);
        if (PyCoro_CheckExact(c) && (d == NULL || !is_duplicate(d, k))) {
            job_close_coro(st, c);
        }
    }
}

PyObject *gather_start(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"coros", "num_threads", "return_exceptions", "mode", "pool", NULL};
    static const args_spec spec = {"gather", names, 5, 5, 5};
    thrasks_state *st = PyModule_GetState(module);
    PyObject *v[5];
    if (args_parse(&spec, args, nargs, kwnames, v) < 0) {
        return NULL;
    }
    PyObject *coros = v[0];
    if (!PyTuple_Check(coros)) {
        PyErr_Format(PyExc_TypeError, "gather() argument 'coros' must be a tuple, got %.100s",
                     Py_TYPE(coros)->tp_name);
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(coros);
    PyObject *outer = NULL, *loop = NULL;
    int return_exceptions = PyObject_IsTrue(v[2]);
    if (return_exceptions < 0) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyCoro_CheckExact(PyTuple_GET_ITEM(coros, i))) {
            PyErr_Format(PyExc_TypeError, "gather() takes coroutines only, got %R", PyTuple_GET_ITEM(coros, i));
            goto fail;
        }
    }
    loop = PyObject_CallNoArgs(st->get_running_loop);
    if (loop == NULL) {
        goto fail;
    }
    PyObject *fargs[2] = {NULL, loop};
    outer = FAULT_PY() ? NULL
                       : PyObject_Vectorcall((PyObject *)st->gathering_type, fargs + 1,
                                             PY_VECTORCALL_ARGUMENTS_OFFSET, st->kw_loop);
    if (outer == NULL) {
        goto fail;
    }
    gather_data *d = gdata(outer);
    d->return_exceptions = return_exceptions;
    d->results = FAULT_PY() ? NULL : thrasks_list_new(n); /* n Nones */
    PyObject *wake = d->results ? PyCFunction_NewEx(&gathering_deliver_def, outer, NULL) : NULL;
    if (wake == NULL || route_configure(&d->route, st, v[1], v[3], v[4]) < 0 ||
        route_bind(&d->route, outer) < 0) {
        Py_XDECREF(wake);
        goto fail;
    }
    job_sink_bind(&d->sink, loop, wake);
    Py_DECREF(wake);
    job_sink_wake_when_all(&d->sink); /* gather_deliver settles on the last or a failed outcome */
    if (n > 1 && find_duplicates(d, coros) < 0) {
        goto fail;
    }
    if (n == 0 && gather_settle(outer, Py_NewRef(d->results), 0) < 0) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *coro = PyTuple_GET_ITEM(coros, i);
        if (is_duplicate(d, i)) {
            continue;
        }
        JobObject *job = job_new(st, coro, NULL, NULL, NULL, i);
        Py_ssize_t not_started = i; /* job_new failed: this coroutine was never taken */
        if (job != NULL) {
            not_started = i + 1;
            job_sink_register(&d->sink, job);
            if (route_submit(&d->route, job) < 0) {
                job_sink_unregister(&d->sink, job);
                Py_CLEAR(job); /* its dealloc closes the coroutine */
            }
        }
        if (job == NULL) {
            /* Cancel what started, close what did not; the started ones are delivered to a
             * future nobody will see, which then goes away with them. */
            PyObject *exc = PyErr_GetRaisedException();
            close_from(st, d, coros, not_started);
            PyObject *jobs = job_sink_snapshot(&d->sink);
            for (Py_ssize_t k = 0; jobs != NULL && k < PyList_GET_SIZE(jobs); k++) {
                (void)route_cancel((JobObject *)PyList_GET_ITEM(jobs, k), NULL, 0);
            }
            Py_XDECREF(jobs);
            PyErr_Clear();
            job_sink_all_submitted(&d->sink);
            PyErr_SetRaisedException(exc);
            Py_DECREF(outer);
            Py_DECREF(loop);
            return NULL;
        }
    }
    job_sink_all_submitted(&d->sink);
    Py_DECREF(loop);
    return outer;
fail:
    /* nothing started: close every coroutine we were given (no "never awaited" warning) */
    close_from(st, NULL, coros, 0);
    Py_XDECREF(outer);
    Py_XDECREF(loop);
    return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * thrasks._core.GatheringFuture
 * ---------------------------------------------------------------------------------------------- */

static int gathering_init_data(PyObject *self)
{
    gather_data *d = gdata(self);
    if (d->st == NULL) {
        d->st = thrasks_state_of_type(Py_TYPE(self));
        if (d->st == NULL) {
            return -1;
        }
        job_sink_init(&d->sink, self, &gather_ops, d->st);
    }
    return 0;
}

static PyObject *gathering_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *self = ((PyTypeObject *)type->tp_base)->tp_new(type, args, kwds);
    if (self != NULL && gathering_init_data(self) < 0) {
        Py_CLEAR(self);
    }
    return self;
}

static int gathering_traverse(PyObject *self, visitproc visit, void *arg)
{
    gather_data *d = gdata(self);
    Py_VISIT(d->results);
    Py_VISIT(d->iter);
    Py_VISIT(d->dups);
    Py_VISIT(d->cancel_msg);
    if (d->st != NULL && (job_sink_traverse(&d->sink, visit, arg) != 0 ||
                          route_traverse(&d->route, visit, arg) != 0)) {
        return -1;
    }
    return Py_TYPE(self)->tp_base->tp_traverse(self, visit, arg); /* visits the type too */
}

/* Drop the object fields of the data (GC clear and dealloc share it). */
static void gathering_clear_fields(gather_data *d)
{
    Py_CLEAR(d->results);
    Py_CLEAR(d->iter);
    Py_CLEAR(d->dups);
    Py_CLEAR(d->cancel_msg);
}

static int gathering_clear(PyObject *self)
{
    gather_data *d = gdata(self);
    gathering_clear_fields(d);
    if (d->st != NULL) {
        job_sink_clear(&d->sink);
    }
    return Py_TYPE(self)->tp_base->tp_clear(self);
}

static void gathering_dealloc(PyObject *self)
{
    /* as future_bridge.c's future_dealloc: the base finalizer first (it may resurrect) */
    if (PyObject_CallFinalizerFromDealloc(self) < 0) {
        return;
    }
    PyObject_GC_UnTrack(self);
    gather_data *d = gdata(self);
    gathering_clear_fields(d);
    if (d->st != NULL) {
        job_sink_dealloc(&d->sink);
        route_destroy(&d->route);
    }
    Py_TYPE(self)->tp_base->tp_dealloc(self);
}

static PyMethodDef gathering_methods[] = {
    {"cancel", (PyCFunction)(void (*)(void))gathering_cancel, METH_FASTCALL | METH_KEYWORDS,
     "cancel($self, /, msg=None)\n--\n\nCancel every coroutine still running (asyncio.gather's rules):\n"
     "True if any was; the future is then cancelled once they have all finished."},
    {"_deliver", gathering_deliver, METH_NOARGS, NULL},
    {"send", gathering_send, METH_O, "send($self, value, /)\n--\n\nThe coroutine protocol: step the await."},
    {"throw", gathering_throw, METH_VARARGS, "throw($self, typ, val=None, tb=None, /)\n--\n\nThe coroutine protocol."},
    {"close", gathering_close, METH_NOARGS, "close($self, /)\n--\n\nThe coroutine protocol."},
    {NULL},
};

static PyType_Slot gathering_slots[] = {
    {Py_tp_doc, "The future threaded_gather returns: the list of the coroutines' results.\n\n"
                "An asyncio.Future bound to the calling loop; cancel() cancels the coroutines."},
    {Py_tp_new, gathering_new},
    {Py_tp_methods, gathering_methods},
    {Py_tp_traverse, gathering_traverse},
    {Py_tp_clear, gathering_clear},
    {Py_tp_dealloc, gathering_dealloc},
    {0, NULL},
};

PyType_Spec gather_future_spec = {
    .name = "thrasks._core.GatheringFuture",
    .basicsize = -(int)sizeof(gather_data),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = gathering_slots,
};
