# cython: language_level=3
"""Thin NumPy interface to the cconv GEMM core (``_kernels/gemm.c``).

``matmul`` is mainly for testing and benchmarking the kernels; the ISA path is chosen
at import (``CCONV_ISA=avx512|avx2|generic`` forces one) and can be changed with
``select_isa``.
"""
import os
import time

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t, intptr_t

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
    void cconv_pack_a_f32(cc_idx m, cc_idx k, const float *a, cc_idx rs, cc_idx cs, float *ap)
    void cconv_pack_a_f64(cc_idx m, cc_idx k, const double *a, cc_idx rs, cc_idx cs,
                          double *ap)
    void cconv_gemm_macro_f32(cc_idx m, cc_idx n, cc_idx kc, const float *ap, cc_idx ps_a,
                              const float *bp, cc_idx ps_b, float *c, cc_idx ldc,
                              int accumulate)
    void cconv_gemm_macro_f64(cc_idx m, cc_idx n, cc_idx kc, const double *ap, cc_idx ps_a,
                              const double *bp, cc_idx ps_b, double *c, cc_idx ldc,
                              int accumulate)
    void cconv_igemm_ukernel_f32(cc_idx kc, const float *const *a_rows, const float *b,
                                 float *c, cc_idx ldc, cc_idx m, cc_idx n, int accumulate)
    void cconv_igemm_ukernel_f64(cc_idx kc, const double *const *a_rows, const double *b,
                                 double *c, cc_idx ldc, cc_idx m, cc_idx n, int accumulate)
    void cconv_igemm_taps_ukernel_f32(cc_idx kc, cc_idx ntaps, const float *const *a_rows,
                                      cc_idx ts, const float *b, float *c, cc_idx ldc,
                                      cc_idx m, cc_idx n, int accumulate)
    void cconv_igemm_taps_ukernel_f64(cc_idx kc, cc_idx ntaps, const double *const *a_rows,
                                      cc_idx ts, const double *b, double *c, cc_idx ldc,
                                      cc_idx m, cc_idx n, int accumulate)
    int cconv_pixrow_max_f32()
    int cconv_pixrow_max_f64()
    void cconv_pixrow_ukernel_f32(cc_idx m, cc_idx n, cc_idx kc, const float *x, const cc_idx *offs,
                                  const float *b, float *c, cc_idx ldc, int accumulate)
    void cconv_pixrow_ukernel_f64(cc_idx m, cc_idx n, cc_idx kc, const double *x, const cc_idx *offs,
                                  const double *b, double *c, cc_idx ldc, int accumulate)
    void cconv_pixrow2_ukernel_f32(cc_idx m1, cc_idx n, cc_idx kc, const float *x, cc_idx rs,
                                   const cc_idx *offs, const float *b, float *c, cc_idx ldc,
                                   int accumulate)
    void cconv_pixrow2_ukernel_f64(cc_idx m1, cc_idx n, cc_idx kc, const double *x, cc_idx rs,
                                   const cc_idx *offs, const double *b, double *c, cc_idx ldc,
                                   int accumulate)

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


def igemm_tile(a, rows, b, c, bint accumulate=False):
    """Test hook for the indirect micro-kernel (``cconv_igemm_ukernel_*``).

    Computes, in place, ``c[:m, :n] = (c if accumulate else 0) + a[rows] @ b`` with
    ``m = len(rows)`` (1 <= m <= MR of the active path) and ``n = b.shape[1]``
    (1 <= n <= NR). Row i of the tile is the pointer ``&a[rows[i], 0]`` (rows may repeat
    or come in any order); the MR - m unused row pointers are NULL. ``b`` (kc x n) is
    packed into one zero-padded NR panel. ``a`` needs unit column stride and
    ``a.shape[1] >= kc``; ``c`` is a writable (m, n) array with unit column stride whose
    row stride is passed as ldc (a view into a larger array is fine).
    """
    cdef cnp.ndarray A = a
    cdef cnp.ndarray B = b
    cdef cnp.ndarray C = c
    if A.ndim != 2 or B.ndim != 2 or C.ndim != 2:
        raise ValueError("igemm_tile expects 2-D a, b and c")
    dt = A.dtype
    if dt not in (np.float32, np.float64) or B.dtype != dt or C.dtype != dt:
        raise TypeError("igemm_tile expects float32 or float64 arrays of one dtype")
    mr, nr = tile_shape(dt)
    cdef cc_idx m = len(rows), n = B.shape[1], kc = B.shape[0]
    if not (1 <= m <= mr and 1 <= n <= nr):
        raise ValueError(f"tile {m}x{n} outside 1..{mr} x 1..{nr}")
    if A.shape[1] < kc or (kc > 0 and A.shape[0] > 0 and _elem_stride(A, 1) != 1):
        raise ValueError("a needs unit column stride and at least kc columns")
    if C.shape[0] != m or C.shape[1] != n or (n > 1 and _elem_stride(C, 1) != 1):
        raise ValueError("c must be an (m, n) array with unit column stride")
    if not C.flags.writeable:
        raise ValueError("c must be writable")
    cdef cc_idx ldc = _elem_stride(C, 0)
    cdef cc_idx rsa = _elem_stride(A, 0)
    panel = np.zeros((max(kc, 1), nr), dtype=dt)
    panel[:kc, :n] = B
    cdef cnp.ndarray P = panel
    cdef cnp.ndarray ptrs = np.zeros(mr, dtype=np.intp)
    cdef intptr_t *pp = <intptr_t *>cnp.PyArray_DATA(ptrs)
    cdef char *base = <char *>cnp.PyArray_DATA(A)
    cdef Py_ssize_t i, r, item = A.itemsize
    for i in range(m):
        r = int(rows[i])
        if not 0 <= r < A.shape[0]:
            raise IndexError(f"row {r} out of range")
        pp[i] = <intptr_t>(base + r * rsa * item)
    cdef void *pb = cnp.PyArray_DATA(P)
    cdef void *pc = cnp.PyArray_DATA(C)
    cdef int acc = accumulate
    if dt == np.float32:
        with nogil:
            cconv_igemm_ukernel_f32(kc, <const float *const *>pp, <const float *>pb,
                                    <float *>pc, ldc, m, n, acc)
    else:
        with nogil:
            cconv_igemm_ukernel_f64(kc, <const double *const *>pp, <const double *>pb,
                                    <double *>pc, ldc, m, n, acc)
    return c


def igemm_taps_tile(a, rows, b, c, bint accumulate=False):
    """Test hook for the indirect micro-kernel over taps (``cconv_igemm_taps_ukernel_*``).

    ``rows``: (ntaps, m) row indices of ``a``, 1 <= m <= MR; ``b``: (ntaps * kc) x n,
    1 <= n <= NR. Computes, in place, ``c[:m, :n] = (c if accumulate else 0) +
    sum_t a[rows[t]][:, :kc] @ b[t*kc:(t+1)*kc]``. Tap t's pointers sit MR + 1 apart
    in one table (a stride other than MR); rows i >= m point at the tap's row 0, as
    the contract allows. ``a``, ``c`` as for :func:`igemm_tile`.
    """
    cdef cnp.ndarray A = a
    cdef cnp.ndarray B = b
    cdef cnp.ndarray C = c
    R = np.asarray(rows, dtype=np.intp)
    if A.ndim != 2 or B.ndim != 2 or C.ndim != 2 or R.ndim != 2:
        raise ValueError("igemm_taps_tile expects 2-D a, rows, b and c")
    dt = A.dtype
    if dt not in (np.float32, np.float64) or B.dtype != dt or C.dtype != dt:
        raise TypeError("igemm_taps_tile expects float32 or float64 arrays of one dtype")
    mr, nr = tile_shape(dt)
    cdef cc_idx ntaps = R.shape[0], m = R.shape[1], n = B.shape[1]
    if ntaps < 1 or B.shape[0] % ntaps:
        raise ValueError(f"b has {B.shape[0]} rows, not a multiple of {ntaps} taps")
    cdef cc_idx kc = B.shape[0] // ntaps
    if not (1 <= m <= mr and 1 <= n <= nr):
        raise ValueError(f"tile {m}x{n} outside 1..{mr} x 1..{nr}")
    if A.shape[0] < 1 or A.shape[1] < kc or (kc > 0 and _elem_stride(A, 1) != 1):
        raise ValueError("a needs unit column stride and at least kc columns")
    if C.shape[0] != m or C.shape[1] != n or (n > 1 and _elem_stride(C, 1) != 1):
        raise ValueError("c must be an (m, n) array with unit column stride")
    if not C.flags.writeable:
        raise ValueError("c must be writable")
    if R.size and (R.min() < 0 or R.max() >= A.shape[0]):
        raise IndexError("a row index is out of range")
    cdef cc_idx ldc = _elem_stride(C, 0), rsa = _elem_stride(A, 0), ts = mr + 1
    panel = np.zeros((max(ntaps * kc, 1), nr), dtype=dt)
    panel[:ntaps * kc, :n] = B
    cdef cnp.ndarray P = panel
    cdef cnp.ndarray ptrs = np.zeros(ntaps * ts, dtype=np.intp)
    cdef intptr_t *pp = <intptr_t *>cnp.PyArray_DATA(ptrs)
    cdef char *base = <char *>cnp.PyArray_DATA(A)
    cdef Py_ssize_t t, i, r, item = A.itemsize
    for t in range(ntaps):
        for i in range(mr):
            r = R[t, i if i < m else 0]
            pp[t * ts + i] = <intptr_t>(base + r * rsa * item)
    cdef void *pb = cnp.PyArray_DATA(P)
    cdef void *pc = cnp.PyArray_DATA(C)
    cdef int acc = accumulate
    if dt == np.float32:
        with nogil:
            cconv_igemm_taps_ukernel_f32(kc, ntaps, <const float *const *>pp, ts,
                                         <const float *>pb, <float *>pc, ldc, m, n, acc)
    else:
        with nogil:
            cconv_igemm_taps_ukernel_f64(kc, ntaps, <const double *const *>pp, ts,
                                         <const double *>pb, <double *>pc, ldc, m, n, acc)
    return c


def pixrow_max(dtype):
    """Widest pixel row (m) of the pixel-row micro-kernel on the active ISA path."""
    return cconv_pixrow_max_f32() if np.dtype(dtype) == np.float32 else cconv_pixrow_max_f64()


def pixrow_tile(x, offs, b, c, bint accumulate=False, rs=None, n=None):
    """Test hook for the pixel-row micro-kernel (``cconv_pixrow_ukernel_*``).

    Computes, in place, ``c[i, :n] = (c[i] if accumulate else 0) + sum_k x[offs[k] + i] *
    b[k, :n]`` for i < m = c.shape[0] (1 <= m <= pixrow_max), n the needed columns (1..NR,
    default NR; the kernel may write columns up to NR): ``b`` (kc x NR) is one packed
    panel, ``c`` a writable (m, NR) array with unit column stride (its row stride is
    passed as ldc). ``x`` is 1-D contiguous, every ``offs[k] + m <= len(x)``. With ``rs``
    (``cconv_pixrow2_ukernel_*``, m even): rows i >= m/2 read ``x[offs[k] + rs + i -
    m/2]`` instead."""
    cdef cnp.ndarray X = np.ascontiguousarray(x)
    cdef cnp.ndarray B = np.ascontiguousarray(b)
    cdef cnp.ndarray C = c
    cdef cnp.ndarray O = np.ascontiguousarray(offs, dtype=np.int64)
    dt = X.dtype
    if X.ndim != 1 or B.ndim != 2 or C.ndim != 2 or O.ndim != 1:
        raise ValueError("pixrow_tile expects 1-D x and offs, 2-D b and c")
    if dt not in (np.float32, np.float64) or B.dtype != dt or C.dtype != dt:
        raise TypeError("pixrow_tile expects float32 or float64 arrays of one dtype")
    nr = tile_shape(dt)[1]
    cdef cc_idx m = C.shape[0], kc = O.shape[0]
    if not 1 <= m <= pixrow_max(dt):
        raise ValueError(f"m={m} outside 1..{pixrow_max(dt)}")
    if B.shape[0] != kc or B.shape[1] != nr or C.shape[1] != nr or _elem_stride(C, 1) != 1:
        raise ValueError(f"b must be ({kc}, {nr}) and c ({m}, {nr}) with unit column stride")
    if not C.flags.writeable:
        raise ValueError("c must be writable")
    cdef cc_idx m1 = m // 2, r = 0 if rs is None else rs
    cdef cc_idx ncol = nr if n is None else n
    if not 1 <= ncol <= nr:
        raise ValueError(f"n={ncol} outside 1..{nr}")
    if rs is not None and (m % 2 or r < 0):
        raise ValueError(f"row pairs need an even m and rs >= 0, got m={m}, rs={rs}")
    if kc and (O.min() < 0 or O.max() + (m if rs is None else max(m1, r + m1)) > X.shape[0]):
        raise IndexError("offs + m outside x")
    cdef cc_idx ldc = _elem_stride(C, 0)
    cdef void *px = cnp.PyArray_DATA(X)
    cdef const cc_idx *po = <const cc_idx *>cnp.PyArray_DATA(O)
    cdef void *pb = cnp.PyArray_DATA(B)
    cdef void *pc = cnp.PyArray_DATA(C)
    cdef int acc = accumulate
    if rs is not None:
        if dt == np.float32:
            with nogil:
                cconv_pixrow2_ukernel_f32(m1, ncol, kc, <const float *>px, r, po, <const float *>pb,
                                          <float *>pc, ldc, acc)
        else:
            with nogil:
                cconv_pixrow2_ukernel_f64(m1, ncol, kc, <const double *>px, r, po,
                                          <const double *>pb, <double *>pc, ldc, acc)
        return c
    if dt == np.float32:
        with nogil:
            cconv_pixrow_ukernel_f32(m, ncol, kc, <const float *>px, po, <const float *>pb,
                                     <float *>pc, ldc, acc)
    else:
        with nogil:
            cconv_pixrow_ukernel_f64(m, ncol, kc, <const double *>px, po, <const double *>pb,
                                     <double *>pc, ldc, acc)
    return c


def _bench_tile(dtype, str kind, cc_idx kc, long reps=20000, int repeat=5):
    """Test/benchmark hook: best seconds per call of one full MR x NR tile with k = kc,
    accumulating into an L1-resident C. kind 'igemm': the indirect micro-kernel on MR row
    pointers into a contiguous MR x kc buffer; kind 'packed': the macro-kernel on one
    packed A panel and one B panel (a single full tile: the packed micro-kernel)."""
    dt = np.dtype(dtype)
    cdef int mr, nr
    mr, nr = tile_shape(dt)
    rng = np.random.default_rng(0)
    cdef cnp.ndarray A = np.ascontiguousarray(rng.standard_normal((mr, kc)).astype(dt))
    cdef cnp.ndarray P = np.ascontiguousarray(rng.standard_normal((kc, nr)).astype(dt))
    cdef cnp.ndarray AP = np.zeros(mr * kc + 1, dtype=dt)
    cdef cnp.ndarray C = np.zeros((mr, nr), dtype=dt)
    cdef cnp.ndarray ptrs = np.zeros(mr, dtype=np.intp)
    cdef intptr_t *pp = <intptr_t *>cnp.PyArray_DATA(ptrs)
    cdef char *base = <char *>cnp.PyArray_DATA(A)
    cdef int i
    cdef Py_ssize_t item = A.itemsize
    for i in range(mr):
        pp[i] = <intptr_t>(base + i * kc * item)
    cdef void *pa = cnp.PyArray_DATA(A)
    cdef void *pap = cnp.PyArray_DATA(AP)
    cdef void *pb = cnp.PyArray_DATA(P)
    cdef void *pc = cnp.PyArray_DATA(C)
    cdef bint f32 = dt == np.float32
    cdef bint ind = kind == "igemm"
    if not ind and kind != "packed":
        raise ValueError("kind must be 'igemm' or 'packed'")
    if f32:
        cconv_pack_a_f32(mr, kc, <const float *>pa, kc, 1, <float *>pap)
    else:
        cconv_pack_a_f64(mr, kc, <const double *>pa, kc, 1, <double *>pap)
    cdef long r
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        with nogil:
            for r in range(reps):
                if ind and f32:
                    cconv_igemm_ukernel_f32(kc, <const float *const *>pp, <const float *>pb,
                                            <float *>pc, nr, mr, nr, 1)
                elif ind:
                    cconv_igemm_ukernel_f64(kc, <const double *const *>pp, <const double *>pb,
                                            <double *>pc, nr, mr, nr, 1)
                elif f32:
                    cconv_gemm_macro_f32(mr, nr, kc, <const float *>pap, mr * kc,
                                         <const float *>pb, kc * nr, <float *>pc, nr, 1)
                else:
                    cconv_gemm_macro_f64(mr, nr, kc, <const double *>pap, mr * kc,
                                         <const double *>pb, kc * nr, <double *>pc, nr, 1)
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def _select_isa_from_env():
    name = os.environ.get("CCONV_ISA")
    if name:
        select_isa(name)


_select_isa_from_env()
