"""OpenMP runtime queries shared by the Python layer (threads, build facts)."""

cdef extern from "omp_shim.h" nogil:
    int cconv_omp_enabled()
    int cconv_omp_max_threads()
    void cconv_omp_set_threads(int n)
    int cconv_omp_version()


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(cconv_omp_enabled())


def openmp_version():
    """The _OPENMP date macro the extensions were compiled with (0 without OpenMP)."""
    return cconv_omp_version()


def omp_max_threads():
    """OpenMP's nthreads-var for the calling thread (what threadpoolctl reads and sets)."""
    return cconv_omp_max_threads()


def omp_set_threads(int n):
    """Set OpenMP's nthreads-var for the calling thread."""
    cconv_omp_set_threads(n)
