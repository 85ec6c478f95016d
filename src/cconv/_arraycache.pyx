"""The array cache (_kernels/arraycache.c) as a NumPy memory handler (NEP 49).

`use()` makes it NumPy's handler in the current context and returns the handler it
replaced, for `restore()`; arrays allocated meanwhile keep the handler, so their buffers
come back to the cache whenever they are freed, wherever that happens."""
from libc.stdint cimport uint8_t
from libc.string cimport strncpy

cimport numpy as cnp

cnp.import_array()

cdef extern from "arraycache.h" nogil:
    void *cconv_ac_malloc(void *ctx, size_t size)
    void *cconv_ac_calloc(void *ctx, size_t nelem, size_t elsize)
    void *cconv_ac_realloc(void *ctx, void *ptr, size_t new_size)
    void cconv_ac_free(void *ctx, void *ptr, size_t size)
    size_t cconv_ac_set_limit(size_t limit)
    void cconv_ac_after_fork_child()
    void cconv_ac_stats(size_t *limit, size_t *nbytes, size_t *blocks, size_t *hits,
                        size_t *misses)

cdef extern from "numpy/ndarraytypes.h":
    ctypedef struct PyDataMemAllocator:
        void *ctx
        void *(*malloc)(void *ctx, size_t size) noexcept nogil
        void *(*calloc)(void *ctx, size_t nelem, size_t elsize) noexcept nogil
        void *(*realloc)(void *ctx, void *ptr, size_t new_size) noexcept nogil
        void (*free)(void *ctx, void *ptr, size_t size) noexcept nogil
    ctypedef struct PyDataMem_Handler:
        char name[127]
        uint8_t version
        PyDataMemAllocator allocator

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)

cdef extern from "Python.h":
    object PyCapsule_New(void *pointer, const char *name, void *destructor)

cdef PyDataMem_Handler _handler
strncpy(_handler.name, b"cconv_array_cache", 126)
_handler.version = 1
_handler.allocator.ctx = NULL
_handler.allocator.malloc = cconv_ac_malloc
_handler.allocator.calloc = cconv_ac_calloc
_handler.allocator.realloc = cconv_ac_realloc
_handler.allocator.free = cconv_ac_free

# NumPy looks the handler up by this capsule name; the struct is static, so the capsule
# needs no destructor and stays valid for the life of the process
HANDLER = PyCapsule_New(&_handler, b"mem_handler", NULL)
NAME = "cconv_array_cache"


def use():
    """Make the cache NumPy's memory handler in the current context; returns the handler
    it replaced (give it to restore)."""
    return PyDataMem_SetHandler(HANDLER)


def restore(previous):
    PyDataMem_SetHandler(previous)


def after_fork_in_child():
    cconv_ac_after_fork_child()


def set_limit(size_t limit):
    """Keep at most `limit` bytes of freed buffers (0: none); returns the previous limit."""
    return cconv_ac_set_limit(limit)


def stats():
    """(limit, cached bytes, cached blocks, hits, misses) of the cache."""
    cdef size_t limit, nbytes, blocks, hits, misses
    cconv_ac_stats(&limit, &nbytes, &blocks, &hits, &misses)
    return limit, nbytes, blocks, hits, misses
