/* args.h - one small parser for the vectorcall (METH_FASTCALL | METH_KEYWORDS) methods, with
 * CPython's own error messages, so every C callable of thrasks reports bad arguments the same way
 * (the tp_new/tp_init slots use PyArg_ParseTupleAndKeywords, which already does).
 *
 *   static const char *const names[] = {"coro", "name", "context", NULL};
 *   static const args_spec spec = {"create_task", names, .pos_only = 0, .max_pos = 1, .required = 1};
 *   PyObject *v[3];
 *   if (args_parse(&spec, args, nargs, kwnames, v) < 0) return NULL;
 *
 * Names before `pos_only` are positional-only, names before `max_pos` may be given by position,
 * the rest are keyword-only; the first `required` are required. v[i] is a borrowed reference, or
 * NULL when the argument was not given. */
#ifndef THRASKS_ARGS_H
#define THRASKS_ARGS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct args_spec {
    const char *fname;
    const char *const *names; /* NULL-terminated */
    int pos_only, max_pos, required;
} args_spec;

/* 0, or -1 with TypeError set ("f() got multiple values for argument 'x'", ...). */
int args_parse(const args_spec *spec, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
               PyObject **out);

#endif
