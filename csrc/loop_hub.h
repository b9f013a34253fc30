/* loop_hub.h - one wake-up fd per event loop that waits for jobs: how a finished job wakes the
 * loop of its owner with a write() on the worker, and no Python code there.
 *
 * A hub belongs to one loop (made on first use, on that loop's thread, registered with
 * loop.add_reader and kept as the loop's attribute `_thrasks_hub`). A client (a job sink, job.h)
 * embeds a hub_node; when its queue of finished jobs goes from empty to non-empty, the producer
 * posts the node on the hub (an intrusive stack: no allocation) and, if the hub's stack was empty,
 * signals the fd. The hub's reader callback reads the fd FIRST, then takes the stack and calls
 * each node's drain. A node is on the stack at most once: its `posted` flag is set by the post
 * that pushes it and cleared by the hub just before the drain. A client may also drain by other
 * ways (a retry through call_soon, an interrupted drain rescheduled): then its queue empties
 * while the node is still posted, and the next empty -> non-empty transition finds the flag set
 * and does not push the node again (pushing it twice made the stack a cycle: found by the GIL
 * leg as a crash in hub_run; test_worker_death's hub regression test).
 *
 * A loop that cannot have a hub (no add_reader, or no instance __dict__: uvloop, for one) gets
 * none: the client wakes it with call_soon_threadsafe instead (job.c).
 *
 * Ownership: a posted node holds a strong reference to its `owner` (taken by hub_post, dropped
 * after its drain); the hub traverses them, so a loop closed with nodes posted is reclaimed with
 * its hub by the GC. The loop holds its hub (the attribute, and the reader's handle); the hub
 * does not hold the loop.
 */
#ifndef THRASKS_LOOP_HUB_H
#define THRASKS_LOOP_HUB_H

#include "thrasks.h"
#include "dispatcher.h"
#include "wakefd.h"

typedef struct hub_node hub_node;
struct hub_node {
    disp_node node;                /* on the hub's stack */
    atomic_int posted;             /* 1 from the push to the hub's take-and-clear (see above) */
    PyObject *owner;               /* borrowed when idle; the post holds a strong reference */
    /* The loop's thread: take the client's work. New None, or NULL with an exception set
     * (KeyboardInterrupt / SystemExit propagate out of the loop; the rest is reposted). */
    PyObject *(*drain)(hub_node *node);
};

/* The hub of `loop`, made on first use. The loop's thread. New reference; NULL without an
 * exception when the loop cannot have one (the caller falls back); NULL with one on error. */
PyObject *hub_for_loop(thrasks_state *st, PyObject *loop);

/* Any thread: hand `node` to the hub (a strong reference to node->owner is taken) and wake the
 * loop if the hub's stack was empty; nothing if the node is posted already (its drain has not
 * started: it will see the client's new work). Never fails, never allocates. */
void hub_post(PyObject *hub, hub_node *node);

extern PyType_Spec hub_spec;

#endif
