/* The per-frame arithmetic of YAMNet's front end on YK_LANES frames at once: window, TF-order FFT, magnitude,
 * banded mel sum, TF's float32 log. Every step is an IEEE float32 operation per lane, in a fixed order, with
 * no contraction (built with -ffp-contract=off): a frame's result never depends on its lane or its neighbours,
 * and the numpy twin (edgert/yamnet/frontend/fallback.py) performs the same operations in the same order.
 */
#ifndef EDGE_RT_YAMNET_FRAMES_H
#define EDGE_RT_YAMNET_FRAMES_H

#include "tf_rfft.h"

#if defined(__AVX__)
#include <immintrin.h>
#endif

typedef int32_t yk_vi __attribute__((vector_size(YK_LANES * sizeof(int32_t))));

/* Everything the kernel reads, built once from edgert/yamnet/frontend/_shared.py. */
typedef struct {
    int win, hop, nfft, nbands;
    const float *window;          /* [win] */
    const yk_plan *plan;
    int first_bin, end_bin;       /* bins some band weighs: [first_bin, end_bin), inside 1 .. nfft/2 - 1 */
    const int *band_start, *band_len, *band_off; /* [nbands] */
    const float *band_w;          /* weights of band b at band_off[b] .. band_off[b] + band_len[b] */
    float log_offset;
} yk_frontend;

typedef struct {
    float *buf, *scratch; /* [nfft][YK_LANES], YK_ALIGN-aligned */
    float *mag;           /* [nfft/2 + 1][YK_LANES], YK_ALIGN-aligned */
} yk_work;

static inline int yk_work_init(yk_work *w, int nfft) {
    size_t nbytes = (size_t)nfft * YK_LANES * sizeof(float);
    w->buf = (float *)yk_aligned_alloc(nbytes);
    w->scratch = (float *)yk_aligned_alloc(nbytes);
    w->mag = (float *)yk_aligned_alloc((size_t)(nfft / 2 + 1) * YK_LANES * sizeof(float));
    if (!w->buf || !w->scratch || !w->mag) {
        yk_aligned_free(w->buf); yk_aligned_free(w->scratch); yk_aligned_free(w->mag);
        w->buf = w->scratch = w->mag = NULL;
        return -1;
    }
    return 0;
}

static inline void yk_work_free(yk_work *w) {
    yk_aligned_free(w->buf); yk_aligned_free(w->scratch); yk_aligned_free(w->mag);
    w->buf = w->scratch = w->mag = NULL;
}

_Static_assert(YK_LANES == 8, "yk_splat spells out eight lanes");
static inline yk_vf yk_splat(float v) { return (yk_vf){v, v, v, v, v, v, v, v}; }

static inline yk_vf yk_sqrt(yk_vf v) { /* correctly rounded either way */
#if defined(__AVX__)
    return (yk_vf)_mm256_sqrt_ps((__m256)v);
#else
    yk_vf r;
    for (int l = 0; l < YK_LANES; ++l) r[l] = __builtin_sqrtf(v[l]);
    return r;
#endif
}

#if defined(__clang__)
#define YK_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define YK_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (yk_vi){__VA_ARGS__})
#endif

/* In-place 8x8 transpose: afterwards r[j][l] holds what r[l][j] held. Pure data movement. */
static inline void yk_transpose8(yk_vf r[8]) {
    yk_vf t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = YK_SHUFFLE(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = YK_SHUFFLE(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; ++j) {
            u[i + 2 * j] = YK_SHUFFLE(t[i + j], t[i + j + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[i + 2 * j + 1] = YK_SHUFFLE(t[i + j], t[i + j + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int j = 0; j < 4; ++j) {
        r[j] = YK_SHUFFLE(u[j], u[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[j + 4] = YK_SHUFFLE(u[j], u[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

static inline yk_vf yk_loadu(const float *p) {
    yk_vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* TF's float32 vector log (Eigen's plog without FMA), for positive normal v: frexp, a shift of the mantissa to
 * [sqrt(1/2), sqrt(2)), a rational approximation of log(1 + t), then e * ln2 added. The constants are TF's. */
static inline yk_vf yk_log_tf(yk_vf v) {
    const yk_vf one = yk_splat(1.0f);
    yk_vi bits = (yk_vi)v;
    yk_vf e = __builtin_convertvector(((bits >> 23) & 0xff) - 126, yk_vf);
    yk_vf m = (yk_vf)((bits & (int32_t)0x807fffff) | 0x3f000000); /* v = m * 2^e, m in [0.5, 1) */
    yk_vi low = m < yk_splat(0.707106781186547524f);
    yk_vf t = m - one;
    e = e - (yk_vf)((yk_vi)one & low);
    t = t + (yk_vf)((yk_vi)m & low);
    yk_vf num = yk_splat(0.18256296349849254f);
    num = num * t + yk_splat(1.0000000190281063f);
    num = num * t + yk_splat(1.0000000190281136f);
    num = t * num;
    yk_vf den = yk_splat(0.049616247954120038f);
    den = den * t + yk_splat(0.59923249590823520f);
    den = den * t + yk_splat(1.4999999999999927f);
    den = den * t + one;
    yk_vf r = e * yk_splat(0.693147180559945309f) + num / den;
    /* As TF: log(+inf) = +inf and log(NaN) = NaN (only an overflowing, absurdly loud input gets here). */
    yk_vi special = (v != v) | (v == yk_splat(__builtin_inff()));
    return (yk_vf)(((yk_vi)v & special) | ((yk_vi)r & ~special));
}

/* Log-mel rows of `lanes` (1..YK_LANES) frames, frame l starting at x + l * hop: out[l * nbands + band]. */
static inline void yk_frames_group(const yk_frontend *fe, const float *restrict x, int lanes, float *restrict out,
                                   yk_work *w) {
    yk_vf *restrict buf = (yk_vf *)w->buf;
    yk_vf *restrict mag = (yk_vf *)w->mag;
    /* Window each frame into its lane; missing lanes are zero and never stored. A full group moves its samples
     * in 8x8 blocks (load rows, transpose), the same values the per-sample path would move. */
    int n0 = 0;
    if (lanes == YK_LANES)
        for (; n0 + YK_LANES <= fe->win; n0 += YK_LANES) {
            yk_vf r[YK_LANES];
            for (int l = 0; l < YK_LANES; ++l) r[l] = yk_loadu(x + (size_t)l * fe->hop + n0);
            yk_transpose8(r);
            for (int j = 0; j < YK_LANES; ++j) buf[n0 + j] = r[j] * fe->window[n0 + j];
        }
    for (int n = n0; n < fe->win; ++n) {
        yk_vf v = yk_splat(0.0f);
        const float *xn = x + n;
        for (int l = 0; l < lanes; ++l) v[l] = xn[(size_t)l * fe->hop];
        buf[n] = v * fe->window[n];
    }
    for (int n = fe->win; n < fe->nfft; ++n) buf[n] = yk_splat(0.0f);
    const yk_vf *h = (const yk_vf *)yk_rfft(fe->plan, w->buf, w->scratch); /* r0, r1, i1, ..., r(n/2) */
    for (int k = fe->first_bin; k < fe->end_bin; ++k) {
        yk_vf re = h[2 * k - 1], im = h[2 * k];
        mag[k] = yk_sqrt(re * re + im * im);
    }
    yk_vf block[YK_LANES]; /* the log-mel of 8 bands, band-major; stored frame-major after a transpose */
    for (int b = 0; b < fe->nbands; ++b) {
        const yk_vf *mb = mag + fe->band_start[b];
        const float *wb = fe->band_w + fe->band_off[b];
        yk_vf acc = yk_splat(0.0f);
        for (int j = 0; j < fe->band_len[b]; ++j) acc = acc + mb[j] * wb[j]; /* ascending bins, as the twin */
        yk_vf lm = yk_log_tf(acc + fe->log_offset);
        int b8 = b % YK_LANES;
        if (lanes == YK_LANES && b - b8 + YK_LANES <= fe->nbands) { /* a whole block of 8 bands: transpose */
            block[b8] = lm;
            if (b8 == YK_LANES - 1) {
                yk_transpose8(block);
                for (int l = 0; l < YK_LANES; ++l)
                    memcpy(out + (size_t)l * fe->nbands + b - b8, &block[l], sizeof(yk_vf));
            }
        } else {
            for (int l = 0; l < lanes; ++l) out[(size_t)l * fe->nbands + b] = lm[l];
        }
    }
}

/* Log-mel rows of n frames, frame f starting at x + f * hop: out[f * nbands + band]. */
static inline void yk_frames(const yk_frontend *fe, const float *x, ptrdiff_t n, float *out, yk_work *w) {
    for (ptrdiff_t f = 0; f < n; f += YK_LANES) {
        int lanes = n - f < YK_LANES ? (int)(n - f) : YK_LANES;
        yk_frames_group(fe, x + f * fe->hop, lanes, out + f * fe->nbands, w);
    }
}

#endif
