/* Per-thread scratch buffers kept between calls.
 *
 * Workspace freed at the end of a call and allocated again by the next one costs a
 * page fault per page whenever the allocator has returned it to the system (glibc does
 * that for large blocks and for the arenas of OpenMP worker threads): measured 15-20% of
 * a float32 Winograd call on small images. Here each thread keeps, per slot, its largest
 * buffer up to CC_SCRATCH_CACHE_MAX and reuses it; bigger requests are plain
 * malloc / free. A buffer belongs to one OS thread and is used only during one call on
 * that thread (a thread runs one call at a time), so concurrent calls from different
 * Python threads never share it. The buffers are freed when their thread exits.
 * Header-only: each extension module keeps its own cache. Slots: 0 per-thread kernel
 * workspace (Winograd tile blocks); 1 one-shot packed / transformed weights; 2, 3 the
 * channels-last copies of a channels-first call; 4 Winograd weight-transform staging
 * (channels-first taps turned lanes-innermost).
 */
#ifndef CCONV_SCRATCH_H
#define CCONV_SCRATCH_H
#include <pthread.h>
#include <stdlib.h>

#define CC_SCRATCH_SLOTS 5
#define CC_SCRATCH_CACHE_MAX ((size_t)64 << 20)

typedef struct {
    void *p[CC_SCRATCH_SLOTS];
    size_t n[CC_SCRATCH_SLOTS];
} cc_scratch_tls;

static pthread_key_t cc_scratch_key;
static pthread_once_t cc_scratch_once = PTHREAD_ONCE_INIT;
static int cc_scratch_ok = 0;

static void cc_scratch_destroy(void *v)
{
    cc_scratch_tls *t = (cc_scratch_tls *)v;
    for (int i = 0; i < CC_SCRATCH_SLOTS; i++)
        free(t->p[i]);
    free(t);
}

static void cc_scratch_init(void)
{
    cc_scratch_ok = pthread_key_create(&cc_scratch_key, cc_scratch_destroy) == 0;
}

static inline cc_scratch_tls *cc_scratch_state(void)
{
    pthread_once(&cc_scratch_once, cc_scratch_init);
    if (!cc_scratch_ok)
        return NULL;
    cc_scratch_tls *t = (cc_scratch_tls *)pthread_getspecific(cc_scratch_key);
    if (t == NULL) {
        t = (cc_scratch_tls *)calloc(1, sizeof(cc_scratch_tls));
        if (t != NULL && pthread_setspecific(cc_scratch_key, t) != 0) {
            free(t);
            t = NULL;
        }
    }
    return t;
}

/* 64-byte aligned (a cache line: packed panels read by the micro-kernels never split
 * a line); freed with free(). */
static inline void *cc_scratch_alloc64(size_t bytes)
{
    void *p = NULL;
    return posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) == 0 ? p : NULL;
}

/* At least `bytes` bytes (NULL when out of memory); give back with cc_scratch_release. */
static inline void *cc_scratch_acquire(int slot, size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    cc_scratch_tls *t = bytes <= CC_SCRATCH_CACHE_MAX ? cc_scratch_state() : NULL;
    if (t == NULL)
        return cc_scratch_alloc64(bytes);
    if (t->n[slot] < bytes) {
        free(t->p[slot]);
        t->p[slot] = cc_scratch_alloc64(bytes);
        t->n[slot] = t->p[slot] != NULL ? bytes : 0;
    }
    return t->p[slot];
}

static inline void cc_scratch_release(int slot, void *p)
{
    if (p == NULL)
        return;
    cc_scratch_tls *t = (cc_scratch_tls *)(cc_scratch_ok ? pthread_getspecific(cc_scratch_key)
                                                         : NULL);
    if (t == NULL || t->p[slot] != p)
        free(p);
}
#endif
