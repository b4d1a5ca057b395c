/*
 * SHA-256d and the merkle-branch fold of share validation, in one call each.
 *
 * Why C: a share on a 12-level branch costs 14 double SHA-256s. Through hashlib each is
 * four Python-level calls and two hash objects (about 0.85 us on the project's VM), so
 * hashing alone was a third of the pool's CPU per share. The hashing itself is
 * OpenSSL's (SHA-NI or AVX2 code where the CPU has it); this file only removes the
 * per-call overhead. hashquarry.chain.hashing falls back to hashlib when this module
 * is not built, with the same results (tests compare the two).
 *
 * The low-level SHA256_* calls are deprecated in OpenSSL 3 in favour of EVP, whose
 * per-call fetch costs more than the hash of 64 bytes; they remain in every 3.x.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <openssl/sha.h>

static void
sha256d_raw(const unsigned char *data, size_t len, unsigned char out[32])
{
    SHA256_CTX ctx;
    unsigned char first[32];
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, data, len);
    SHA256_Final(first, &ctx);
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, first, 32);
    SHA256_Final(out, &ctx);
}

static PyObject *
py_sha256d(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    unsigned char out[32];
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    /* The GIL stays held: releasing it costs more than hashing a header. */
    sha256d_raw(view.buf, (size_t)view.len, out);
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

/* fold_branch(first, branch): root = sha256d(root + h) for h in branch, from `first`. */
static PyObject *
py_fold_branch(PyObject *self, PyObject *args)
{
    Py_buffer first;
    PyObject *branch, *seq;
    unsigned char pair[64];
    Py_ssize_t i, n;
    if (!PyArg_ParseTuple(args, "y*O:fold_branch", &first, &branch))
        return NULL;
    if (first.len != 32) {
        PyBuffer_Release(&first);
        PyErr_Format(PyExc_ValueError, "fold_branch: first hash must be 32 bytes, got %zd",
                     first.len);
        return NULL;
    }
    memcpy(pair, first.buf, 32);
    PyBuffer_Release(&first);
    seq = PySequence_Fast(branch, "fold_branch: branch must be a sequence of 32-byte hashes");
    if (seq == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    for (i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        char *buf;
        Py_ssize_t len;
        if (!PyBytes_Check(item) || PyBytes_AsStringAndSize(item, &buf, &len) < 0
            || len != 32) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError,
                         "fold_branch: branch[%zd] must be 32 bytes", i);
            return NULL;
        }
        memcpy(pair + 32, buf, 32);
        sha256d_raw(pair, 64, pair);
    }
    Py_DECREF(seq);
    return PyBytes_FromStringAndSize((const char *)pair, 32);
}

static PyMethodDef methods[] = {
    {"sha256d", py_sha256d, METH_O, "SHA-256 of the SHA-256 of a bytes-like object."},
    {"fold_branch", py_fold_branch, METH_VARARGS,
     "Fold 32-byte hashes into `first`, left to right: the merkle root from a branch."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sha256d", "SHA-256d without per-call Python overhead.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__sha256d(void)
{
    return PyModule_Create(&module);
}
