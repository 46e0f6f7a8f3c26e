// The CUDA twin of the front end's per-frame arithmetic: one thread block per STFT frame.
//
// It performs exactly the float32 operations of the CPU kernel (cext/yamnet_frames.h) and the numpy twin, in the
// same order: window, TF's radix-4/radix-2 real FFT, |X| = sqrt(re^2 + im^2), banded mel sums in ascending bin
// order, TF's float32 log. Built with --fmad=false -prec-div=true -prec-sqrt=true -ftz=false (see
// edgert/yamnet/frontend/_cuda.py), every step rounds like the CPU, so the result matches it bit for bit.
//
// YK_NFFT (the FFT length) is given by the loader with -D, from edgert.yamnet.params.

#ifndef YK_NFFT
#error "compile with -DYK_NFFT=<fft length>"
#endif

extern "C" {

// Forward radix-2 pass, items spread over the block: cc holds [2][l1][ido], ch receives [l1][2][ido].
__device__ void yk_radf2(int l1, int ido, const float *cc, float *ch, const float *wa) {
#define CC(a, b, c) cc[(a) + ido * ((b) + l1 * (c))]
#define CH(a, b, c) ch[(a) + ido * ((b) + 2 * (c))]
    const int half = (ido - 1) / 2;  // butterflies with twiddles per k
    const int even = (ido & 1) == 0 ? l1 : 0;
    const int total = l1 + even + l1 * half;
    for (int t = threadIdx.x; t < total; t += blockDim.x) {
        if (t < l1) {
            const int k = t;
            CH(0, 0, k) = CC(0, k, 0) + CC(0, k, 1);
            CH(ido - 1, 1, k) = CC(0, k, 0) - CC(0, k, 1);
        } else if (t < l1 + even) {
            const int k = t - l1;
            CH(0, 1, k) = -CC(ido - 1, k, 1);
            CH(ido - 1, 0, k) = CC(ido - 1, k, 0);
        } else {
            const int u = t - l1 - even;
            const int k = u / half, i = 2 + 2 * (u % half), ic = ido - i;
            const float wr = wa[i - 2], wi = wa[i - 1];
            const float tr2 = wr * CC(i - 1, k, 1) + wi * CC(i, k, 1);
            const float ti2 = wr * CC(i, k, 1) - wi * CC(i - 1, k, 1);
            CH(i - 1, 0, k) = CC(i - 1, k, 0) + tr2;
            CH(ic - 1, 1, k) = CC(i - 1, k, 0) - tr2;
            CH(i, 0, k) = ti2 + CC(i, k, 0);
            CH(ic, 1, k) = ti2 - CC(i, k, 0);
        }
    }
#undef CC
#undef CH
}

// Forward radix-4 pass, items spread over the block: cc holds [4][l1][ido], ch receives [l1][4][ido].
__device__ void yk_radf4(int l1, int ido, const float *cc, float *ch, const float *wa) {
#define CC(a, b, c) cc[(a) + ido * ((b) + l1 * (c))]
#define CH(a, b, c) ch[(a) + ido * ((b) + 4 * (c))]
#define WA(x, i) wa[(i) + (x) * (ido - 1)]
    const float hsqt2 = 0.707106781186547524400844362104849f;
    const int half = (ido - 1) / 2;
    const int even = (ido & 1) == 0 ? l1 : 0;
    const int total = l1 + even + l1 * half;
    for (int t = threadIdx.x; t < total; t += blockDim.x) {
        if (t < l1) {
            const int k = t;
            const float tr1 = CC(0, k, 3) + CC(0, k, 1);
            CH(0, 2, k) = CC(0, k, 3) - CC(0, k, 1);
            const float tr2 = CC(0, k, 0) + CC(0, k, 2);
            CH(ido - 1, 1, k) = CC(0, k, 0) - CC(0, k, 2);
            CH(0, 0, k) = tr2 + tr1;
            CH(ido - 1, 3, k) = tr2 - tr1;
        } else if (t < l1 + even) {
            const int k = t - l1;
            const float ti1 = -hsqt2 * (CC(ido - 1, k, 1) + CC(ido - 1, k, 3));
            const float tr1 = hsqt2 * (CC(ido - 1, k, 1) - CC(ido - 1, k, 3));
            CH(ido - 1, 0, k) = CC(ido - 1, k, 0) + tr1;
            CH(ido - 1, 2, k) = CC(ido - 1, k, 0) - tr1;
            CH(0, 3, k) = ti1 + CC(ido - 1, k, 2);
            CH(0, 1, k) = ti1 - CC(ido - 1, k, 2);
        } else {
            const int u = t - l1 - even;
            const int k = u / half, i = 2 + 2 * (u % half), ic = ido - i;
            const float cr2 = WA(0, i - 2) * CC(i - 1, k, 1) + WA(0, i - 1) * CC(i, k, 1);
            const float ci2 = WA(0, i - 2) * CC(i, k, 1) - WA(0, i - 1) * CC(i - 1, k, 1);
            const float cr3 = WA(1, i - 2) * CC(i - 1, k, 2) + WA(1, i - 1) * CC(i, k, 2);
            const float ci3 = WA(1, i - 2) * CC(i, k, 2) - WA(1, i - 1) * CC(i - 1, k, 2);
            const float cr4 = WA(2, i - 2) * CC(i - 1, k, 3) + WA(2, i - 1) * CC(i, k, 3);
            const float ci4 = WA(2, i - 2) * CC(i, k, 3) - WA(2, i - 1) * CC(i - 1, k, 3);
            const float tr1 = cr4 + cr2, tr4 = cr4 - cr2;
            const float ti1 = ci2 + ci4, ti4 = ci2 - ci4;
            const float tr2 = CC(i - 1, k, 0) + cr3, tr3 = CC(i - 1, k, 0) - cr3;
            const float ti2 = CC(i, k, 0) + ci3, ti3 = CC(i, k, 0) - ci3;
            CH(i - 1, 0, k) = tr2 + tr1;
            CH(ic - 1, 3, k) = tr2 - tr1;
            CH(i, 0, k) = ti1 + ti2;
            CH(ic, 3, k) = ti1 - ti2;
            CH(i - 1, 2, k) = tr3 + ti4;
            CH(ic - 1, 1, k) = tr3 - ti4;
            CH(i, 2, k) = tr4 + ti3;
            CH(ic, 1, k) = tr4 - ti3;
        }
    }
#undef CC
#undef CH
#undef WA
}

// TF's float32 log (Eigen's plog without FMA) for a positive normal v; the constants are TF's.
__device__ float yk_log_tf(float v) {
    const int bits = __float_as_int(v);
    float e = (float)(((bits >> 23) & 0xff) - 126);
    float m = __int_as_float((bits & (int)0x807fffff) | 0x3f000000);  // v = m * 2^e, m in [0.5, 1)
    const bool low = m < 0.707106781186547524f;
    float t = m - 1.0f;
    e = e - (low ? 1.0f : 0.0f);
    t = t + (low ? m : 0.0f);
    float num = 0.18256296349849254f;
    num = num * t + 1.0000000190281063f;
    num = num * t + 1.0000000190281136f;
    num = t * num;
    float den = 0.049616247954120038f;
    den = den * t + 0.59923249590823520f;
    den = den * t + 1.4999999999999927f;
    den = den * t + 1.0f;
    const float r = e * 0.693147180559945309f + num / den;
    return (v != v || v == __int_as_float(0x7f800000)) ? v : r;  // as TF: log(inf) = inf, log(NaN) = NaN
}

// Log-mel rows of n_frames frames, frame f starting at x + f * hop: out[f * nbands + band]. Launch with one
// block per frame (gridDim.x = n_frames, any blockDim.x; 128 is a good choice).
// Passes: radix[p], l1[p], ido[p] and their twiddles at twiddles + wa_off[p], in execution order.
__global__ void yk_log_mel(const float *x, long long n_frames, int win, int hop, const float *window,
                           int npasses, const int *radix, const int *l1, const int *ido, const int *wa_off,
                           const float *twiddles, int first_bin, int end_bin, int nbands, const int *band_start,
                           const int *band_len, const int *band_off, const float *band_w, float log_offset,
                           float *out) {
    __shared__ float a[YK_NFFT], b[YK_NFFT], mag[YK_NFFT / 2 + 1];
    const long long f = blockIdx.x;
    if (f >= n_frames) return;
    const float *frame = x + f * hop;
    for (int n = threadIdx.x; n < YK_NFFT; n += blockDim.x) a[n] = n < win ? frame[n] * window[n] : 0.0f;
    __syncthreads();
    float *cc = a, *ch = b;
    for (int p = 0; p < npasses; ++p) {
        if (radix[p] == 4) yk_radf4(l1[p], ido[p], cc, ch, twiddles + wa_off[p]);
        else yk_radf2(l1[p], ido[p], cc, ch, twiddles + wa_off[p]);
        __syncthreads();
        float *tmp = cc; cc = ch; ch = tmp;
    }
    // cc holds the halfcomplex spectrum r0, r1, i1, ..., r(n/2).
    for (int k = first_bin + threadIdx.x; k < end_bin; k += blockDim.x) {
        const float re = cc[2 * k - 1], im = cc[2 * k];
        mag[k] = sqrtf(re * re + im * im);
    }
    __syncthreads();
    for (int band = threadIdx.x; band < nbands; band += blockDim.x) {
        const float *mb = mag + band_start[band];
        const float *wb = band_w + band_off[band];
        float acc = 0.0f;
        for (int j = 0; j < band_len[band]; ++j) acc = acc + mb[j] * wb[j];  // ascending bins, as the CPU
        out[f * nbands + band] = yk_log_tf(acc + log_offset);
    }
}

}  // extern "C"
