/* pool.h - the pool of workers, and the route by which an owner's jobs reach them.
 *
 * Pool (thrasks._core.WorkerPool): an array of THRASKS_MAX_THREADS worker slots, of which `size`
 * are published. It grows on demand (pool_ensure) and replaces a worker that died when an owner
 * next looks it up (pool_worker). Workers are made and started OUTSIDE any lock (making a loop
 * and starting a thread run Python code, which may re-enter the pool); a new worker is installed
 * under the pool's critical section only if its slot is still free. A replaced worker is kept
 * (the `retired` list) until the pool dies, so a borrowed worker pointer read from a slot stays
 * valid for as long as the pool lives.
 *
 * Route (pool_route): embedded in an owner (a group or a gather); how its jobs are spread:
 *   ROUND_ROBIN  job k goes to worker (offset + k mod n) mod pool_size  (disp_rr); the offset is
 *                the worker that went idle last, if one did, else the pool counter's draw
 *                (route_prefer_idle: an idle worker may still be awake)
 *   QUEUE        jobs go on the owner's shared queue; a producer that claims a parked slot
 *                posts that slot's serve token to the slot's worker (disp_shared)
 * Posting never fails (loop_runner.h); route_submit fails only before the job is published.
 *
 * Threads: route_submit and route_cancel from any thread once the route is bound (the bind is
 * published by the owner, release/acquire, before any other thread can submit).
 */
#ifndef THRASKS_POOL_H
#define THRASKS_POOL_H

#include "loop_runner.h"

typedef struct PoolObject {
    PyObject_HEAD
    thrasks_state *st;             /* borrowed: kept alive by `module` */
    PyObject *module;              /* strong */
    PyObject *loop_factory;        /* strong or NULL: makes the workers' loops */
    int linger;                    /* WorkerPool(linger=...): its workers linger; set in pool_new */
    _Atomic size_t size;           /* workers[0..size) are installed and published */
    _Atomic(WorkerObject *) *workers; /* THRASKS_MAX_THREADS slots; each a strong ref */
    PyObject *retired;             /* strong list (pool's critical section): replaced workers */
    _Atomic size_t rr_counter;     /* draws each route's round-robin offset */
    atomic_int closed;
    unsigned long fork_generation;
    PyObject *weakreflist;
} PoolObject;

/* 0 if the pool can take work; -1 with RuntimeError set if it is shut down or was made before a
 * fork. Any thread. */
int pool_check(PoolObject *pool);

/* Validate a Python num_threads (an int, not a bool, 1..THRASKS_MAX_THREADS) into *n. 0, or -1
 * with TypeError/ValueError set, in the seed library's words. */
int pool_check_num_threads(PyObject *obj, size_t *n);

/* Make sure the pool has at least n workers (n already checked). 0, or -1 with an exception set. */
int pool_ensure(PoolObject *pool, size_t n);

/* A forked child: every job the pool's workers held finishes with a RuntimeError chained to
 * `cause` (runner_forsake). The child's only thread. */
void pool_forsake(PoolObject *pool, PyObject *cause);

/* Pool facts for owners. */
size_t pool_size(PoolObject *pool);

typedef struct pool_route {
    PoolObject *pool;              /* strong (NULL until configured) */
    int mode;                      /* MODE_ROUND_ROBIN or MODE_QUEUE */
    size_t n;                      /* workers to spread over (num_threads) */
    size_t pool_size;              /* workers the round robin maps over, fixed at bind */
    disp_rr rr;
    disp_shared shared;            /* QUEUE only, from bind */
    runner_serve_token *tokens;    /* QUEUE only: n tokens (PyMem), one per slot */
    int shared_inited;
} pool_route;

/* Validate and store num_threads (a Python int), mode (a Python int) and pool (a WorkerPool).
 * 0, or -1 with TypeError/ValueError set. Before bind only (the owner checks that). */
int route_configure(pool_route *r, thrasks_state *st, PyObject *num_threads, PyObject *mode,
                    PyObject *pool);

/* Tie the route to its pool's workers (growing the pool) for `owner` (QUEUE tokens point at it).
 * 0, or -1 with an exception set (the route stays unbound and may be bound again). */
int route_bind(pool_route *r, PyObject *owner);

/* Hand a new job to the workers. Takes over the caller's job reference on success; on failure
 * (-1, exception set) nothing was published and the reference is still the caller's. */
int route_submit(pool_route *r, JobObject *job);

/* Request cancellation of a job (job_request_cancel, then a cancel post to its worker if it
 * runs). Any thread; never fails. 1 if the job was not done yet (like Task.cancel()), else 0. */
int route_cancel(JobObject *job, PyObject *msg, int defer);

int route_traverse(pool_route *r, visitproc visit, void *arg);
/* Free what bind made (the owner is being destroyed: no job of it is queued any more). */
void route_destroy(pool_route *r);

extern PyType_Spec pool_spec;

#endif
