/* The real FFT that TF's CPU RFFT op computes (radix-4/radix-2 passes in FFTPACK order, float32, no FMA),
 * run on YK_LANES independent frames at once, one frame per SIMD lane.
 *
 * Why not FFTW: YAMNet's log(mel + 0.001) magnifies float32 rounding in quiet bands of loud frames, so only an
 * FFT that rounds exactly like TF's (DUCC's rfftp for float) lands within 1e-4 of the hub's log-mel; an exact
 * (float64) FFT misses by 4e-3 on a pure tone. Lanes never mix, and the build disables FP contraction
 * (-ffp-contract=off, no -ffast-math), so every lane rounds like TF's scalar code, whatever the lane count.
 *
 * Layout: element a of lane l lives at data[a * YK_LANES + l]. The plan (factors, twiddles) is computed in
 * Python (edgert/yamnet/frontend/_shared.py, rfft_passes) and handed over once.
 */
#ifndef EDGE_RT_TF_RFFT_H
#define EDGE_RT_TF_RFFT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define YK_LANES 8
#define YK_MAX_PASSES 32
#define YK_ALIGN 64

typedef float yk_vf __attribute__((vector_size(YK_LANES * sizeof(float))));

typedef struct {
    int radix, l1, ido;
    const float *wa; /* (radix - 1) * (ido - 1) twiddles, interleaved cos, sin */
} yk_pass;

typedef struct {
    int n, npasses;
    yk_pass pass[YK_MAX_PASSES];
    float *twiddles; /* owns every pass's wa */
} yk_plan;

static inline void *yk_aligned_alloc(size_t nbytes) {
    void *p = NULL;
    if (posix_memalign(&p, YK_ALIGN, nbytes ? nbytes : YK_ALIGN) != 0) return NULL;
    return p;
}

static inline void yk_aligned_free(void *p) { free(p); }

/* Passes in execution order; wa[i] has (radix[i] - 1) * (ido[i] - 1) floats. NULL on bad input or no memory. */
static inline yk_plan *yk_plan_new(int n, int npasses, const int *radix, const int *l1, const int *ido,
                                   const float *const *wa) {
    if (npasses < 1 || npasses > YK_MAX_PASSES) return NULL;
    size_t total = 0;
    for (int i = 0; i < npasses; ++i) {
        if ((radix[i] != 2 && radix[i] != 4) || radix[i] * l1[i] * ido[i] != n) return NULL;
        total += (size_t)(radix[i] - 1) * (size_t)(ido[i] - 1);
    }
    yk_plan *p = (yk_plan *)calloc(1, sizeof(yk_plan));
    if (!p) return NULL;
    p->twiddles = (float *)yk_aligned_alloc((total + 1) * sizeof(float));
    if (!p->twiddles) { free(p); return NULL; }
    p->n = n;
    p->npasses = npasses;
    size_t off = 0;
    for (int i = 0; i < npasses; ++i) {
        size_t cnt = (size_t)(radix[i] - 1) * (size_t)(ido[i] - 1);
        memcpy(p->twiddles + off, wa[i], cnt * sizeof(float));
        p->pass[i].radix = radix[i];
        p->pass[i].l1 = l1[i];
        p->pass[i].ido = ido[i];
        p->pass[i].wa = p->twiddles + off;
        off += cnt;
    }
    return p;
}

static inline void yk_plan_free(yk_plan *p) {
    if (p) { yk_aligned_free(p->twiddles); free(p); }
}

/* One forward radix-2 pass: cc holds [2][l1][ido], ch receives [l1][2][ido]. */
static inline void yk_radf2(int l1, int ido, const yk_vf *restrict cc, yk_vf *restrict ch, const float *wa) {
#define CC(a, b, c) cc[(a) + ido * ((b) + l1 * (c))]
#define CH(a, b, c) ch[(a) + ido * ((b) + 2 * (c))]
    for (int k = 0; k < l1; ++k) {
        CH(0, 0, k) = CC(0, k, 0) + CC(0, k, 1);
        CH(ido - 1, 1, k) = CC(0, k, 0) - CC(0, k, 1);
    }
    if ((ido & 1) == 0)
        for (int k = 0; k < l1; ++k) {
            CH(0, 1, k) = -CC(ido - 1, k, 1);
            CH(ido - 1, 0, k) = CC(ido - 1, k, 0);
        }
    if (ido <= 2) return;
    for (int k = 0; k < l1; ++k)
        for (int i = 2; i < ido; i += 2) {
            int ic = ido - i;
            float wr = wa[i - 2], wi = wa[i - 1];
            yk_vf tr2 = wr * CC(i - 1, k, 1) + wi * CC(i, k, 1);
            yk_vf ti2 = wr * CC(i, k, 1) - wi * CC(i - 1, k, 1);
            CH(i - 1, 0, k) = CC(i - 1, k, 0) + tr2;
            CH(ic - 1, 1, k) = CC(i - 1, k, 0) - tr2;
            CH(i, 0, k) = ti2 + CC(i, k, 0);
            CH(ic, 1, k) = ti2 - CC(i, k, 0);
        }
#undef CC
#undef CH
}

/* One forward radix-4 pass: cc holds [4][l1][ido], ch receives [l1][4][ido]. */
static inline void yk_radf4(int l1, int ido, const yk_vf *restrict cc, yk_vf *restrict ch, const float *wa) {
#define CC(a, b, c) cc[(a) + ido * ((b) + l1 * (c))]
#define CH(a, b, c) ch[(a) + ido * ((b) + 4 * (c))]
#define WA(x, i) wa[(i) + (x) * (ido - 1)]
    /* sqrt(1/2) rounded to float, as TF's FFT rounds it */
    const float hsqt2 = 0.707106781186547524400844362104849f;
    for (int k = 0; k < l1; ++k) {
        yk_vf tr1 = CC(0, k, 3) + CC(0, k, 1);
        CH(0, 2, k) = CC(0, k, 3) - CC(0, k, 1);
        yk_vf tr2 = CC(0, k, 0) + CC(0, k, 2);
        CH(ido - 1, 1, k) = CC(0, k, 0) - CC(0, k, 2);
        CH(0, 0, k) = tr2 + tr1;
        CH(ido - 1, 3, k) = tr2 - tr1;
    }
    if ((ido & 1) == 0)
        for (int k = 0; k < l1; ++k) {
            yk_vf ti1 = -hsqt2 * (CC(ido - 1, k, 1) + CC(ido - 1, k, 3));
            yk_vf tr1 = hsqt2 * (CC(ido - 1, k, 1) - CC(ido - 1, k, 3));
            CH(ido - 1, 0, k) = CC(ido - 1, k, 0) + tr1;
            CH(ido - 1, 2, k) = CC(ido - 1, k, 0) - tr1;
            CH(0, 3, k) = ti1 + CC(ido - 1, k, 2);
            CH(0, 1, k) = ti1 - CC(ido - 1, k, 2);
        }
    if (ido <= 2) return;
    for (int k = 0; k < l1; ++k)
        for (int i = 2; i < ido; i += 2) {
            int ic = ido - i;
            /* multiply by the conjugate twiddle: (wr*re + wi*im, wr*im - wi*re) */
            yk_vf cr2 = WA(0, i - 2) * CC(i - 1, k, 1) + WA(0, i - 1) * CC(i, k, 1);
            yk_vf ci2 = WA(0, i - 2) * CC(i, k, 1) - WA(0, i - 1) * CC(i - 1, k, 1);
            yk_vf cr3 = WA(1, i - 2) * CC(i - 1, k, 2) + WA(1, i - 1) * CC(i, k, 2);
            yk_vf ci3 = WA(1, i - 2) * CC(i, k, 2) - WA(1, i - 1) * CC(i - 1, k, 2);
            yk_vf cr4 = WA(2, i - 2) * CC(i - 1, k, 3) + WA(2, i - 1) * CC(i, k, 3);
            yk_vf ci4 = WA(2, i - 2) * CC(i, k, 3) - WA(2, i - 1) * CC(i - 1, k, 3);
            yk_vf tr1 = cr4 + cr2, tr4 = cr4 - cr2;
            yk_vf ti1 = ci2 + ci4, ti4 = ci2 - ci4;
            yk_vf tr2 = CC(i - 1, k, 0) + cr3, tr3 = CC(i - 1, k, 0) - cr3;
            yk_vf ti2 = CC(i, k, 0) + ci3, ti3 = CC(i, k, 0) - ci3;
            CH(i - 1, 0, k) = tr2 + tr1;
            CH(ic - 1, 3, k) = tr2 - tr1;
            CH(i, 0, k) = ti1 + ti2;
            CH(ic, 3, k) = ti1 - ti2;
            CH(i - 1, 2, k) = tr3 + ti4;
            CH(ic - 1, 1, k) = tr3 - ti4;
            CH(i, 2, k) = tr4 + ti3;
            CH(ic, 1, k) = tr4 - ti3;
        }
#undef CC
#undef CH
#undef WA
}

/* Forward real FFT of YK_LANES frames of n samples in data (lane-interleaved, 64-byte aligned). Both buffers are
 * overwritten; the result, in halfcomplex order r0, r1, i1, ..., r(n/2), is in the returned buffer. */
static inline float *yk_rfft(const yk_plan *p, float *data, float *scratch) {
    yk_vf *a = (yk_vf *)data, *b = (yk_vf *)scratch;
    for (int i = 0; i < p->npasses; ++i) {
        const yk_pass *s = &p->pass[i];
        if (s->radix == 4) yk_radf4(s->l1, s->ido, a, b, s->wa);
        else yk_radf2(s->l1, s->ido, a, b, s->wa);
        yk_vf *t = a; a = b; b = t;
    }
    return (float *)a;
}

/* 1 when no sample is NaN or +-Inf. Tests the exponent bits, so it holds under any FP flags. */
static inline int yk_all_finite(const float *x, size_t n) {
    uint32_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
        uint32_t u;
        memcpy(&u, x + i, sizeof u);
        bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
    }
    return bad == 0;
}

#endif
