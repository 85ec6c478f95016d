/* The array cache: a NumPy memory handler (allocator functions with NumPy's
 * PyDataMemAllocator signatures) that keeps freed large buffers for reuse. See
 * arraycache.c. Thread-safe; no Python API calls. */
#ifndef CCONV_ARRAYCACHE_H
#define CCONV_ARRAYCACHE_H
#include <stddef.h>

#define CCONV_AC_MIN ((size_t)1 << 20)   /* smaller blocks are never cached */
#define CCONV_AC_GRAIN ((size_t)1 << 16) /* cached sizes are rounded up to this */
#define CCONV_AC_DEFAULT_LIMIT ((size_t)512 << 20)

void *cconv_ac_malloc(void *ctx, size_t size);
void *cconv_ac_calloc(void *ctx, size_t nelem, size_t elsize);
void *cconv_ac_realloc(void *ctx, void *ptr, size_t new_size);
void cconv_ac_free(void *ctx, void *ptr, size_t size);

/* Set the most bytes the cache keeps (evicting the oldest blocks beyond it); returns
 * the previous limit. 0 turns caching off. */
size_t cconv_ac_set_limit(size_t limit);
/* In a child made by fork(): release the table's lock (its holder did not follow). */
void cconv_ac_after_fork_child(void);
void cconv_ac_stats(size_t *limit, size_t *bytes, size_t *blocks, size_t *hits,
                    size_t *misses);
#endif
