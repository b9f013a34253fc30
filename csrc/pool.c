/* pool.c - the pool of workers and the routes of owners' jobs to them (contracts in pool.h).
 * Touches: pools, workers (through loop_runner.h), jobs (through job.h), the scheduler. */
#include "pool.h"

#include <assert.h>

/* ------------------------------------------------------------------------------------------------
 * checks
 * ---------------------------------------------------------------------------------------------- */

int pool_check(PoolObject *pool)
{
    if (pool->fork_generation != atomic_load_explicit(&pool->st->fork_generation, memory_order_relaxed)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this WorkerPool was created before os.fork() and its threads do not exist in "
                        "the child process; create a new WorkerPool in the child");
        return -1;
    }
    /* acquire: pairs with the release store in pool_shutdown_impl */
    if (atomic_load_explicit(&pool->closed, memory_order_acquire)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this WorkerPool has been shut down; create a new WorkerPool (or pass "
                        "pool=None to use the default pool)");
        return -1;
    }
    return 0;
}

int pool_check_num_threads(PyObject *obj, size_t *n)
{
    if (!PyLong_Check(obj) || PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "num_threads must be an int, got %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow < 0 || (overflow == 0 && v < 1)) {
        PyErr_Format(PyExc_ValueError, "num_threads must be at least 1, got %R", obj);
        return -1;
    }
    if (overflow > 0 || v > THRASKS_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError,
                     "num_threads must be at most %d (thrasks.MAX_THREADS), got %R", THRASKS_MAX_THREADS, obj);
        return -1;
    }
    *n = (size_t)v;
    return 0;
}

size_t pool_size(PoolObject *pool)
{
    /* acquire: pairs with the release store in pool_install; workers[0..size) are built */
    return atomic_load_explicit(&pool->size, memory_order_acquire);
}

/* ------------------------------------------------------------------------------------------------
 * growth and replacement
 * ---------------------------------------------------------------------------------------------- */

/* Install `w` in slot `index` if that slot still holds `expected` (NULL: the next free slot) and
 * the pool is open. Takes our reference to w on success. 1 installed, 0 not (someone else did). */
static int pool_install(PoolObject *pool, size_t index, WorkerObject *expected, WorkerObject *w)
{
    int installed = 0;
    int retire_failed = 0;
    Py_BEGIN_CRITICAL_SECTION(pool);
    /* relaxed: closed, size and the slots are only written inside this critical section */
    if (!atomic_load_explicit(&pool->closed, memory_order_relaxed)) {
        size_t size = atomic_load_explicit(&pool->size, memory_order_relaxed);
        WorkerObject *cur = atomic_load_explicit(&pool->workers[index], memory_order_relaxed);
        if (expected == NULL ? index == size : (index < size && cur == expected)) {
            if (expected != NULL) {
                /* keep the old worker: readers may hold a borrowed pointer to it */
                retire_failed = PyList_Append(pool->retired, (PyObject *)expected) < 0;
                Py_DECREF(expected); /* the slot's reference; the list holds one now */
            }
            if (!retire_failed) {
                /* release: publishes the built worker to the acquire loads in pool_worker */
                atomic_store_explicit(&pool->workers[index], w, memory_order_release);
                if (expected == NULL) {
                    /* release: publishes workers[index] to pool_size's acquire */
                    atomic_store_explicit(&pool->size, size + 1, memory_order_release);
                }
                installed = 1;
            }
            else {
                Py_INCREF(expected); /* the slot keeps it after all */
            }
        }
    }
    Py_END_CRITICAL_SECTION();
    return retire_failed ? -1 : installed;
}

/* A new worker for slot `index` replacing `expected` (NULL: growing). 0 (ours or someone else's
 * is in place), or -1 with an exception set. */
static int pool_fill_slot(PoolObject *pool, size_t index, WorkerObject *expected)
{
    WorkerObject *w = runner_new(pool->st, pool->module, index, pool->loop_factory, pool->linger,
                                 pool->fork_generation);
    if (w == NULL) {
        return -1;
    }
    int r = pool_install(pool, index, expected, w);
    if (r <= 0) {
        /* lost the race, or the pool closed meanwhile: this worker never runs */
        PyObject *exc = PyErr_GetRaisedException();
        PyObject *c = PyObject_CallMethodNoArgs(w->loop, pool->st->s_close);
        Py_XDECREF(c);
        PyErr_Clear();
        Py_DECREF(w);
        PyErr_SetRaisedException(exc);
        return r < 0 ? -1 : pool_check(pool);
    }
    /* Installed (the slot owns our reference). Messages posted meanwhile wait in its mailbox;
     * if the thread cannot start, the worker is dead and they resolve themselves. */
    return runner_start(w);
}

int pool_ensure(PoolObject *pool, size_t n)
{
    assert(n <= THRASKS_MAX_THREADS); /* callers validate with pool_check_num_threads */
    if (pool_check(pool) < 0) {
        return -1;
    }
    for (size_t size = pool_size(pool); size < n; size = pool_size(pool)) {
        if (pool_fill_slot(pool, size, NULL) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Worker `i` (borrowed; the pool keeps it alive), replaced first if it died. With `replace` 0
 * (or if replacing fails and `must` is 0), a dead worker is returned as is: posts to it resolve
 * themselves. NULL with an exception only when replacing failed and `must` is 1. */
static WorkerObject *pool_worker(PoolObject *pool, size_t i, int must)
{
    /* acquire: pairs with the release store in pool_install */
    WorkerObject *w = atomic_load_explicit(&pool->workers[i], memory_order_acquire);
    if (!runner_is_dead(w) || atomic_load_explicit(&pool->closed, memory_order_acquire)) {
        return w;
    }
    if (pool_fill_slot(pool, i, w) < 0) {
        if (must) {
            return NULL;
        }
        PyErr_Clear();
    }
    return atomic_load_explicit(&pool->workers[i], memory_order_acquire);
}

/* ------------------------------------------------------------------------------------------------
 * routes
 * ---------------------------------------------------------------------------------------------- */

int route_configure(pool_route *r, thrasks_state *st, PyObject *num_threads, PyObject *mode,
                    PyObject *pool)
{
    size_t n;
    if (pool_check_num_threads(num_threads, &n) < 0) {
        return -1;
    }
    long m = PyLong_Check(mode) ? PyLong_AsLong(mode) : -2;
    if (m == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        m = -2;
    }
    if (m != MODE_ROUND_ROBIN && m != MODE_QUEUE) {
        PyErr_Format(PyExc_ValueError, "unknown scheduling mode %R (use thrasks.SchedulingMode)", mode);
        return -1;
    }
    if (!PyObject_TypeCheck(pool, st->pool_type)) {
        PyErr_Format(PyExc_TypeError, "pool must be a thrasks.WorkerPool or None, got %.100s",
                     Py_TYPE(pool)->tp_name);
        return -1;
    }
    if (pool_check((PoolObject *)pool) < 0) {
        return -1;
    }
    r->n = n;
    r->mode = (int)m;
    Py_XSETREF(r->pool, (PoolObject *)Py_NewRef(pool));
    return 0;
}

/* How many workers from its drawn offset a route looks at for an idle one (0: none). */
#ifndef ROUTE_IDLE_SCAN /* -DROUTE_IDLE_SCAN=N: an A/B build (tools/perf/build_variant.sh) */
#define ROUTE_IDLE_SCAN 8
#endif

/* A worker that went idle a moment ago is still awake (loop_runner.c, linger) and starts a job at
 * once; a sleeping one takes 20-500 us to wake on these VMs. So a route starts on the worker that
 * went idle last among the first ROUTE_IDLE_SCAN from its drawn offset, as Go's scheduler takes the
 * idle P it parked last: a caller that sends one job after another keeps one worker warm (its
 * linger window then learns the caller's pace, linger.h) and lets the others sleep. The route
 * claims that worker, so a burst of routes still spreads over the pool (the next one takes the
 * next idle worker, or its drawn offset), and gives its draw back to the pool counter. */
static void route_prefer_idle(pool_route *r)
{
    if (r->pool_size == 0) {
        return;
    }
    size_t drawn = r->rr.offset % r->pool_size;
    size_t scan = ROUTE_IDLE_SCAN;
    if (scan > r->pool_size) {
        scan = r->pool_size;
    }
    /* Two looks: a route that loses the claim to another binding at the same moment looks again
     * (the claimed worker reads 0 now) before it falls back to its draw. */
    for (int look = 0; look < 2; look++) {
        WorkerObject *best = NULL;
        long long best_since = 0;
        size_t best_k = drawn;
        for (size_t j = 0; j < scan; j++) {
            size_t k = (drawn + j) % r->pool_size;
            /* acquire: pairs with the release store in pool_install (the worker is built) */
            WorkerObject *w = atomic_load_explicit(&r->pool->workers[k], memory_order_acquire);
            long long since = w != NULL ? runner_idle_since(w) : 0;
            if (since > best_since) {
                best = w, best_since = since, best_k = k;
            }
        }
        if (best == NULL) {
            return;
        }
        if (!runner_claim_idle(best, best_since)) {
            continue;
        }
        if (best_k != drawn) {
            /* Give the unused draw back (if no route drew since), so the next route gets the
             * worker round robin would have given this one: a caller steered call after call
             * does not hold the counter still for everyone else. relaxed: as disp_rr_init's
             * fetch_add, only the counter's atomicity matters. */
            size_t expected = r->rr.offset + 1;
            atomic_compare_exchange_strong_explicit(&r->pool->rr_counter, &expected, r->rr.offset,
                                                    memory_order_relaxed, memory_order_relaxed);
            r->rr.offset = best_k;
        }
        return;
    }
}

int route_bind(pool_route *r, PyObject *owner)
{
    if (r->pool == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the group was not initialised (call __init__ first)");
        return -1;
    }
    if (pool_ensure(r->pool, r->n) < 0) {
        return -1;
    }
    r->pool_size = pool_size(r->pool);
    disp_rr_init(&r->rr, &r->pool->rr_counter, r->n);
    route_prefer_idle(r);
    if (r->mode != MODE_QUEUE || r->shared_inited) {
        return 0;
    }
    r->tokens = FAULT_C() ? NULL : PyMem_Calloc(r->n, sizeof(runner_serve_token));
    if (r->tokens == NULL || FAULT_C() || disp_shared_init(&r->shared, r->n, 64) < 0) {
        PyMem_Free(r->tokens);
        r->tokens = NULL;
        thrasks_no_memory();
        return -1;
    }
    r->shared_inited = 1;
    for (size_t i = 0; i < r->n; i++) {
        runner_serve_token *t = &r->tokens[i];
        t->owner = owner;
        t->shared = &r->shared;
        t->slot = i;
        t->siblings = r->tokens;
        t->n_siblings = r->n;
        atomic_init(&t->in_flight, 0);
        atomic_init(&t->last_look_ns, 0);
        atomic_init(&t->notified_ns, 0);
        atomic_init(&t->worker, NULL);
        atomic_init(&t->queued, 0);
        atomic_init(&t->waiting, 0);
    }
    return 0;
}

static long long route_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int route_submit(pool_route *r, JobObject *job)
{
    if (pool_check(r->pool) < 0) {
        return -1;
    }
    if (r->mode == MODE_ROUND_ROBIN) {
        size_t slot = disp_rr_next_slot(&r->rr);
        WorkerObject *w = pool_worker(r->pool, disp_rr_worker(&r->rr, slot, r->pool_size), 1);
        if (w == NULL) {
            return -1;
        }
        runner_post_start(w, job); /* the mailbox owns our job reference */
        return 0;
    }
    long slot = FAULT_C() ? -2 : disp_shared_push(&r->shared, job); /* the queue owns our job ref */
    if (slot == -2) {
        thrasks_no_memory();
        return -1;
    }
    if (slot >= 0) {
        /* We claimed a parked slot: its worker must be told. From here on nothing may fail (the
         * job is published): a worker that cannot be replaced gets the token anyway and resolves
         * the queue (loop_runner.h). */
        runner_serve_token *tok = &r->tokens[slot];
        /* relaxed: a hint for balance decisions (loop_runner.c, may_take) */
        atomic_store_explicit(&tok->notified_ns, route_now_ns(), memory_order_relaxed);
        WorkerObject *w = pool_worker(r->pool, disp_rr_worker(&r->rr, (size_t)slot, r->pool_size), 0);
        /* release: the pool keeps w alive; may_take acquires it to see whether it is idle */
        atomic_store_explicit(&tok->worker, w, memory_order_release);
        Py_INCREF(tok->owner); /* the serve message owns an owner reference */
        runner_post_serve(w, tok);
    }
    return 0;
}

int route_cancel(JobObject *job, PyObject *msg, int defer)
{
    int r = job_request_cancel(job, msg, defer);
    if (r == JOB_CANCEL_POST) {
        WorkerObject *w = (WorkerObject *)job_worker(job);
        if (w == runner_current()) {
            runner_cancel_now(w, job); /* on its own worker: synchronous, like Task.cancel() */
        }
        else {
            runner_post_cancel(w, job);
        }
    }
    return r != JOB_CANCEL_DONE;
}

int route_traverse(pool_route *r, visitproc visit, void *arg)
{
    Py_VISIT(r->pool);
    return 0;
}

void route_destroy(pool_route *r)
{
    if (r->shared_inited) {
        /* Unreachable while jobs are queued (each holds an owner reference); defensive. */
        void *item;
        while ((item = mpmc_pop(&r->shared.q)) != NULL) {
            Py_DECREF((PyObject *)item);
        }
        disp_shared_destroy(&r->shared);
        r->shared_inited = 0;
    }
    PyMem_Free(r->tokens);
    r->tokens = NULL;
    Py_CLEAR(r->pool);
}

/* ------------------------------------------------------------------------------------------------
 * thrasks._core.WorkerPool
 * ---------------------------------------------------------------------------------------------- */


static PyObject *pool_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"num_threads", "loop_factory", "linger", NULL};
    PyObject *num = Py_None, *factory = Py_None, *linger = Py_True;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$OO:WorkerPool", kwlist, &num, &factory, &linger)) {
        return NULL;
    }
    if (!PyBool_Check(linger)) {
        PyErr_Format(PyExc_TypeError, "linger must be True or False, got %.100s", Py_TYPE(linger)->tp_name);
        return NULL;
    }
    size_t n = 0;
    if (num != Py_None && pool_check_num_threads(num, &n) < 0) {
        return NULL;
    }
    if (factory != Py_None && !PyCallable_Check(factory)) {
        PyErr_Format(PyExc_TypeError,
                     "loop_factory must be a callable returning a new asyncio event loop, got %.100s",
                     Py_TYPE(factory)->tp_name);
        return NULL;
    }
    thrasks_state *st = thrasks_state_of_type(type);
    if (st == NULL) {
        return NULL;
    }
    PoolObject *pool = FAULT_PY() ? NULL : (PoolObject *)type->tp_alloc(type, 0);
    if (pool == NULL) {
        return NULL;
    }
    pool->st = st;
    pool->module = Py_NewRef(thrasks_module_of_type(type));
    pool->loop_factory = factory == Py_None ? NULL : Py_NewRef(factory);
    pool->linger = linger == Py_True;
    pool->fork_generation = atomic_load_explicit(&st->fork_generation, memory_order_relaxed);
    pool->workers = FAULT_C() ? NULL : PyMem_Calloc(THRASKS_MAX_THREADS, sizeof *pool->workers);
    pool->retired = pool->workers ? PyList_New(0) : NULL;
    if (pool->workers == NULL || pool->retired == NULL) {
        Py_DECREF(pool);
        return PyErr_Occurred() ? NULL : thrasks_no_memory();
    }
    /* Registered for interpreter exit (thrasks/_pool.py), whoever made it and however; the
     * weakref's callback (module.c, _forget_pool) takes it out of the registry when the pool dies. */
    PyObject *ref = FAULT_PY() ? NULL : PyWeakref_NewRef((PyObject *)pool, st->forget_pool);
    if (ref == NULL || PyList_Append(st->live_pools, ref) < 0) {
        Py_XDECREF(ref);
        Py_DECREF(pool);
        return NULL;
    }
    Py_DECREF(ref);
    if (n > 0 && pool_ensure(pool, n) < 0) {
        Py_DECREF(pool);
        return NULL;
    }
    return (PyObject *)pool;
}

/* Every worker of the pool, installed and retired, as a new list (NULL on error). */
static PyObject *pool_all_workers(PoolObject *pool)
{
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    size_t size = pool_size(pool);
    for (size_t i = 0; i < size; i++) {
        /* acquire: pairs with the release store in pool_install */
        PyObject *w = (PyObject *)atomic_load_explicit(&pool->workers[i], memory_order_acquire);
        if (PyList_Append(out, w) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    PyObject *retired = NULL;
    Py_BEGIN_CRITICAL_SECTION(pool);
    retired = PyList_GetSlice(pool->retired, 0, PY_SSIZE_T_MAX);
    Py_END_CRITICAL_SECTION();
    if (retired == NULL || PyList_SetSlice(out, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, retired) < 0) {
        Py_XDECREF(retired);
        Py_DECREF(out);
        return NULL;
    }
    Py_DECREF(retired);
    return out;
}

void pool_forsake(PoolObject *pool, PyObject *cause)
{
    PyObject *workers = pool->workers ? pool_all_workers(pool) : NULL;
    for (Py_ssize_t i = 0; workers != NULL && i < PyList_GET_SIZE(workers); i++) {
        runner_forsake((WorkerObject *)PyList_GET_ITEM(workers, i), cause);
    }
    if (workers == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(workers);
}

/* Close the pool, ask every worker to stop; with `wait`, join their threads (never the calling
 * thread's own). Stop requests never fail. */
static int pool_shutdown_impl(PoolObject *pool, int wait)
{
    if (pool->fork_generation != atomic_load_explicit(&pool->st->fork_generation, memory_order_relaxed)) {
        return 0; /* the threads belong to the parent process */
    }
    if (pool->workers == NULL) {
        return 0;
    }
    Py_BEGIN_CRITICAL_SECTION(pool);
    /* release: pairs with the acquire load in pool_check; written under the critical section so
     * that no worker is installed after it */
    atomic_store_explicit(&pool->closed, 1, memory_order_release);
    Py_END_CRITICAL_SECTION();
    size_t size = pool_size(pool);
    for (size_t i = 0; i < size; i++) {
        runner_post_stop(atomic_load_explicit(&pool->workers[i], memory_order_acquire));
    }
    if (!wait) {
        return 0;
    }
    PyObject *workers = pool_all_workers(pool);
    if (workers == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(workers); i++) {
        if (runner_join((WorkerObject *)PyList_GET_ITEM(workers, i)) < 0) {
            Py_DECREF(workers);
            return -1;
        }
    }
    Py_DECREF(workers);
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
    if (pool_check((PoolObject *)op) < 0) {
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
    if (pool_check_num_threads(arg, &n) < 0 || pool_ensure((PoolObject *)op, n) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *pool_check_meth(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (pool_check((PoolObject *)op) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *pool_stats(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    PoolObject *pool = (PoolObject *)op;
    size_t size = pool_size(pool);
    PyObject *out = thrasks_list_new((Py_ssize_t)size);
    for (size_t i = 0; out != NULL && i < size; i++) {
        WorkerObject *w = atomic_load_explicit(&pool->workers[i], memory_order_acquire);
        PyObject *d = runner_stats_dict(w);
        if (d == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SetItem(out, (Py_ssize_t)i, d); /* replaces a None (thrasks_list_new) */
    }
    return out;
}

static PyObject *pool_get_size(PyObject *op, void *Py_UNUSED(c))
{
    return PyLong_FromSize_t(pool_size((PoolObject *)op));
}

static PyObject *pool_get_closed(PyObject *op, void *Py_UNUSED(c))
{
    return PyBool_FromLong(atomic_load_explicit(&((PoolObject *)op)->closed, memory_order_acquire));
}

static PyObject *pool_get_linger(PyObject *op, void *Py_UNUSED(c))
{
    return PyBool_FromLong(((PoolObject *)op)->linger); /* fixed at construction */
}

static PyObject *pool_get_loop_factory(PyObject *op, void *Py_UNUSED(c))
{
    PyObject *f = ((PoolObject *)op)->loop_factory;
    return Py_NewRef(f ? f : Py_None);
}

static PyObject *pool_get_threads(PyObject *op, void *Py_UNUSED(c))
{
    PoolObject *pool = (PoolObject *)op;
    size_t size = pool_size(pool);
    PyObject *list = thrasks_list_new((Py_ssize_t)size);
    for (size_t i = 0; list && i < size; i++) {
        WorkerObject *w = atomic_load_explicit(&pool->workers[i], memory_order_acquire);
        PyList_SetItem(list, (Py_ssize_t)i, Py_NewRef(w->thread ? w->thread : Py_None));
    }
    return list;
}

static PyObject *pool_get_workers(PyObject *op, void *Py_UNUSED(c))
{
    PoolObject *pool = (PoolObject *)op;
    size_t size = pool_size(pool);
    PyObject *list = thrasks_list_new((Py_ssize_t)size);
    for (size_t i = 0; list && i < size; i++) {
        PyObject *w = (PyObject *)atomic_load_explicit(&pool->workers[i], memory_order_acquire);
        PyList_SetItem(list, (Py_ssize_t)i, Py_NewRef(w));
    }
    return list;
}

static PyObject *pool_get_all_threads(PyObject *op, void *Py_UNUSED(c))
{
    PyObject *workers = pool_all_workers((PoolObject *)op);
    for (Py_ssize_t i = 0; workers != NULL && i < PyList_GET_SIZE(workers); i++) {
        WorkerObject *w = (WorkerObject *)PyList_GET_ITEM(workers, i);
        PyList_SET_ITEM(workers, i, Py_NewRef(w->thread ? w->thread : Py_None));
        Py_DECREF(w);
    }
    return workers;
}

static int pool_traverse(PyObject *op, visitproc visit, void *arg)
{
    PoolObject *pool = (PoolObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(pool->module);
    Py_VISIT(pool->loop_factory);
    Py_VISIT(pool->retired);
    size_t size = pool->workers ? atomic_load_explicit(&pool->size, memory_order_relaxed) : 0;
    for (size_t i = 0; i < size; i++) { /* relaxed: the GC runs with the world stopped */
        Py_VISIT(atomic_load_explicit(&pool->workers[i], memory_order_relaxed));
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
        (void)pool_shutdown_impl(pool, 0);
        PyErr_SetRaisedException(exc);
        size_t size = atomic_load_explicit(&pool->size, memory_order_relaxed); /* last owner */
        for (size_t i = 0; i < size; i++) {
            Py_XDECREF(atomic_load_explicit(&pool->workers[i], memory_order_relaxed));
        }
        PyMem_Free(pool->workers);
        pool->workers = NULL;
    }
    Py_CLEAR(pool->retired);
    Py_CLEAR(pool->loop_factory);
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
    {"stats", pool_stats, METH_NOARGS,
     "stats($self, /)\n--\n\nPer-worker counters: a list of dicts, one per worker (see WorkerPool.stats)."},
    {"_check", pool_check_meth, METH_NOARGS, NULL},
    {"__enter__", pool_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))pool_exit, METH_FASTCALL, NULL},
    {NULL},
};

static PyGetSetDef pool_getset[] = {
    {"size", pool_get_size, NULL, "Number of worker threads started.", NULL},
    {"closed", pool_get_closed, NULL, "True once shutdown() was called.", NULL},
    {"threads", pool_get_threads, NULL, "The workers' threading.Thread objects.", NULL},
    {"loop_factory", pool_get_loop_factory, NULL, "The callable that makes the workers' loops, or None.", NULL},
    {"linger", pool_get_linger, NULL, "Whether an idle worker watches for the next job before it sleeps.", NULL},
    {"_workers", pool_get_workers, NULL, NULL, NULL},
    {"_all_threads", pool_get_all_threads, NULL, NULL, NULL},
    {NULL},
};

static PyMemberDef pool_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(PoolObject, weakreflist), Py_READONLY, NULL},
    {NULL},
};

static PyType_Slot pool_slots[] = {
    {Py_tp_doc,
     "WorkerPool(num_threads=None, *, loop_factory=None, linger=True)\n--\n\n"
     "A pool of worker threads, each running its own asyncio event loop.\n\n"
     "Groups and threaded_gather use the shared default pool unless given pool=. A pool grows on\n"
     "demand to the largest num_threads asked of it and is reused by every group; num_threads here\n"
     "starts that many workers up front. loop_factory() makes each worker's event loop (default:\n"
     "asyncio.new_event_loop). linger=False: an idle worker sleeps at once instead of watching\n"
     "for the next job for up to 1 ms. Use it as a context manager to shut it down on exit."},
    {Py_tp_new, pool_new},
    {Py_tp_traverse, pool_traverse},
    {Py_tp_dealloc, pool_dealloc},
    {Py_tp_methods, pool_methods},
    {Py_tp_getset, pool_getset},
    {Py_tp_members, pool_members},
    {0, NULL},
};

PyType_Spec pool_spec = {
    .name = "thrasks._core.WorkerPool",
    .basicsize = sizeof(PoolObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = pool_slots,
};
