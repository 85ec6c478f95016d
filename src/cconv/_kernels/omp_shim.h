/* OpenMP queries that also compile without OpenMP (then: one thread). */
#ifndef CCONV_OMP_SHIM_H
#define CCONV_OMP_SHIM_H
#if defined(_OPENMP)
#include <omp.h>
static inline int cconv_omp_enabled(void) { return 1; }
static inline int cconv_omp_max_threads(void) { return omp_get_max_threads(); }
static inline void cconv_omp_set_threads(int n) { omp_set_num_threads(n); }
static inline int cconv_omp_thread_num(void) { return omp_get_thread_num(); }
static inline int cconv_omp_version(void) { return _OPENMP; }
#else
static inline int cconv_omp_enabled(void) { return 0; }
static inline int cconv_omp_max_threads(void) { return 1; }
static inline void cconv_omp_set_threads(int n) { (void)n; }
static inline int cconv_omp_thread_num(void) { return 0; }
static inline int cconv_omp_version(void) { return 0; }
#endif
#endif
