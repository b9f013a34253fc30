/* module.c - thrasks._core: module state, heap types and the Python-facing functions.
 *
 * Multi-phase init, one module state per module object, heap types only, and
 * Py_mod_gil = Py_MOD_GIL_NOT_USED: every piece of shared mutable state in the extension is an
 * atomic or guarded by a PyMutex (see the headers), so importing it keeps the GIL disabled on a
 * free-threaded build. */
#include "thrasks.h"
#include "future_bridge.h"
#include "loop_runner.h"

PyObject *thrasks_module_of_type(PyTypeObject *tp)
{
    return PyType_GetModuleByDef(tp, &thrasks_module);
}

thrasks_state *thrasks_state_of_type(PyTypeObject *tp)
{
    PyObject *m = PyType_GetModuleByDef(tp, &thrasks_module);
    return m ? (thrasks_state *)PyModule_GetState(m) : NULL;
}

static PyObject *mod_gather(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return bridge_gather(module, args, nargs);
}

static PyObject *mod_drain(PyObject *module, PyObject *group)
{
    return bridge_drain(module, group);
}

/* os.register_at_fork(after_in_child=...): the child has none of the parent's worker threads.
 * Relaxed: the child runs this on its only thread, before it can start any other. */
static PyObject *mod_after_fork_child(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    thrasks_state *st = PyModule_GetState(module);
    atomic_fetch_add_explicit(&st->fork_generation, 1, memory_order_relaxed);
    Py_RETURN_NONE;
}

static PyObject *mod_discard_completions(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    thrasks_state *st = PyModule_GetState(module);
    atomic_store_explicit(&st->discarding, 1, memory_order_relaxed); /* see thrasks.h */
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"gather", (PyCFunction)(void (*)(void))mod_gather, METH_FASTCALL,
     "gather($module, coros, num_threads, return_exceptions, mode, pool, /)\n--\n\n"
     "Start a tuple of coroutines on the pool; return the future of the list of their results\n"
     "(asyncio.gather's rules). Arguments are validated by thrasks.threaded_gather."},
    {"_drain", mod_drain, METH_O, "Deliver a group's finished tasks (scheduled on the caller's loop)."},
    {"_after_fork_child", mod_after_fork_child, METH_NOARGS,
     "Mark every pool made before os.fork() as unusable in the child process."},
    {"_discard_completions", mod_discard_completions, METH_NOARGS,
     "Interpreter exit: drop task outcomes instead of delivering them to caller loops."},
    {NULL},
};

/* ---- state ---- */

static int import_attr(PyObject **dst, const char *module, const char *name)
{
    PyObject *m = PyImport_ImportModule(module);
    if (m == NULL) {
        return -1;
    }
    *dst = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return *dst ? 0 : -1;
}

static int intern(PyObject **dst, const char *s)
{
    *dst = PyUnicode_InternFromString(s);
    return *dst ? 0 : -1;
}

static int module_exec(PyObject *m)
{
    thrasks_state *st = PyModule_GetState(m);
    PyObject *future_type = NULL;
    if (import_attr(&future_type, "_asyncio", "Future") < 0) {
        return -1;
    }
    st->asyncio_future_type = (PyTypeObject *)future_type;
    if (import_attr(&st->task_type, "_asyncio", "Task") < 0 ||
        import_attr(&st->cancelled_error, "asyncio", "CancelledError") < 0 ||
        import_attr(&st->new_event_loop, "asyncio", "new_event_loop") < 0 ||
        import_attr(&st->iscoroutine, "asyncio", "iscoroutine") < 0 ||
        import_attr(&st->get_running_loop, "asyncio", "get_running_loop") < 0 ||
        import_attr(&st->thread_type, "threading", "Thread") < 0) {
        return -1;
    }
    st->base_cancel = PyObject_GetAttrString(future_type, "cancel");
    st->base_set_result = PyObject_GetAttrString(future_type, "set_result");
    st->base_set_exception = PyObject_GetAttrString(future_type, "set_exception");
    st->base_done = PyObject_GetAttrString(future_type, "done");
    if (!st->base_cancel || !st->base_set_result || !st->base_set_exception || !st->base_done) {
        return -1;
    }
#define I(field, text) if (intern(&st->field, text) < 0) return -1
    I(s_call_soon, "call_soon");
    I(s_call_soon_threadsafe, "call_soon_threadsafe");
    I(s_add_done_callback, "add_done_callback");
    I(s_cancel, "cancel");
    I(s_cancelled, "cancelled");
    I(s_exception, "exception");
    I(s_result, "result");
    I(s_done, "done");
    I(s_loop, "loop");
    I(s_name, "name");
    I(s_context, "context");
    I(s_add_reader, "add_reader");
    I(s_remove_reader, "remove_reader");
    I(s_run_forever, "run_forever");
    I(s_stop, "stop");
    I(s_close, "close");
    I(s_run_until_complete, "run_until_complete");
    I(s_shutdown_asyncgens, "shutdown_asyncgens");
    I(s_shutdown_default_executor, "shutdown_default_executor");
    I(s_start, "start");
    I(s_join, "join");
    I(s_target, "target");
    I(s_daemon, "daemon");
    I(s_call_exception_handler, "call_exception_handler");
#undef I
    st->kw_loop = PyTuple_Pack(1, st->s_loop);
    st->kw_task = PyTuple_Pack(3, st->s_loop, st->s_name, st->s_context);
    st->kw_context = PyTuple_Pack(1, st->s_context);
    if (!st->kw_loop || !st->kw_task || !st->kw_context) {
        return -1;
    }
    st->drain_func = PyObject_GetAttrString(m, "_drain");
    if (st->drain_func == NULL) {
        return -1;
    }
    st->pool_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &runner_pool_spec, NULL);
    st->worker_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &runner_worker_spec, NULL);
    st->group_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &bridge_group_spec, NULL);
    st->future_type = (PyTypeObject *)PyType_FromMetaclass(NULL, m, &bridge_future_spec, future_type);
    if (!st->pool_type || !st->worker_type || !st->group_type || !st->future_type) {
        return -1;
    }
    if (PyModule_AddType(m, st->pool_type) < 0 || PyModule_AddType(m, st->worker_type) < 0 ||
        PyModule_AddType(m, st->group_type) < 0 || PyModule_AddType(m, st->future_type) < 0) {
        return -1;
    }
    if (PyModule_AddIntConstant(m, "MODE_ROUND_ROBIN", MODE_ROUND_ROBIN) < 0 ||
        PyModule_AddIntConstant(m, "MODE_QUEUE", MODE_QUEUE) < 0 ||
        PyModule_AddIntConstant(m, "KIND_TASKGROUP", KIND_TASKGROUP) < 0 ||
        PyModule_AddIntConstant(m, "KIND_PLAIN", KIND_PLAIN) < 0 ||
        PyModule_AddIntConstant(m, "MAX_THREADS", THRASKS_MAX_THREADS) < 0) {
        return -1;
    }
    atomic_init(&st->fork_generation, 0);
    atomic_init(&st->discarding, 0);
    return 0;
}

#define STATE_FIELDS(X)                                                                            \
    X(pool_type) X(worker_type) X(group_type) X(future_type) X(asyncio_future_type) X(task_type)  \
    X(cancelled_error) X(new_event_loop) X(iscoroutine) X(thread_type) X(base_cancel)             \
    X(base_set_result) X(base_set_exception) X(base_done) X(get_running_loop) X(drain_func)       \
    X(s_call_soon) X(s_call_soon_threadsafe) X(s_add_done_callback) X(s_cancel) X(s_cancelled)    \
    X(s_exception) X(s_result) X(s_done) X(s_loop) X(s_name) X(s_context) X(s_add_reader)         \
    X(s_remove_reader) X(s_run_forever) X(s_stop) X(s_close) X(s_run_until_complete)              \
    X(s_shutdown_asyncgens) X(s_shutdown_default_executor) X(s_start) X(s_join) X(s_target)       \
    X(s_daemon) X(s_call_exception_handler) X(kw_loop) X(kw_task) X(kw_context)

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    thrasks_state *st = PyModule_GetState(m);
    if (st == NULL) {
        return 0;
    }
#define V(f) Py_VISIT(st->f);
    STATE_FIELDS(V)
#undef V
    return 0;
}

static int module_clear(PyObject *m)
{
    thrasks_state *st = PyModule_GetState(m);
    if (st == NULL) {
        return 0;
    }
#define C(f) Py_CLEAR(st->f);
    STATE_FIELDS(C)
#undef C
    return 0;
}

static void module_free(void *m)
{
    (void)module_clear((PyObject *)m);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    /* worker threads and module state are per module object, but the pools' threads run this
     * interpreter's asyncio: one interpreter only */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
    {0, NULL},
};

PyModuleDef thrasks_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "thrasks._core",
    .m_doc = "The C core of thrasks: worker pools, the scheduler and the future bridge.",
    .m_size = sizeof(thrasks_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&thrasks_module);
}
