/* A lock-free single-producer/single-consumer ring of float32 samples (C11 atomics).
 *
 * Positions are 64-bit totals that only grow: write_pos counts samples ever accepted, read_pos samples ever
 * consumed; their difference is the fill level and a position's slot is pos % capacity. Only the producer
 * stores write_pos and only the consumer stores read_pos, each with release order after moving the data and
 * read by the other side with acquire order, so a slot is never read before it is written nor overwritten
 * before it is read. When the ring is full the producer keeps what fits, drops the rest of the chunk and adds
 * it to the overrun count: it never waits.
 */
#ifndef EDGE_RT_RING_H
#define EDGE_RT_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EDGE_RING_CACHE_LINE 64

typedef struct edge_ring {
    /* Each counter on its own cache line: producer and consumer never write the same line. */
    alignas(EDGE_RING_CACHE_LINE) _Atomic uint64_t write_pos;
    alignas(EDGE_RING_CACHE_LINE) _Atomic uint64_t read_pos;
    alignas(EDGE_RING_CACHE_LINE) _Atomic uint64_t overruns;
    alignas(EDGE_RING_CACHE_LINE) uint64_t capacity;
    float *data;
} edge_ring;

/* NULL when capacity is 0 or memory is short. */
static inline edge_ring *edge_ring_new(uint64_t capacity) {
    if (capacity == 0 || capacity > SIZE_MAX / sizeof(float)) return NULL;
    edge_ring *r = NULL;
    if (posix_memalign((void **)&r, EDGE_RING_CACHE_LINE, sizeof(edge_ring)) != 0) return NULL;
    r->data = (float *)malloc((size_t)capacity * sizeof(float));
    if (!r->data) { free(r); return NULL; }
    r->capacity = capacity;
    atomic_init(&r->write_pos, 0);
    atomic_init(&r->read_pos, 0);
    atomic_init(&r->overruns, 0);
    return r;
}

static inline void edge_ring_free(edge_ring *r) {
    if (r) { free(r->data); free(r); }
}

/* Samples waiting to be read. Exact from the consumer's side; a lower bound from elsewhere. */
static inline uint64_t edge_ring_available(edge_ring *r) {
    uint64_t w = atomic_load_explicit(&r->write_pos, memory_order_acquire);
    uint64_t rd = atomic_load_explicit(&r->read_pos, memory_order_acquire);
    return w - rd;
}

static inline uint64_t edge_ring_overruns(edge_ring *r) {
    return atomic_load_explicit(&r->overruns, memory_order_relaxed);
}

static inline uint64_t edge_ring_written(edge_ring *r) {
    return atomic_load_explicit(&r->write_pos, memory_order_acquire);
}

static inline uint64_t edge_ring_consumed(edge_ring *r) {
    return atomic_load_explicit(&r->read_pos, memory_order_acquire);
}

/* Producer only. Copies as much of src[0:n] as fits, counts the rest as overruns, returns the count kept. */
static inline uint64_t edge_ring_write(edge_ring *r, const float *src, uint64_t n) {
    uint64_t w = atomic_load_explicit(&r->write_pos, memory_order_relaxed); /* ours */
    uint64_t rd = atomic_load_explicit(&r->read_pos, memory_order_acquire);
    uint64_t space = r->capacity - (w - rd);
    uint64_t take = n < space ? n : space;
    uint64_t at = w % r->capacity;
    uint64_t first = r->capacity - at < take ? r->capacity - at : take;
    memcpy(r->data + at, src, (size_t)first * sizeof(float));
    memcpy(r->data, src + first, (size_t)(take - first) * sizeof(float));
    atomic_store_explicit(&r->write_pos, w + take, memory_order_release);
    if (take < n) atomic_fetch_add_explicit(&r->overruns, n - take, memory_order_relaxed);
    return take;
}

/* Consumer only. Copies up to n waiting samples to dst without consuming them; returns the count copied. */
static inline uint64_t edge_ring_peek(edge_ring *r, float *dst, uint64_t n) {
    uint64_t rd = atomic_load_explicit(&r->read_pos, memory_order_relaxed); /* ours */
    uint64_t w = atomic_load_explicit(&r->write_pos, memory_order_acquire);
    uint64_t take = n < w - rd ? n : w - rd;
    uint64_t at = rd % r->capacity;
    uint64_t first = r->capacity - at < take ? r->capacity - at : take;
    memcpy(dst, r->data + at, (size_t)first * sizeof(float));
    memcpy(dst + first, r->data, (size_t)(take - first) * sizeof(float));
    return take;
}

/* Consumer only. Releases n samples (n <= available) back to the producer. */
static inline void edge_ring_advance(edge_ring *r, uint64_t n) {
    uint64_t rd = atomic_load_explicit(&r->read_pos, memory_order_relaxed);
    atomic_store_explicit(&r->read_pos, rd + n, memory_order_release);
}

/* Consumer only. Moves up to n waiting samples to dst; returns the count moved. */
static inline uint64_t edge_ring_read(edge_ring *r, float *dst, uint64_t n) {
    uint64_t got = edge_ring_peek(r, dst, n);
    edge_ring_advance(r, got);
    return got;
}

/* Consumer only. When `window` samples wait, copies them to dst, consumes the first `hop` of them and returns 1
 * (the last window - hop stay for the next window); otherwise copies nothing and returns 0. */
static inline int edge_ring_read_window(edge_ring *r, float *dst, uint64_t window, uint64_t hop) {
    uint64_t rd = atomic_load_explicit(&r->read_pos, memory_order_relaxed);
    uint64_t w = atomic_load_explicit(&r->write_pos, memory_order_acquire);
    if (w - rd < window) return 0;
    edge_ring_peek(r, dst, window);
    edge_ring_advance(r, hop);
    return 1;
}

#endif
