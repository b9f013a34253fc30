/* args.c - the shared vectorcall argument parser (args.h). Touches nothing but its arguments. */
#include "args.h"

int args_parse(const args_spec *spec, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
               PyObject **out)
{
    int n = 0;
    while (spec->names[n] != NULL) {
        out[n++] = NULL;
    }
    if (nargs > spec->max_pos) {
        if (spec->max_pos == 0) {
            PyErr_Format(PyExc_TypeError, "%s() takes no positional arguments", spec->fname);
        }
        else {
            PyErr_Format(PyExc_TypeError, "%s() takes %s %d positional argument%s (%zd given)",
                         spec->fname, spec->required < spec->max_pos ? "at most" : "exactly",
                         spec->max_pos, spec->max_pos == 1 ? "" : "s", nargs);
        }
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        out[i] = args[i];
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int found = -1;
        for (int i = 0; i < n; i++) {
            if (PyUnicode_EqualToUTF8(key, spec->names[i])) {
                found = i;
                break;
            }
        }
        if (found < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", spec->fname, key);
            return -1;
        }
        if (found < spec->pos_only) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got some positional-only arguments passed as keyword arguments: '%U'",
                         spec->fname, key);
            return -1;
        }
        if (out[found] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", spec->fname,
                         spec->names[found]);
            return -1;
        }
        out[found] = args[nargs + k];
    }
    for (int i = 0; i < spec->required; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s' (pos %d)", spec->fname,
                         spec->names[i], i + 1);
            return -1;
        }
    }
    return 0;
}
