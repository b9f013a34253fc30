/* loop_hub.c - the per-loop wake-up fd (contract in loop_hub.h). Touches: hubs, and the nodes
 * posted to them (through their drain function); nothing of jobs or owners. */
#include "loop_hub.h"

typedef struct HubObject {
    PyObject_HEAD
    wakefd wake;                   /* registered with the loop's add_reader */
    disp_stack pending;            /* posted nodes; each holds a reference to its owner */
} HubObject;

void hub_post(PyObject *hub, hub_node *node)
{
    HubObject *h = (HubObject *)hub;
    /* acq_rel: exactly one poster wins until the hub clears the flag; the winner's push below
     * publishes the node. Losers return: a hub drain whose take of the client's queue follows
     * their push is still to come (the hub clears the flag before the client takes its queue,
     * whose release/acquire orders the clear before any producer that finds it empty again). */
    if (atomic_exchange_explicit(&node->posted, 1, memory_order_acq_rel) != 0) {
        return;
    }
    Py_INCREF(node->owner); /* the post owns it until the drain has run */
    if (disp_stack_push(&h->pending, &node->node)) { /* release: see dispatcher.h, section 4 */
        wakefd_signal(&h->wake);
    }
}

/* The reader callback: read the fd, then take the posted nodes and drain each. */
static PyObject *hub_run(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    HubObject *h = (HubObject *)self;
    wakefd_consume(&h->wake); /* FIRST (loop_hub.h) */
    disp_node *n = disp_stack_take_all(&h->pending);
    while (n != NULL) {
        hub_node *node = disp_container_of(n, hub_node, node);
        n = n->next; /* read before the drain: a producer may post the node again during it */
        PyObject *owner = node->owner; /* the post's reference */
        /* release: before the drain takes the client's queue (hub_post's comment) */
        atomic_store_explicit(&node->posted, 0, memory_order_release);
        PyObject *r = node->drain(node);
        Py_DECREF(owner);
        if (r == NULL) {
            /* An interrupt propagates out of the loop; the nodes not drained yet are posted
             * again (they keep their references) for the next run. */
            while (n != NULL) {
                disp_node *next = n->next;
                hub_node *rest = disp_container_of(n, hub_node, node);
                if (disp_stack_push(&h->pending, &rest->node)) {
                    wakefd_signal(&h->wake);
                }
                n = next;
            }
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyMethodDef hub_run_def = {"_run", hub_run, METH_NOARGS, NULL};

PyObject *hub_for_loop(thrasks_state *st, PyObject *loop)
{
    PyObject *hub = NULL;
    if (PyObject_GetOptionalAttr(loop, st->s_hub_attr, &hub) < 0) {
        return NULL;
    }
    if (hub != NULL && Py_IS_TYPE(hub, st->hub_type)) {
        return hub;
    }
    Py_XDECREF(hub);
    if (FAULT_C()) {
        return NULL; /* as if the loop could have none: the fallback is tested this way too */
    }
    HubObject *h = PyObject_GC_New(HubObject, st->hub_type);
    if (h == NULL) {
        PyErr_Clear(); /* no memory for the fast path: the fallback still works */
        return NULL;
    }
    wakefd_init(&h->wake);
    disp_stack_init(&h->pending);
    PyObject_GC_Track(h);
    PyObject *run = NULL, *fd = NULL, *r = NULL;
    if (wakefd_open(&h->wake) < 0 || (run = PyCFunction_NewEx(&hub_run_def, (PyObject *)h, NULL)) == NULL ||
        (fd = PyLong_FromLong(h->wake.read_fd)) == NULL ||
        (r = PyObject_CallMethodObjArgs(loop, st->s_add_reader, fd, run, NULL)) == NULL) {
        PyErr_Clear(); /* no add_reader (or no fd): fall back */
        Py_XDECREF(run);
        Py_XDECREF(fd);
        Py_DECREF(h);
        return NULL;
    }
    Py_DECREF(r);
    if (PyObject_SetAttr(loop, st->s_hub_attr, (PyObject *)h) < 0) {
        PyErr_Clear(); /* no instance __dict__: fall back */
        r = PyObject_CallMethodOneArg(loop, st->s_remove_reader, fd);
        Py_XDECREF(r);
        PyErr_Clear();
        Py_DECREF(run);
        Py_DECREF(fd);
        Py_DECREF(h);
        return NULL;
    }
    Py_DECREF(run);
    Py_DECREF(fd);
    return (PyObject *)h;
}

static int hub_traverse(PyObject *self, visitproc visit, void *arg)
{
    HubObject *h = (HubObject *)self;
    Py_VISIT(Py_TYPE(self));
    /* relaxed: the GC runs with the world stopped */
    for (disp_node *n = atomic_load_explicit(&h->pending.top, memory_order_relaxed); n != NULL; n = n->next) {
        Py_VISIT(disp_container_of(n, hub_node, node)->owner);
    }
    return 0;
}

static int hub_clear(PyObject *self)
{
    HubObject *h = (HubObject *)self;
    for (disp_node *n = disp_stack_take_all(&h->pending); n != NULL;) {
        hub_node *node = disp_container_of(n, hub_node, node);
        n = n->next;
        atomic_store_explicit(&node->posted, 0, memory_order_relaxed); /* off every stack now */
        Py_DECREF(node->owner); /* the post's reference: its loop will never drain it */
    }
    return 0;
}

static void hub_dealloc(PyObject *self)
{
    HubObject *h = (HubObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    hub_clear(self);
    wakefd_close(&h->wake);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot hub_slots[] = {
    {Py_tp_doc, "The wake-up fd of one event loop waiting for thrasks jobs (internal)."},
    {Py_tp_traverse, hub_traverse},
    {Py_tp_clear, hub_clear},
    {Py_tp_dealloc, hub_dealloc},
    {0, NULL},
};

PyType_Spec hub_spec = {
    .name = "thrasks._core.LoopHub",
    .basicsize = sizeof(HubObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = hub_slots,
};
