# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled front end: YAMNet's log-mel and patches, batch and streaming, rounding like TF's float32 graph.

Every frame goes through one kernel (`_frames`, the C in yamnet_frames.h), which computes up to YK_LANES frames
side by side, one per SIMD lane; lanes never mix. The batch path runs it over the whole waveform and the streaming
path over each group of 8 frames as its samples arrive; because a lane's arithmetic does not depend on where or
with whom it runs, both give the same bits. The GIL is released around the kernel (for streams, when a push
carries enough samples to be worth it).
"""
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memmove

import numpy as np

cimport numpy as cnp

from edgert.yamnet.frontend import _shared
from edgert.yamnet.params import PARAMS

__all__ = ["log_mel", "patches", "StreamingFrontend"]


cdef extern from "yamnet_frames.h" nogil:
    enum: YK_LANES
    enum: YK_MAX_PASSES
    ctypedef struct yk_plan:
        pass
    yk_plan *yk_plan_new(int n, int npasses, const int *radix, const int *l1, const int *ido,
                         const float *const *wa)
    void yk_plan_free(yk_plan *p)
    void *yk_aligned_alloc(size_t nbytes)
    void yk_aligned_free(void *p)
    int yk_all_finite(const float *x, size_t n)
    float *yk_rfft(const yk_plan *p, float *data, float *scratch)
    ctypedef struct yk_frontend:
        int win, hop, nfft, nbands
        const float *window
        const yk_plan *plan
        int first_bin, end_bin
        const int *band_start
        const int *band_len
        const int *band_off
        const float *band_w
        float log_offset
    ctypedef struct yk_work:
        pass
    int yk_work_init(yk_work *w, int nfft)
    void yk_work_free(yk_work *w)
    void yk_frames(const yk_frontend *fe, const float *x, Py_ssize_t n, float *out, yk_work *w)


# YAMNet's sizes, read once from PARAMS through _shared (the single source of the numbers).
cdef int WIN = _shared.WINDOW
cdef int HOP = _shared.HOP
cdef int NFFT = _shared.NFFT
cdef int NBANDS = _shared.NBANDS
cdef int PATCH_FRAMES = _shared.PATCH_FRAMES
cdef int PATCH_HOP = _shared.PATCH_HOP
cdef int FRAME_GROUP = _shared.STREAM_FRAME_GROUP
cdef Py_ssize_t GROUP_SAMPLES = FRAME_GROUP * HOP      # from one group's first frame to the next's
cdef Py_ssize_t SPAN = (FRAME_GROUP - 1) * HOP + WIN   # the samples one group of frames reads
# Below this many samples a push keeps the GIL: releasing and taking it back costs more than the work.
cdef Py_ssize_t NOGIL_MIN_SAMPLES = 4096

cnp.import_array()
if FRAME_GROUP != YK_LANES:
    raise RuntimeError(f"stream frame group {FRAME_GROUP} != kernel lanes {YK_LANES}")

# The kernel's tables, built once at import and kept for the life of the process.
cdef yk_frontend FE
_KEEP = {}  # owners of the memory FE points into


def _build_tables():
    bands = _shared.mel_bands()
    # The kernel reads bins as (re, im) pairs; DC and Nyquist, stored without an imaginary part, carry no weight.
    if bands.first_bin < 1 or bands.end_bin > NFFT // 2:
        raise RuntimeError(f"mel bands span bins {bands.first_bin}..{bands.end_bin}, outside 1..{NFFT // 2 - 1}")
    cdef float[::1] window = _KEEP.setdefault("window", np.array(_shared.hann_window(), np.float32))
    cdef int[::1] start = _KEEP.setdefault("start", np.array(bands.start, np.int32))
    cdef int[::1] length = _KEEP.setdefault("length", np.array(bands.length, np.int32))
    cdef int[::1] offset = _KEEP.setdefault("offset", np.array(bands.offset, np.int32))
    cdef float[::1] weights = _KEEP.setdefault("weights", np.array(bands.weights, np.float32))
    passes = _shared.rfft_passes(NFFT)
    cdef int n = len(passes)
    cdef int[::1] radix = np.array([p.radix for p in passes], np.int32)
    cdef int[::1] l1 = np.array([p.l1 for p in passes], np.int32)
    cdef int[::1] ido = np.array([p.ido for p in passes], np.int32)
    keep = [np.append(np.asarray(p.twiddles, np.float32), np.float32(0)) for p in passes]  # never empty
    cdef const float *wa[YK_MAX_PASSES]
    if n > YK_MAX_PASSES:
        raise RuntimeError(f"{n} FFT passes: more than the kernel supports")
    cdef float[::1] t
    for i in range(n):
        t = keep[i]
        wa[i] = &t[0]
    cdef yk_plan *plan = yk_plan_new(NFFT, n, &radix[0], &l1[0], &ido[0], wa)  # copies the twiddles
    if plan == NULL:
        raise MemoryError("could not build the FFT plan")
    FE.win, FE.hop, FE.nfft, FE.nbands = WIN, HOP, NFFT, NBANDS
    FE.window = &window[0]
    FE.plan = plan
    FE.first_bin, FE.end_bin = bands.first_bin, bands.end_bin
    FE.band_start, FE.band_len, FE.band_off, FE.band_w = &start[0], &length[0], &offset[0], &weights[0]
    FE.log_offset = PARAMS.log_offset


_build_tables()


cdef inline const yk_plan *_plan() noexcept nogil:
    return FE.plan


cdef inline void _frames(const float *x, Py_ssize_t n, float *out, yk_work *w) noexcept nogil:
    """The one kernel every path uses: log-mel rows of n frames, frame f at x + f * HOP, into out[f, :]."""
    yk_frames(&FE, x, n, out, w)


cdef object _as_samples(object waveform, object sample_rate):
    """float32[samples], C-contiguous, finite, not empty; the common float32 case costs no copy, no Python scan."""
    cdef const float[::1] v
    if sample_rate != PARAMS.sample_rate:
        _shared.check_sample_rate(sample_rate)
    if type(waveform) is np.ndarray and waveform.dtype == np.float32 and waveform.ndim == 1 \
            and waveform.flags.c_contiguous:
        x = waveform
    else:
        x = _shared.as_waveform(waveform, sample_rate, allow_empty=True, check_finite=False)
    if x.shape[0] == 0:
        _shared.as_waveform(x, sample_rate)  # raises the shared "empty waveform" error
    v = x
    with nogil:
        finite = yk_all_finite(&v[0], v.shape[0])
    if not finite:
        _shared.raise_non_finite(x)
    return x


def log_mel(waveform, pad=True, *, sample_rate=16000):
    """YAMNet's log-mel spectrogram of mono 16 kHz audio: float32[frames, 64].

    With pad=True the waveform is first zero-padded at its end exactly as the TF-Hub model does (at least one
    patch, then whole patch hops), so the result equals the hub's `log_mel` output. With pad=False a waveform
    shorter than one STFT window (400 samples) gives float32[0, 64]. int16 input is scaled by 1/32768.
    """
    x = _as_samples(waveform, sample_rate)
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t total = _shared.padded_length(n) if pad else n
    cdef Py_ssize_t frames = _shared.num_frames(total)
    cdef Py_ssize_t inside = min(_shared.num_frames(n), frames)  # frames that never touch the padding
    out = np.empty((frames, NBANDS), np.float32)
    if frames == 0:
        return out
    cdef const float[::1] xv = x
    cdef float[:, ::1] ov = out
    cdef const float[::1] tv
    cdef yk_work w
    cdef Py_ssize_t start = inside * HOP
    if frames > inside:  # the last frames read the hub's zero padding: give them their own short buffer
        tail = np.zeros(total - start, np.float32)
        tail[:n - start] = x[start:]
        tv = tail
    with nogil:
        if yk_work_init(&w, NFFT) != 0:
            with gil:
                raise MemoryError("front end work buffers")
        if inside:
            _frames(&xv[0], inside, &ov[0, 0], &w)
        if frames > inside:
            _frames(&tv[0], frames - inside, &ov[inside, 0], &w)
        yk_work_free(&w)
    return out


def patches(log_mel):
    """Cut a log-mel spectrogram float32[frames, 64] into YAMNet patches: float32[N, 96, 64], hop 48 frames.

    N = 1 + (frames - 96) // 48, and 0 when frames < 96 (like tf.signal.frame without padding).
    """
    m = _shared.as_log_mel(log_mel)
    cdef Py_ssize_t n = _shared.num_patches(m.shape[0])
    out = np.empty((n, PATCH_FRAMES, NBANDS), np.float32)
    if n == 0:
        return out
    cdef const float[:, ::1] mv = m
    cdef float[:, :, ::1] ov = out
    cdef Py_ssize_t p
    cdef size_t patch_bytes = <size_t> PATCH_FRAMES * NBANDS * sizeof(float)
    with nogil:
        for p in range(n):
            memcpy(&ov[p, 0, 0], &mv[p * PATCH_HOP, 0], patch_bytes)
    return out


cdef class StreamingFrontend:
    """Incremental front end: push audio chunks of any size, get each 96x64 patch as soon as its last frame exists.

    Its patches equal `patches(log_mel(x, pad=False))` of everything pushed so far; a stream never pads. Each
    STFT frame is computed once, in groups of STREAM_FRAME_GROUP frames as soon as a group's samples have arrived;
    patch boundaries fall on group boundaries (96 and 48 are multiples of 8), so no patch ever waits for a group.
    One stream is not thread-safe; use one per audio source.
    """

    cdef yk_work _w
    cdef float *_pending       # samples from the next group's first frame: float32[< SPAN]
    cdef Py_ssize_t _npending
    cdef float *_joint         # a group that straddles the pending samples and a new chunk: float32[SPAN]
    cdef float *_history       # log-mel rows from the next patch's start: float32[PATCH_FRAMES, NBANDS]
    cdef int _nhistory         # always a multiple of FRAME_GROUP
    cdef uint64_t _frames_computed
    cdef uint64_t _patches_emitted

    def __cinit__(self, *args, **kwargs):
        self._pending = <float *> yk_aligned_alloc(SPAN * sizeof(float))
        self._joint = <float *> yk_aligned_alloc(SPAN * sizeof(float))
        self._history = <float *> yk_aligned_alloc(<size_t> PATCH_FRAMES * NBANDS * sizeof(float))
        if self._pending == NULL or self._joint == NULL or self._history == NULL \
                or yk_work_init(&self._w, NFFT) != 0:
            raise MemoryError("streaming front end buffers")

    def __dealloc__(self):
        yk_work_free(&self._w)
        yk_aligned_free(self._pending)
        yk_aligned_free(self._joint)
        yk_aligned_free(self._history)

    def __init__(self, *, sample_rate=16000):
        _shared.check_sample_rate(sample_rate)
        self.reset()

    def reset(self):
        """Forget all audio and frames, as if just built."""
        self._npending = 0
        self._nhistory = 0
        self._frames_computed = 0
        self._patches_emitted = 0

    @property
    def frames_computed(self):
        """How many STFT frames this stream has computed (each exactly once; whole groups of STREAM_FRAME_GROUP)."""
        return self._frames_computed

    @property
    def patches_emitted(self):
        """How many patches push() has returned so far."""
        return self._patches_emitted

    def push(self, chunk):
        """Add float32[samples] (any length, int16 scaled by 1/32768) and return the patches it completes:
        float32[k, 96, 64], k >= 0. An empty chunk returns float32[0, 96, 64]. A rejected chunk leaves the
        stream as it was."""
        cdef cnp.ndarray x
        # The common case, a native float32 vector, is checked with C macros: a 10 ms push must cost microseconds.
        if cnp.PyArray_Check(chunk) and cnp.PyArray_TYPE(<cnp.ndarray> chunk) == cnp.NPY_FLOAT32 \
                and cnp.PyArray_NDIM(<cnp.ndarray> chunk) == 1 and cnp.PyArray_ISCARRAY_RO(<cnp.ndarray> chunk) \
                and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray> chunk):
            x = <cnp.ndarray> chunk
        else:
            x = _shared.as_waveform(chunk, PARAMS.sample_rate, allow_empty=True, check_finite=False)
        cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0)
        if n == 0:
            return _empty_patches()
        cdef const float *p = <const float *> cnp.PyArray_DATA(x)
        cdef bint big = n >= NOGIL_MIN_SAMPLES
        cdef int finite
        if big:
            with nogil:
                finite = yk_all_finite(p, n)
        else:
            finite = yk_all_finite(p, n)
        if not finite:
            _shared.raise_non_finite(x)
        cdef Py_ssize_t total = self._npending + n
        cdef Py_ssize_t groups = 0 if total < SPAN else 1 + (total - SPAN) // GROUP_SAMPLES
        cdef Py_ssize_t k = _num_patches(self._nhistory + groups * FRAME_GROUP)
        if k == 0 and groups == 0:  # just buffer the samples
            memcpy(self._pending + self._npending, p, n * sizeof(float))
            self._npending = total
            return _empty_patches()
        cdef cnp.npy_intp dims[3]
        dims[0], dims[1], dims[2] = k, PATCH_FRAMES, NBANDS
        out = cnp.PyArray_EMPTY(3, dims, cnp.NPY_FLOAT32, 0) if k else _empty_patches()
        cdef float *op = <float *> cnp.PyArray_DATA(<cnp.ndarray> out) if k else NULL
        if big:
            with nogil:
                self._push(p, n, op)
        else:
            self._push(p, n, op)
        return out

    cdef void _push(self, const float *x, Py_ssize_t n, float *out) noexcept nogil:
        # The stream seen as pending ++ x; group g starts at g * GROUP_SAMPLES and needs SPAN samples.
        cdef Py_ssize_t npend = self._npending, total = self._npending + n, at = 0, have
        cdef const float *src
        while at + SPAN <= total:
            if at >= npend:
                src = x + (at - npend)  # wholly inside the chunk: read in place
            else:
                have = npend - at
                memcpy(self._joint, self._pending + at, have * sizeof(float))
                memcpy(self._joint + have, x, (SPAN - have) * sizeof(float))
                src = self._joint
            out = self._group(src, out)
            at += GROUP_SAMPLES
        if at < npend:  # no group finished inside the pending samples' span: keep them and the chunk
            memmove(self._pending, self._pending + at, (npend - at) * sizeof(float))
            memcpy(self._pending + npend - at, x, n * sizeof(float))
        else:
            memcpy(self._pending, x + (at - npend), (total - at) * sizeof(float))
        self._npending = total - at

    cdef float *_group(self, const float *frames, float *out) noexcept nogil:
        """Compute one group of frames into the history; when that completes a patch, copy it to out, advance."""
        _frames(frames, FRAME_GROUP, self._history + self._nhistory * NBANDS, &self._w)
        self._nhistory += FRAME_GROUP
        self._frames_computed += FRAME_GROUP
        if self._nhistory == PATCH_FRAMES:
            memcpy(out, self._history, <size_t> PATCH_FRAMES * NBANDS * sizeof(float))
            memmove(self._history, self._history + PATCH_HOP * NBANDS,
                    <size_t> (PATCH_FRAMES - PATCH_HOP) * NBANDS * sizeof(float))
            self._nhistory = PATCH_FRAMES - PATCH_HOP
            self._patches_emitted += 1
            return out + PATCH_FRAMES * NBANDS
        return out


cdef inline object _empty_patches():
    """float32[0, 96, 64], a fresh array like every other push result."""
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = 0, PATCH_FRAMES, NBANDS
    return cnp.PyArray_EMPTY(3, dims, cnp.NPY_FLOAT32, 0)


cdef inline Py_ssize_t _num_patches(Py_ssize_t frames) noexcept nogil:
    return 0 if frames < PATCH_FRAMES else 1 + (frames - PATCH_FRAMES) // PATCH_HOP


def _rfft_kernel_seconds(Py_ssize_t groups):
    """Seconds the TF-order FFT kernel takes for `groups` x YK_LANES frames, input copy included.

    For bench/frontend.py, which sets it beside FFTW; not part of the API.
    """
    import time
    cdef size_t nbytes = <size_t> NFFT * YK_LANES * sizeof(float)
    cdef float *src = <float *> yk_aligned_alloc(nbytes)
    cdef float *buf = <float *> yk_aligned_alloc(nbytes)
    cdef float *scratch = <float *> yk_aligned_alloc(nbytes)
    cdef Py_ssize_t g, i
    cdef float sink = 0
    if src == NULL or buf == NULL or scratch == NULL:
        yk_aligned_free(src); yk_aligned_free(buf); yk_aligned_free(scratch)
        raise MemoryError()
    for i in range(NFFT * YK_LANES):
        src[i] = ((i * 7919) % 1000) * 1e-3 - 0.5
    t0 = time.perf_counter()
    with nogil:
        for g in range(groups):
            memcpy(buf, src, nbytes)
            sink += yk_rfft(_plan(), buf, scratch)[g % NFFT]
    elapsed = time.perf_counter() - t0
    yk_aligned_free(src); yk_aligned_free(buf); yk_aligned_free(scratch)
    _BENCH_SINK[0] = sink  # keeps the loop's results alive, so the compiler cannot drop the work
    return elapsed


_BENCH_SINK = [0.0]
