// Runs cext/frontend.cu on the CPU, one block after another with one thread per block, so the CUDA kernel's
// arithmetic and indexing can be checked bit for bit where no GPU exists. A test helper only.
#include <cmath>
#include <cstring>

struct yk_dim3 { unsigned x, y, z; };
static yk_dim3 threadIdx, blockIdx, blockDim;
#define __global__
#define __device__
#define __shared__ static
#define __syncthreads() ((void)0)
static inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, sizeof i); return i; }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, sizeof f); return f; }

#include "frontend.cu"

extern "C" void yk_host_log_mel(const float *x, long long n_frames, int win, int hop, const float *window,
                                int npasses, const int *radix, const int *l1, const int *ido, const int *wa_off,
                                const float *twiddles, int first_bin, int end_bin, int nbands,
                                const int *band_start, const int *band_len, const int *band_off,
                                const float *band_w, float log_offset, float *out) {
    blockDim.x = 1;
    threadIdx.x = 0;
    for (long long f = 0; f < n_frames; ++f) {
        blockIdx.x = (unsigned)f;
        yk_log_mel(x, n_frames, win, hop, window, npasses, radix, l1, ido, wa_off, twiddles, first_bin, end_bin,
                   nbands, band_start, band_len, band_off, band_w, log_offset, out);
    }
}
