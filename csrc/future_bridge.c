/* future_bridge.c - thrasks._core.Future and delivery of outcomes into futures (future_bridge.h).
 * Touches: futures, and jobs through job.h (reads their outcome; cancel requests through
 * pool.h's route_cancel). Never a group or a gather. */
#include "future_bridge.h"
#include "args.h"

typedef struct future_data {
    JobObject *job;                /* strong or NULL (a Future made directly, not by a group) */
    PyObject *loop;                /* strong or NULL: set when the future's loop is not the owner's */
    int retrieve;                  /* owner's loop thread writes before forwarding: mark retrieved */
} future_data;

static future_data *fdata(PyObject *fut)
{
    /* the Future type is final (not a base type), so its data sits at one offset */
    return (future_data *)PyObject_GetTypeData(fut, Py_TYPE(fut));
}

PyObject *bridge_call(PyObject *meth, PyObject *fut, PyObject *arg)
{
    PyObject *args[2] = {fut, arg};
    return PyObject_Vectorcall(meth, args, arg ? 2 : 1, NULL);
}

int bridge_is_done(thrasks_state *st, PyObject *fut)
{
    PyObject *r = bridge_call(st->base_done, fut, NULL);
    if (r == NULL) {
        return -1;
    }
    int done = (r == Py_True);
    Py_DECREF(r);
    return done;
}

PyObject *bridge_cancelled_error(thrasks_state *st, PyObject *msg)
{
    if (FAULT_PY()) {
        return NULL;
    }
    return msg ? PyObject_CallOneArg(st->cancelled_error, msg) : PyObject_CallNoArgs(st->cancelled_error);
}

PyObject *bridge_future_new(thrasks_state *st, PyObject *loop, int forward)
{
    PyObject *args[2] = {NULL, loop};
    PyObject *fut = FAULT_PY() ? NULL
                               : PyObject_Vectorcall((PyObject *)st->future_type, args + 1,
                                                     PY_VECTORCALL_ARGUMENTS_OFFSET, st->kw_loop);
    if (fut != NULL && forward) {
        fdata(fut)->loop = Py_NewRef(loop);
    }
    return fut;
}

void bridge_future_attach(PyObject *fut, JobObject *job)
{
    Py_XSETREF(fdata(fut)->job, (JobObject *)Py_NewRef(job));
}

int bridge_settle_here(thrasks_state *st, PyObject *fut, JobObject *job, int retrieve)
{
    int done = bridge_is_done(st, fut);
    if (done != 0) {
        return done < 0 ? -1 : 0;
    }
    PyObject *r;
    switch (job->outcome_kind) {
    case OUTCOME_RESULT:
        r = FAULT_PY() ? NULL : bridge_call(st->base_set_result, fut, job->outcome);
        break;
    case OUTCOME_EXCEPTION:
        r = FAULT_PY() ? NULL : bridge_call(st->base_set_exception, fut, job->outcome);
        if (r != NULL && retrieve) {
            /* the owner reports the error: mark it retrieved so the future does not log it again */
            Py_DECREF(r);
            r = bridge_call(st->base_exception, fut, NULL);
        }
        break;
    default:
        r = FAULT_PY() ? NULL : bridge_call(st->base_cancel, fut, job_cancel_msg(job));
        break;
    }
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

int bridge_settle(thrasks_state *st, PyObject *fut, JobObject *job, int retrieve)
{
    future_data *d = fdata(fut);
    if (d->loop == NULL) {
        return bridge_settle_here(st, fut, job, retrieve);
    }
    /* Lives on another loop: settle it there. The bound method holds the future (which holds the
     * job, whose outcome stays until the job dies); call_soon_threadsafe hands them over. */
    d->retrieve = retrieve;
    PyObject *settle = FAULT_PY() ? NULL : PyObject_GetAttr(fut, st->s_settle);
    if (settle == NULL) {
        return -1;
    }
    PyObject *args[2] = {d->loop, settle};
    PyObject *r = PyObject_VectorcallMethod(st->s_call_soon_threadsafe, args,
                                            2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(settle);
    if (r == NULL) {
        /* That loop is closed: nobody can await the future there any more. */
        PyObject *closed = PyObject_CallMethodNoArgs(d->loop, st->s_is_closed);
        int is_closed = closed == Py_True;
        Py_XDECREF(closed);
        if (is_closed) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Future._settle(): scheduled on the future's own loop by bridge_settle. */
static PyObject *future_settle(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    thrasks_state *st = thrasks_state_of_type(Py_TYPE(self));
    future_data *d = fdata(self);
    if (st == NULL || d->job == NULL || job_state(d->job) != JOB_DONE) {
        Py_RETURN_NONE; /* nothing to settle (not called by bridge_settle) */
    }
    /* The job's outcome was published to the owner's thread by the finished stack, and to us by
     * call_soon_threadsafe (its lock orders the owner's schedule before our run). */
    if (bridge_settle_here(st, self, d->job, d->retrieve) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Future.cancel(msg=None): like Task.cancel, a REQUEST (future_bridge.h). */
static PyObject *future_cancel(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"msg", NULL};
    static const args_spec spec = {"cancel", names, 0, 1, 0};
    PyObject *v[1];
    if (args_parse(&spec, args, nargs, kwnames, v) < 0) {
        return NULL;
    }
    PyObject *msg = v[0] ? v[0] : Py_None;
    thrasks_state *st = thrasks_state_of_type(Py_TYPE(self));
    if (st == NULL) {
        return NULL;
    }
    int done = bridge_is_done(st, self);
    if (done != 0) {
        return done < 0 ? NULL : Py_NewRef(Py_False);
    }
    JobObject *job = fdata(self)->job;
    if (job == NULL) { /* not made by a group: behave like a plain asyncio.Future */
        return bridge_call(st->base_cancel, self, msg);
    }
    /* False when the job is already over (its outcome is on its way), like Task.cancel() on a
     * finished task: a Task awaiting this future then cancels itself instead of waiting for a
     * cancellation that will not come. */
    return PyBool_FromLong(route_cancel(job, msg, 0));
}

static PyObject *future_refuse_set(PyObject *self, PyObject *Py_UNUSED(arg))
{
    PyErr_Format(PyExc_RuntimeError,
                 "%.100s does not support set_result() / set_exception(): its outcome comes from "
                 "the coroutine running on a worker thread (cancel() it instead)",
                 Py_TYPE(self)->tp_name);
    return NULL;
}

/* The base type, found without the module state (which teardown clears before the last futures
 * die): the Future type is final, so its base is asyncio's Future. */
static PyTypeObject *base_type(PyObject *self)
{
    return Py_TYPE(self)->tp_base;
}

static int future_traverse(PyObject *self, visitproc visit, void *arg)
{
    future_data *d = fdata(self);
    Py_VISIT(d->job);
    Py_VISIT(d->loop);
    return base_type(self)->tp_traverse(self, visit, arg); /* visits the type too */
}

static int future_clear(PyObject *self)
{
    future_data *d = fdata(self);
    Py_CLEAR(d->job);
    Py_CLEAR(d->loop);
    return base_type(self)->tp_clear(self);
}

static void future_dealloc(PyObject *self)
{
    /* asyncio's Future runs its finalizer (the "exception was never retrieved" report) first and
     * may be resurrected by it; then our fields go, then the base frees the object. The base's
     * own finalizer call is then a no-op (finalizers run once). */
    if (PyObject_CallFinalizerFromDealloc(self) < 0) {
        return;
    }
    PyObject_GC_UnTrack(self);
    future_data *d = fdata(self);
    Py_CLEAR(d->job);
    Py_CLEAR(d->loop);
    base_type(self)->tp_dealloc(self);
}

static PyMethodDef future_methods[] = {
    {"cancel", (PyCFunction)(void (*)(void))future_cancel, METH_FASTCALL | METH_KEYWORDS,
     "cancel($self, /, msg=None)\n--\n\nRequest cancellation of the task's coroutine on its worker thread.\n\n"
     "Like Task.cancel(): returns True if the request was made; the future becomes cancelled once\n"
     "the coroutine has finished cancelling (or gets its result if the coroutine suppresses it)."},
    {"set_result", future_refuse_set, METH_O, "set_result($self, result, /)\n--\n\nNot supported: raises RuntimeError."},
    {"set_exception", future_refuse_set, METH_O,
     "set_exception($self, exception, /)\n--\n\nNot supported: raises RuntimeError."},
    {"_settle", future_settle, METH_NOARGS, NULL},
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
    .basicsize = -(int)sizeof(future_data), /* follows asyncio.Future's own (opaque) layout */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = future_slots,
};
