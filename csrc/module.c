/* module.c - thrasks._core: module state, heap types and the module-level functions.
 *
 * Multi-phase init, one module state per module object, heap types only, and
 * Py_mod_gil = Py_MOD_GIL_NOT_USED: every piece of shared mutable state in the extension is an
 * atomic, or guarded by a critical section (see the headers), so importing it keeps the GIL
 * disabled on a free-threaded build. Touches: every unit's public functions, nothing private. */
#include "thrasks.h"
#include "gather.h"
#include "group.h"

PyObject *thrasks_module_of_type(PyTypeObject *tp)
{
    return PyType_GetModuleByDef(tp, &thrasks_module);
}

thrasks_state *thrasks_state_of_type(PyTypeObject *tp)
{
    PyObject *m = PyType_GetModuleByDef(tp, &thrasks_module);
    return m ? (thrasks_state *)PyModule_GetState(m) : NULL;
}

/* _check_num_threads(n): the one validation of num_threads (pool.c), for the Python shim too. */
static PyObject *mod_check_num_threads(PyObject *Py_UNUSED(module), PyObject *arg)
{
    size_t n;
    if (pool_check_num_threads(arg, &n) < 0) {
        return NULL;
    }
    return PyLong_FromSize_t(n);
}

/* Every pool still alive (interpreter exit shuts them down, however they were made). */
static PyObject *mod_live_pools(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    thrasks_state *st = PyModule_GetState(module);
    PyObject *out = PyList_New(0);
    PyObject *refs = out ? PySequence_List(st->live_pools) : NULL;
    if (refs == NULL) {
        Py_XDECREF(out);
        return NULL;
    }
    PyObject *alive = PyList_New(0);
    for (Py_ssize_t i = 0; alive != NULL && i < PyList_GET_SIZE(refs); i++) {
        PyObject *ref = PyList_GET_ITEM(refs, i);
        PyObject *pool = NULL;
        if (PyWeakref_GetRef(ref, &pool) < 0 ||
            (pool != NULL && (PyList_Append(out, pool) < 0 || PyList_Append(alive, ref) < 0))) {
            Py_XDECREF(pool);
            Py_CLEAR(alive);
            break;
        }
        Py_XDECREF(pool);
    }
    Py_ssize_t seen = PyList_GET_SIZE(refs);
    Py_DECREF(refs);
    if (alive == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    /* forget dead pools (a pool made meanwhile is appended after our copy: keep it) */
    int rc = PyList_SetSlice(st->live_pools, 0, seen, alive);
    Py_DECREF(alive);
    if (rc < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* The callback of the registry's weakrefs: a pool died, forget its weakref. */
static PyObject *mod_forget_pool(PyObject *module, PyObject *ref)
{
    thrasks_state *st = PyModule_GetState(module);
    if (st->live_pools == NULL) {
        Py_RETURN_NONE; /* module teardown */
    }
    Py_ssize_t i = PySequence_Index(st->live_pools, ref);
    if (i < 0) {
        PyErr_Clear(); /* already forgotten */
        Py_RETURN_NONE;
    }
    if (PySequence_DelItem(st->live_pools, i) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* os.register_at_fork(after_in_child=...): the child has none of the parent's worker threads.
 * Every job they held finishes with a RuntimeError there (its future fails if the child runs
 * the loop that awaits it), and pools made before the fork refuse work (fork_generation). */
static PyObject *mod_after_fork_child(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    thrasks_state *st = PyModule_GetState(module);
    /* relaxed: the child runs this on its only thread, before it can start any other */
    atomic_fetch_add_explicit(&st->fork_generation, 1, memory_order_relaxed);
    PyObject *pools = mod_live_pools(module, NULL);
    PyObject *cause = pools ? PyObject_CallFunction(PyExc_RuntimeError, "s",
                                                    "the process forked (os.fork()) while this task ran "
                                                    "on a worker thread of the parent")
                            : NULL;
    for (Py_ssize_t i = 0; cause != NULL && i < PyList_GET_SIZE(pools); i++) {
        pool_forsake((PoolObject *)PyList_GET_ITEM(pools, i), cause);
    }
    Py_XDECREF(cause);
    Py_XDECREF(pools);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *mod_discard_completions(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    thrasks_state *st = PyModule_GetState(module);
    atomic_store_explicit(&st->discarding, 1, memory_order_relaxed); /* see thrasks.h */
    Py_RETURN_NONE;
}

#ifdef THRASKS_FAULT_INJECTION
static PyObject *mod_fault_arm(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long k = PyLong_AsLong(arg);
    if (k == -1 && PyErr_Occurred()) {
        return NULL;
    }
    fault_arm(k);
    Py_RETURN_NONE;
}

static PyObject *mod_fault_state(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(li)", fault_sites_passed(), fault_fired());
}
#endif

static PyMethodDef module_methods[] = {
    {"gather", (PyCFunction)(void (*)(void))gather_start, METH_FASTCALL | METH_KEYWORDS,
     "gather($module, coros, num_threads, return_exceptions, mode, pool, /)\n--\n\n"
     "Start a tuple of coroutines on the pool; return the future of the list of their results\n"
     "(asyncio.gather's rules). On any error every coroutine not started is closed."},
    {"_check_num_threads", mod_check_num_threads, METH_O,
     "_check_num_threads($module, num_threads, /)\n--\n\nValidate num_threads; return it."},
    {"_forget_pool", mod_forget_pool, METH_O,
     "_forget_pool($module, ref, /)\n--\n\nThe registry weakref's callback: its pool died."},
    {"_live_pools", mod_live_pools, METH_NOARGS,
     "_live_pools($module, /)\n--\n\nEvery WorkerPool still alive."},
    {"_after_fork_child", mod_after_fork_child, METH_NOARGS,
     "_after_fork_child($module, /)\n--\n\nIn a forked child: fail the parent's tasks, retire its pools."},
    {"_discard_completions", mod_discard_completions, METH_NOARGS,
     "_discard_completions($module, /)\n--\n\nInterpreter exit: drop task outcomes instead of delivering them."},
#ifdef THRASKS_FAULT_INJECTION
    {"_fault_arm", mod_fault_arm, METH_O,
     "_fault_arm($module, k, /)\n--\n\nMake the k-th allocation site reached from now fail (0: disarm)."},
    {"_fault_state", mod_fault_state, METH_NOARGS,
     "_fault_state($module, /)\n--\n\n(sites passed since armed, whether the fault fired)."},
#endif
    {NULL},
};

#ifdef THRASKS_FAULT_INJECTION
#define FAULT_BUILD 1
#else
#define FAULT_BUILD 0
#endif

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

static int add_type(PyObject *m, PyTypeObject **dst, PyType_Spec *spec, PyObject *base)
{
    *dst = (PyTypeObject *)PyType_FromMetaclass(NULL, m, spec, base);
    return *dst != NULL && PyModule_AddType(m, *dst) == 0 ? 0 : -1;
}

static int module_exec(PyObject *m)
{
    thrasks_state *st = PyModule_GetState(m);
    if (import_attr(&st->asyncio_future_type, "_asyncio", "Future") < 0 ||
        import_attr(&st->task_type, "_asyncio", "Task") < 0 ||
        import_attr(&st->cancelled_error, "asyncio", "CancelledError") < 0 ||
        import_attr(&st->new_event_loop, "asyncio", "new_event_loop") < 0 ||
        import_attr(&st->abstract_loop_type, "asyncio", "AbstractEventLoop") < 0 ||
        import_attr(&st->iscoroutine, "asyncio", "iscoroutine") < 0 ||
        import_attr(&st->get_running_loop, "asyncio", "get_running_loop") < 0 ||
        import_attr(&st->peek_running_loop, "asyncio", "_get_running_loop") < 0 ||
        import_attr(&st->thread_type, "threading", "Thread") < 0) {
        return -1;
    }
    PyObject *fut = st->asyncio_future_type;
    st->base_cancel = PyObject_GetAttrString(fut, "cancel");
    st->base_set_result = PyObject_GetAttrString(fut, "set_result");
    st->base_set_exception = PyObject_GetAttrString(fut, "set_exception");
    st->base_done = PyObject_GetAttrString(fut, "done");
    st->base_exception = PyObject_GetAttrString(fut, "exception");
    st->live_pools = PyList_New(0);
    st->forget_pool = PyObject_GetAttrString(m, "_forget_pool");
    if (!st->base_cancel || !st->base_set_result || !st->base_set_exception || !st->base_done ||
        !st->base_exception || !st->live_pools || !st->forget_pool) {
        return -1;
    }
#define I(field, text) if (intern(&st->field, text) < 0) return -1
    I(s_call_soon, "call_soon");
    I(s_call_soon_threadsafe, "call_soon_threadsafe");
    I(s_add_done_callback, "add_done_callback");
    I(s_cancel, "cancel");
    I(s_cancelled, "cancelled");
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
    I(s_is_closed, "is_closed");
    I(s_run_until_complete, "run_until_complete");
    I(s_shutdown_asyncgens, "shutdown_asyncgens");
    I(s_shutdown_default_executor, "shutdown_default_executor");
    I(s_start, "start");
    I(s_join, "join");
    I(s_target, "target");
    I(s_daemon, "daemon");
    I(s_call_exception_handler, "call_exception_handler");
    I(s_uncancel, "uncancel");
    I(s_ident, "ident");
    I(s_deliver, "_deliver");
    I(s_settle, "_settle");
    I(s_call_later, "call_later");
    I(s_ready, "_ready");
    I(s_scheduled, "_scheduled");
    I(s_selector, "_selector");
    I(s_get_map, "get_map");
    I(s_when, "when");
    I(s_time, "time");
    I(s_eager_start, "eager_start");
    I(s_hub_attr, "_thrasks_hub");
#undef I
    st->kw_loop = PyTuple_Pack(1, st->s_loop);
    st->kw_task = PyTuple_Pack(3, st->s_loop, st->s_name, st->s_context);
    st->kw_context = PyTuple_Pack(1, st->s_context);
    st->empty_tuple = PyTuple_New(0);
    if (!st->kw_loop || !st->kw_task || !st->kw_context || !st->empty_tuple) {
        return -1;
    }
    if (add_type(m, &st->pool_type, &pool_spec, NULL) < 0 ||
        add_type(m, &st->worker_type, &runner_worker_spec, NULL) < 0 ||
        add_type(m, &st->job_type, &job_spec, NULL) < 0 ||
        add_type(m, &st->hub_type, &hub_spec, NULL) < 0 ||
        add_type(m, &st->group_type, &group_spec, NULL) < 0 ||
        add_type(m, &st->future_type, &bridge_future_spec, fut) < 0 ||
        add_type(m, &st->gathering_type, &gather_future_spec, fut) < 0) {
        return -1;
    }
    if (PyModule_AddIntConstant(m, "MODE_ROUND_ROBIN", MODE_ROUND_ROBIN) < 0 ||
        PyModule_AddIntConstant(m, "MODE_QUEUE", MODE_QUEUE) < 0 ||
        PyModule_AddIntConstant(m, "KIND_TASKGROUP", KIND_TASKGROUP) < 0 ||
        PyModule_AddIntConstant(m, "KIND_PLAIN", KIND_PLAIN) < 0 ||
        PyModule_AddIntConstant(m, "MAX_THREADS", THRASKS_MAX_THREADS) < 0 ||
        PyModule_AddIntConstant(m, "FAULT_INJECTION", FAULT_BUILD) < 0) {
        return -1;
    }
    atomic_init(&st->fork_generation, 0);
    atomic_init(&st->discarding, 0);
    return 0;
}

#define STATE_FIELDS(X)                                                                            \
    X(pool_type) X(worker_type) X(job_type) X(group_type) X(future_type) X(gathering_type)        \
    X(asyncio_future_type) X(task_type) X(cancelled_error) X(new_event_loop) X(abstract_loop_type) \
    X(iscoroutine) X(thread_type) X(base_cancel) X(base_set_result) X(base_set_exception)         \
    X(base_done) X(base_exception) X(get_running_loop) X(peek_running_loop) X(live_pools) X(forget_pool)         \
    X(s_call_soon) X(s_call_soon_threadsafe) X(s_add_done_callback) X(s_cancel) X(s_cancelled)    \
    X(s_result) X(s_done) X(s_loop) X(s_name) X(s_context) X(s_add_reader) X(s_remove_reader)     \
    X(s_run_forever) X(s_stop) X(s_close) X(s_is_closed) X(s_run_until_complete)                  \
    X(s_shutdown_asyncgens) X(s_shutdown_default_executor) X(s_start) X(s_join) X(s_target)       \
    X(s_daemon) X(s_call_exception_handler) X(s_uncancel) X(s_ident) X(s_deliver) X(s_settle)     \
    X(s_eager_start) X(s_hub_attr) X(s_call_later) X(s_ready) X(s_scheduled) X(s_selector)      \
    X(s_get_map) X(s_when) X(s_time) X(hub_type) X(empty_tuple)                                   \
    X(kw_loop) X(kw_task) X(kw_context)

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
