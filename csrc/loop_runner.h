/* loop_runner.h - worker threads, each running its own asyncio event loop, and the pool of them.
 *
 * A worker is woken through an eventfd registered with loop.add_reader(): producers push a message
 * on its inbox and, at most once per batch (disp_inbox protocol), write the eventfd. The worker's
 * _drain callback reads the eventfd, THEN clears the wake flag (the other order can eat a wake-up
 * that belongs to the flag's next batch, leaving the flag set and the worker asleep for good),
 * and handles every message:
 *   MSG_START  job    create the asyncio.Task for the job on this loop
 *   MSG_CANCEL job    task.cancel(msg) if the job's task is still running
 *   MSG_SERVE  token  QUEUE mode: start serving a group's shared queue (one job per loop iteration)
 *   MSG_STOP          cancel running tasks, then stop the loop once they have finished
 *
 * Dead-worker hand-off (a pool shut down while someone still posts): the worker stores `dead` and
 * then drains its inbox one last time; a poster pushes and then loads `dead` (a seq_cst fence on
 * each side between the two steps), so at least one of them sees the message and resolves it
 * (a job is reported cancelled) instead of leaving it in a dead inbox forever.
 *
 * Ownership: the pool owns its workers; a worker owns its loop; the worker's thread (a
 * threading.Thread whose target is the bound worker._run) holds the worker alive while it runs.
 */
#ifndef THRASKS_LOOP_RUNNER_H
#define THRASKS_LOOP_RUNNER_H

#include "thrasks.h"

typedef struct WorkerObject {
    PyObject_HEAD
    thrasks_state *st;             /* borrowed: kept alive by `module` */
    PyObject *module;              /* strong */
    disp_inbox inbox;              /* tagged messages; each owns a reference to its payload */
    int inbox_inited;
    int read_fd, write_fd;         /* eventfd (both the same fd) or a pipe's two ends */
    PyObject *loop;                /* strong: this worker's event loop */
    PyObject *thread;              /* strong: the threading.Thread running _run */
    PyObject *drain_cb;            /* strong: bound self._drain */
    PyObject *serve_cb;            /* strong: bound self._serve */
    PyObject *done_cb;             /* strong: bound self._task_done */
    PyObject *running;             /* strong, worker thread only: dict Task -> job */
    struct { PyObject *group; size_t slot; } *serving;   /* worker thread only; strong group refs */
    size_t n_serving, cap_serving;
    int serve_scheduled;           /* worker thread only */
    int stopping;                  /* worker thread only */
    atomic_int dead;               /* 1 once the worker no longer drains its inbox */
    unsigned long fork_generation; /* fork generation the worker's thread was started in */
    size_t index;
} WorkerObject;

typedef struct PoolObject {
    PyObject_HEAD
    thrasks_state *st;
    PyObject *module;              /* strong */
    PyMutex lock;                  /* guards growth and shutdown */
    _Atomic size_t size;           /* workers[0..size) are started and published */
    WorkerObject **workers;        /* THRASKS_MAX_THREADS slots; strong refs */
    _Atomic size_t rr_counter;     /* draws each group's round-robin offset */
    atomic_int closed;
    unsigned long fork_generation;
    PyObject *weakreflist;
} PoolObject;

/* Post a message to a worker. Takes over the reference the message carries (its payload's).
 * Returns 0, or -1 with MemoryError set (the message was not queued; the reference is still the
 * caller's). If the worker has died, resolves the message itself (see bridge_orphan_*). */
int runner_post(WorkerObject *w, void *msg);

/* Validate a Python num_threads (an int, not a bool, 1..THRASKS_MAX_THREADS) into *n.
 * 0, or -1 with TypeError/ValueError set. Every entry point of the C API uses it. */
int runner_check_num_threads(PyObject *obj, size_t *n);

/* Make sure the pool has at least n workers (n already checked). 0, or -1 with an exception set. */
int runner_pool_ensure(PoolObject *pool, size_t n);

/* Worker i of a pool with at least i+1 workers (borrowed; the pool keeps it alive). */
static inline WorkerObject *runner_pool_worker(PoolObject *pool, size_t i)
{
    return pool->workers[i];
}

/* 0 if the pool can take work; -1 with RuntimeError set if it is shut down or was made before fork. */
int runner_pool_check(PoolObject *pool);

extern PyType_Spec runner_worker_spec;
extern PyType_Spec runner_pool_spec;

#endif
