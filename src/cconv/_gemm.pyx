# cython: language_level=3
"""Thin NumPy interface to the cconv GEMM core (``_kernels/gemm.c``).

``matmul`` is mainly for testing and benchmarking the kernels; the ISA path is chosen
at import (``CCONV_ISA=avx512|avx2|generic`` forces one) and can be changed with
``select_isa``.
"""
import os

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t

cnp.import_array()

cdef extern from "gemm.h" nogil:
    ctypedef int64_t cc_idx
    int CCONV_ISA_GENERIC
    int CCONV_ISA_AVX2
    int CCONV_ISA_AVX512
    int cconv_isa_best()
    int cconv_isa_active()
    int cconv_isa_select(int isa)
    const char *cconv_isa_name(int isa)
    int cconv_mr_f32()
    int cconv_nr_f32()
    int cconv_mr_f64()
    int cconv_nr_f64()
    int cconv_gemm_f32(cc_idx m, cc_idx n, cc_idx k, const float *a, cc_idx rsa, cc_idx csa,
                       const float *b, cc_idx rsb, cc_idx csb, float *c, cc_idx ldc,
                       int nthreads)
    int cconv_gemm_f64(cc_idx m, cc_idx n, cc_idx k, const double *a, cc_idx rsa, cc_idx csa,
                       const double *b, cc_idx rsb, cc_idx csb, double *c, cc_idx ldc,
                       int nthreads)

_ISA_IDS = {"generic": CCONV_ISA_GENERIC, "avx2": CCONV_ISA_AVX2, "avx512": CCONV_ISA_AVX512}


def isa_name():
    """Name of the active ISA path: 'generic', 'avx2' or 'avx512'."""
    return cconv_isa_name(cconv_isa_active()).decode()


def isa_best_name():
    """Name of the best ISA path this CPU supports."""
    return cconv_isa_name(cconv_isa_best()).decode()


def select_isa(name):
    """Make ``name`` ('generic', 'avx2', 'avx512') the active path.

    ValueError for an unknown name, RuntimeError if this CPU lacks it.
    """
    try:
        isa = _ISA_IDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown ISA path {name!r}; expected one of {sorted(_ISA_IDS)}")
    if cconv_isa_select(isa) != 0:
        raise RuntimeError(f"this CPU does not support the {name!r} path")


def tile_shape(dtype):
    """Register tile (MR, NR) of the active path for float32 or float64."""
    dt = np.dtype(dtype)
    if dt == np.float32:
        return (cconv_mr_f32(), cconv_nr_f32())
    if dt == np.float64:
        return (cconv_mr_f64(), cconv_nr_f64())
    raise TypeError(f"no GEMM kernel for dtype {dt}")


cdef cc_idx _elem_stride(cnp.ndarray x, int axis) except? -1:
    cdef Py_ssize_t s = x.strides[axis]
    cdef Py_ssize_t item = x.itemsize
    if s % item != 0:
        raise ValueError("array strides must be multiples of the item size")
    return s // item


def matmul(a, b, int nthreads=1):
    """Return ``a @ b`` for 2-D float32 or float64 arrays of the same dtype.

    Any strides are accepted (no copy); the result is a new C-contiguous array.
    Every element is one running FMA sum over k in increasing order, so the result is
    bitwise identical for every ISA path and thread count.
    """
    if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
        raise TypeError("matmul expects NumPy arrays")
    cdef cnp.ndarray A = a
    cdef cnp.ndarray B = b
    if A.ndim != 2 or B.ndim != 2:
        raise ValueError(f"matmul expects 2-D arrays, got {A.ndim}-D and {B.ndim}-D")
    if A.dtype != B.dtype or A.dtype not in (np.float32, np.float64):
        raise TypeError(f"matmul expects two float32 or two float64 arrays, "
                        f"got {A.dtype} and {B.dtype}")
    if A.shape[1] != B.shape[0]:
        raise ValueError(f"shape mismatch: {a.shape} @ {b.shape}")
    if nthreads < 1:
        raise ValueError("nthreads must be >= 1")
    cdef cc_idx m = A.shape[0], k = A.shape[1], n = B.shape[1]
    cdef cc_idx rsa = _elem_stride(A, 0), csa = _elem_stride(A, 1)
    cdef cc_idx rsb = _elem_stride(B, 0), csb = _elem_stride(B, 1)
    cdef cnp.ndarray C = np.empty((m, n), dtype=A.dtype)
    cdef int rc = 0
    cdef void *pa = cnp.PyArray_DATA(A)
    cdef void *pb = cnp.PyArray_DATA(B)
    cdef void *pc = cnp.PyArray_DATA(C)
    if A.dtype == np.float32:
        with nogil:
            rc = cconv_gemm_f32(m, n, k, <const float *>pa, rsa, csa, <const float *>pb,
                                rsb, csb, <float *>pc, n, nthreads)
    else:
        with nogil:
            rc = cconv_gemm_f64(m, n, k, <const double *>pa, rsa, csa, <const double *>pb,
                                rsb, csb, <double *>pc, n, nthreads)
    if rc != 0:
        raise MemoryError("cconv GEMM could not allocate its packing buffers")
    return C


def _select_isa_from_env():
    name = os.environ.get("CCONV_ISA")
    if name:
        select_isa(name)


_select_isa_from_env()
