/* group.h - thrasks._core.Group: the C core of ThreadedTaskGroup (thrasks/_group.py) and of the
 * plain groups threaded_gather and threaded_map use for futures without task-group rules.
 *
 * A group is an owner of jobs (job.h): it embeds a sink (its undelivered jobs and the finished
 * ones on their way back to its loop) and a route (pool.h: how its jobs reach the workers).
 * Per-kind behaviour is the sink's deliver hook:
 *   KIND_TASKGROUP  settle the future, then asyncio.TaskGroup._on_task_done's bookkeeping:
 *                   errors, the base error, the first failure aborts the group and cancels the
 *                   parent task
 *   KIND_PLAIN      settle the future only
 *
 * Threads: create_task and _abort may be called from any thread (a task on a worker spawning a
 * sibling); everything else from the group's loop thread, as with asyncio.TaskGroup. Binding
 * (`_bind`, from __aenter__) publishes the sink, the route and the loop with a release store of
 * `state`; create_task acquires it. Object fields the Python side reads and writes are guarded
 * by the group's critical section.
 */
#ifndef THRASKS_GROUP_H
#define THRASKS_GROUP_H

#include "future_bridge.h"

enum { KIND_TASKGROUP = 0, KIND_PLAIN = 1 };

extern PyType_Spec group_spec;

#endif
