/* The array cache (arraycache.h): a NumPy memory handler (NEP 49) whose freed large
 * buffers are kept for the next allocation of the same rounded size instead of going
 * back to the C library.
 *
 * Why: glibc returns large freed blocks to the kernel (munmap, or trimming the heap
 * top), so the next array of that size is new pages, each zero-filled on its first touch:
 * on the development VM about 1-2.6 us per 4 KiB page, or milliseconds per 2 MiB page
 * when NumPy's huge-page advice meets fragmented memory (a 26 MB conv1d output after a
 * PyTorch call: 1.4 ms alone, 27 ms with those faults). A training step allocates the
 * same sizes every step, so reuse removes the faults.
 *
 * Every block carries a 64-byte header in front of its data (its rounded size and the
 * pointer the C library returned), so free and realloc never rely on the size NumPy
 * passes, and the data is 64-byte aligned (whole cache lines for the SIMD kernels).
 * Blocks of at least CCONV_AC_MIN bytes are rounded up to CCONV_AC_GRAIN and cached on
 * free while the cache holds at most its limit; smaller ones go straight back. A
 * spinlock guards the table (NumPy may free or allocate without the GIL); the C
 * library calls happen outside it. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arraycache.h"

#define AC_HEADER 64
#define AC_SLOTS 256

typedef struct {
    size_t size; /* usable bytes after the header (rounded for cached sizes) */
    void *raw;   /* what malloc returned */
} ac_head;

typedef struct {
    char *data;
    size_t size;
} ac_block;

static ac_block ac_table[AC_SLOTS]; /* cached blocks, oldest first */
static int ac_count = 0;
static size_t ac_bytes = 0;
static size_t ac_limit = CCONV_AC_DEFAULT_LIMIT;
static size_t ac_hits = 0, ac_misses = 0;
static atomic_flag ac_lock = ATOMIC_FLAG_INIT;

static void lock(void)
{
    while (atomic_flag_test_and_set_explicit(&ac_lock, memory_order_acquire))
        ;
}

static void unlock(void) { atomic_flag_clear_explicit(&ac_lock, memory_order_release); }

static size_t rounded(size_t n)
{
    if (n < CCONV_AC_MIN)
        return n;
    if (n > SIZE_MAX - CCONV_AC_GRAIN)
        return 0;
    return (n + CCONV_AC_GRAIN - 1) / CCONV_AC_GRAIN * CCONV_AC_GRAIN;
}

static ac_head *head_of(void *data) { return (ac_head *)((char *)data - AC_HEADER); }

/* A new block of `size` usable bytes (size already rounded), 64-byte aligned. */
static void *fresh(size_t size)
{
    if (size > SIZE_MAX - AC_HEADER - 64)
        return NULL;
    void *raw = malloc(size + AC_HEADER + 64);
    if (raw == NULL)
        return NULL;
    char *data = (char *)(((uintptr_t)raw + AC_HEADER + 63) & ~(uintptr_t)63);
    ac_head *h = head_of(data);
    h->size = size;
    h->raw = raw;
    return data;
}

static void release(void *data)
{
    if (data != NULL)
        free(head_of(data)->raw);
}

/* Frees the oldest cached blocks until the cache fits `limit` bytes and one more slot;
 * call with the lock held: the blocks to free are handed back in out[] (count in *n). */
static void evict_locked(size_t limit, char **out, int *n)
{
    int drop = 0;
    size_t bytes = ac_bytes;
    while (drop < ac_count && (bytes > limit || ac_count - drop >= AC_SLOTS)) {
        bytes -= ac_table[drop].size;
        out[(*n)++] = ac_table[drop].data;
        drop++;
    }
    if (drop) {
        memmove(ac_table, ac_table + drop, (size_t)(ac_count - drop) * sizeof(ac_block));
        ac_count -= drop;
        ac_bytes = bytes;
    }
}

void *cconv_ac_malloc(void *ctx, size_t size)
{
    (void)ctx;
    const size_t r = rounded(size ? size : 1);
    if (r == 0)
        return NULL;
    if (r >= CCONV_AC_MIN) {
        char *hit = NULL;
        lock();
        for (int i = ac_count - 1; i >= 0; i--) /* newest first: most likely in cache */
            if (ac_table[i].size == r) {
                hit = ac_table[i].data;
                memmove(ac_table + i, ac_table + i + 1,
                        (size_t)(ac_count - 1 - i) * sizeof(ac_block));
                ac_count--;
                ac_bytes -= r;
                break;
            }
        if (hit)
            ac_hits++;
        else
            ac_misses++;
        unlock();
        if (hit)
            return hit;
    }
    return fresh(r);
}

void *cconv_ac_calloc(void *ctx, size_t nelem, size_t elsize)
{
    if (elsize && nelem > SIZE_MAX / elsize)
        return NULL;
    const size_t size = nelem * elsize;
    void *p = cconv_ac_malloc(ctx, size);
    if (p != NULL)
        memset(p, 0, size);
    return p;
}

void cconv_ac_free(void *ctx, void *data, size_t size)
{
    (void)ctx;
    (void)size; /* the header's size is the one that counts */
    if (data == NULL)
        return;
    const size_t r = head_of(data)->size;
    if (r < CCONV_AC_MIN) {
        release(data);
        return;
    }
    char *drop[AC_SLOTS + 1];
    int n = 0;
    lock();
    if (r <= ac_limit) {
        evict_locked(ac_limit - r, drop, &n);
        ac_table[ac_count].data = data;
        ac_table[ac_count].size = r;
        ac_count++;
        ac_bytes += r;
    } else {
        drop[n++] = data;
    }
    unlock();
    for (int i = 0; i < n; i++)
        release(drop[i]);
}

void *cconv_ac_realloc(void *ctx, void *data, size_t new_size)
{
    if (data == NULL)
        return cconv_ac_malloc(ctx, new_size);
    const size_t old = head_of(data)->size;
    if (rounded(new_size ? new_size : 1) == old)
        return data;
    void *p = cconv_ac_malloc(ctx, new_size);
    if (p == NULL)
        return NULL; /* the old block stays valid, as realloc's contract says */
    memcpy(p, data, old < new_size ? old : new_size);
    cconv_ac_free(ctx, data, old);
    return p;
}

void cconv_ac_after_fork_child(void)
{
    /* only the forking thread lives on in the child: a lock another thread held at the
     * fork would never be released */
    atomic_flag_clear_explicit(&ac_lock, memory_order_release);
}

size_t cconv_ac_set_limit(size_t limit)
{
    char *drop[AC_SLOTS + 1];
    int n = 0;
    lock();
    const size_t before = ac_limit;
    ac_limit = limit;
    evict_locked(limit, drop, &n);
    unlock();
    for (int i = 0; i < n; i++)
        release(drop[i]);
    return before;
}

void cconv_ac_stats(size_t *limit, size_t *bytes, size_t *blocks, size_t *hits,
                    size_t *misses)
{
    lock();
    *limit = ac_limit;
    *bytes = ac_bytes;
    *blocks = (size_t)ac_count;
    *hits = ac_hits;
    *misses = ac_misses;
    unlock();
}
