/*
 * One non-blocking send() per socket for a whole list of sockets, with the GIL released.
 *
 * Why C: a job broadcast is one write per miner, and at 10,000 miners the kernel's part
 * (on loopback it also runs the receiving side of TCP) is ~8 us per write against ~1 us
 * of Python around it. Releasing the GIL for the whole list lets several threads run
 * the kernel's part on several cores at once; from Python every write would take the
 * GIL back. hashquarry.stratum.fanout falls back to the transports' own writes when this
 * module is not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <sys/socket.h>

/*
 * send_each(fds, payloads) -> [(index, result), ...] for every payload not sent whole:
 * result is the bytes sent (0 <= result < len) or -errno. Sockets must be non-blocking
 * or are treated so (MSG_DONTWAIT); MSG_NOSIGNAL keeps a closed peer from raising SIGPIPE.
 */
static PyObject *
py_send_each(PyObject *self, PyObject *args)
{
    PyObject *fds_arg, *payloads_arg, *fds = NULL, *payloads = NULL, *out = NULL;
    int *fdv = NULL;
    PyObject **held = NULL;
    Py_ssize_t *res = NULL, i, n, kept = 0;

    if (!PyArg_ParseTuple(args, "OO:send_each", &fds_arg, &payloads_arg))
        return NULL;
    fds = PySequence_Fast(fds_arg, "send_each: fds must be a sequence of ints");
    if (fds == NULL)
        goto done;
    payloads = PySequence_Fast(payloads_arg, "send_each: payloads must be a sequence of bytes");
    if (payloads == NULL)
        goto done;
    n = PySequence_Fast_GET_SIZE(fds);
    if (PySequence_Fast_GET_SIZE(payloads) != n) {
        PyErr_Format(PyExc_ValueError, "send_each: %zd fds but %zd payloads", n,
                     PySequence_Fast_GET_SIZE(payloads));
        goto done;
    }
    fdv = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int));
    held = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(PyObject *));
    res = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Py_ssize_t));
    if (fdv == NULL || held == NULL || res == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < n; i++) {
        PyObject *f = PySequence_Fast_GET_ITEM(fds, i);
        PyObject *p = PySequence_Fast_GET_ITEM(payloads, i);
        long fd = PyLong_AsLong(f);
        if (fd == -1 && PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "send_each: fds[%zd] must be an int", i);
            goto done;
        }
        if (fd < 0 || fd > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "send_each: fds[%zd] = %ld is not a descriptor", i, fd);
            goto done;
        }
        if (!PyBytes_Check(p)) {
            PyErr_Format(PyExc_TypeError, "send_each: payloads[%zd] must be bytes, not %.50s", i,
                         Py_TYPE(p)->tp_name);
            goto done;
        }
        fdv[i] = (int)fd;
        /* Our own reference: the caller's list may change while the GIL is released. */
        Py_INCREF(p);
        held[kept++] = p;
    }

    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < n; i++) {
        const char *buf = PyBytes_AS_STRING(held[i]);
        Py_ssize_t len = PyBytes_GET_SIZE(held[i]);
        ssize_t r;
        do {
            r = send(fdv[i], buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (r < 0 && errno == EINTR);
        res[i] = r < 0 ? -(Py_ssize_t)errno : (Py_ssize_t)r;
    }
    Py_END_ALLOW_THREADS

    out = PyList_New(0);
    if (out == NULL)
        goto done;
    for (i = 0; i < n; i++) {
        if (res[i] == PyBytes_GET_SIZE(held[i]))
            continue;
        PyObject *item = Py_BuildValue("(nn)", i, res[i]);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(out);
            goto done;
        }
        Py_DECREF(item);
    }

done:
    for (i = 0; i < kept; i++)
        Py_DECREF(held[i]);
    PyMem_Free(fdv);
    PyMem_Free(held);
    PyMem_Free(res);
    Py_XDECREF(fds);
    Py_XDECREF(payloads);
    return out;
}

static PyMethodDef methods[] = {
    {"send_each", py_send_each, METH_VARARGS,
     "send_each(fds, payloads) -> list of (index, bytes sent or -errno) for each payload "
     "not sent whole; the GIL is released while sending."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fanout", "Non-blocking send() to many sockets without the GIL.",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    return PyModule_Create(&module);
}
