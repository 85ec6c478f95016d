# Output positions o whose input index o*s + off lies inside [0, n): o in [_lo, _hi).
# Shared by the direct loop nests (_direct.pyx, _backward.pyx).

cdef inline Py_ssize_t _lo(Py_ssize_t off, Py_ssize_t s) noexcept nogil:
    # smallest o >= 0 with o*s + off >= 0
    if off >= 0:
        return 0
    return (-off + s - 1) // s


cdef inline Py_ssize_t _hi(Py_ssize_t off, Py_ssize_t s, Py_ssize_t n, Py_ssize_t on) noexcept nogil:
    # one past the largest o < on with o*s + off < n
    cdef Py_ssize_t h
    if n - 1 - off < 0:
        return 0
    h = (n - 1 - off) // s + 1
    return h if h < on else on
