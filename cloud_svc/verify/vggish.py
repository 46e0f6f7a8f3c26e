"""Google's VGGish in numpy: its own log-mel front end, the network as a layer table, the checkpoint loader
(official TF1 `vggish_model.ckpt` layout, or an .npz of the same variables), PCA post-processing, and the
`vggish` verifier that compares clip embeddings with per-label prototypes.

The weights are not shipped and cannot be downloaded here: `python -m cloud_svc models fetch vggish` says
where the official files are and where to put them.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, overload

import numpy as np

from cloud_svc.domain import VerifyResult
from cloud_svc.errors import CheckpointError, VerifierUnavailable
from cloud_svc.verify.base import Verifier, decode

log = logging.getLogger("cloud_svc.verify")

CKPT_URL = "https://storage.googleapis.com/audioset/vggish_model.ckpt"
PCA_URL = "https://storage.googleapis.com/audioset/vggish_pca_params.npz"
CKPT_NAME = "vggish_model.ckpt"
NPZ_NAME = "vggish_model.npz"
PCA_NAME = "vggish_pca_params.npz"
PROTOTYPES_NAME = "vggish_prototypes.npz"
SCOPE = "vggish"


@dataclass(frozen=True)
class VggishParams:
    """VGGish's trained constants (vggish_params.py); `conv`/`fc` widths are parameters only so that tests
    can build a small network with the same layout."""

    sample_rate: int = 16000
    stft_window_s: float = 0.025
    stft_hop_s: float = 0.010
    mel_bands: int = 64
    mel_min_hz: float = 125.0
    mel_max_hz: float = 7500.0
    log_offset: float = 0.01
    example_window_s: float = 0.96
    example_hop_s: float = 0.96
    embedding_size: int = 128
    conv: tuple[int, int, int, int, int, int] = (64, 128, 256, 256, 512, 512)
    fc: int = 4096
    embedding_relu: bool = False  # the released model's fc2 has no activation (PCA follows)
    pca_min: float = -2.0
    pca_max: float = 2.0

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.stft_window_s))  # 400

    @property
    def hop_samples(self) -> int:
        return int(round(self.sample_rate * self.stft_hop_s))  # 160

    @property
    def fft_length(self) -> int:
        return 2 ** int(np.ceil(np.log2(self.window_samples)))  # 512

    @property
    def example_frames(self) -> int:
        return int(round(self.example_window_s / self.stft_hop_s))  # 96

    @property
    def example_hop_frames(self) -> int:
        return int(round(self.example_hop_s / self.stft_hop_s))  # 96

    @property
    def layers(self) -> tuple[tuple, ...]:
        """The network as data: (kind, variable scope, width, relu)."""
        c = self.conv
        return (
            ("conv", "conv1", c[0], True), ("pool", "pool1", 0, False),
            ("conv", "conv2", c[1], True), ("pool", "pool2", 0, False),
            ("conv", "conv3/conv3_1", c[2], True), ("conv", "conv3/conv3_2", c[3], True), ("pool", "pool3", 0, False),
            ("conv", "conv4/conv4_1", c[4], True), ("conv", "conv4/conv4_2", c[5], True), ("pool", "pool4", 0, False),
            ("flatten", "", 0, False),
            ("fc", "fc1/fc1_1", self.fc, True), ("fc", "fc1/fc1_2", self.fc, True),
            ("fc", "fc2", self.embedding_size, self.embedding_relu),
        )

    def variable_shapes(self) -> dict[str, tuple[int, ...]]:
        """Checkpoint variable name -> shape, in the official layout (HWIO conv kernels, [in, out] fc)."""
        shapes: dict[str, tuple[int, ...]] = {}
        h, w, ch = self.example_frames, self.mel_bands, 1
        for kind, scope, width, _ in self.layers:
            if kind == "conv":
                shapes[f"{SCOPE}/{scope}/weights"] = (3, 3, ch, width)
                shapes[f"{SCOPE}/{scope}/biases"] = (width,)
                ch = width
            elif kind == "pool":
                h, w = -(-h // 2), -(-w // 2)
            elif kind == "flatten":
                ch = h * w * ch
            elif kind == "fc":
                shapes[f"{SCOPE}/{scope}/weights"] = (ch, width)
                shapes[f"{SCOPE}/{scope}/biases"] = (width,)
                ch = width
        return shapes


PARAMS = VggishParams()


# ---------------------------------------------------------------------------------------------- front end
@overload
def hertz_to_mel(hz: float) -> float: ...
@overload
def hertz_to_mel(hz: np.ndarray) -> np.ndarray: ...
def hertz_to_mel(hz: float | np.ndarray) -> float | np.ndarray:
    """HTK mel scale, as VGGish uses it: a scalar (numpy float64) for a scalar, an array for an array."""
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


def mel_matrix(p: VggishParams = PARAMS) -> np.ndarray:
    """float64[fft_length // 2 + 1, mel_bands]: triangles on the HTK mel scale; the DC bin gets no weight."""
    bins = p.fft_length // 2 + 1
    bin_mel = hertz_to_mel(np.linspace(0.0, p.sample_rate / 2.0, bins))
    edges = np.linspace(hertz_to_mel(p.mel_min_hz), hertz_to_mel(p.mel_max_hz), p.mel_bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lower) / (center - lower)
    falling = (upper - bin_mel[:, None]) / (upper - center)
    m = np.maximum(0.0, np.minimum(rising, falling))
    m[0, :] = 0.0
    return m


def log_mel(wave: np.ndarray, p: VggishParams = PARAMS) -> np.ndarray:
    """float32[samples] at p.sample_rate -> float32[frames, mel_bands]; frames = 1 + (samples - 400) // 160."""
    n, hop = p.window_samples, p.hop_samples
    if wave.size < n:
        return np.zeros((0, p.mel_bands), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(wave.astype(np.float64), n)[::hop]  # [F, 400]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)                            # periodic Hann
    spectrum = np.abs(np.fft.rfft(frames * window, p.fft_length))                          # [F, 257]
    return np.log(spectrum @ mel_matrix(p) + p.log_offset).astype(np.float32)              # [F, 64]


def examples(wave: np.ndarray, p: VggishParams = PARAMS) -> np.ndarray:
    """float32[samples] -> float32[N, 96, 64] non-overlapping 0.96 s log-mel examples (no padding)."""
    lm = log_mel(wave, p)
    k, hop = p.example_frames, p.example_hop_frames
    if lm.shape[0] < k:
        return np.zeros((0, k, p.mel_bands), np.float32)
    return np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(lm, (k, p.mel_bands))[::hop, 0])


# ---------------------------------------------------------------------------------------------- network
def _conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x float32[N,H,W,C], w [3,3,C,O] (HWIO), stride 1, SAME padding -> float32[N,H,W,O]."""
    n, h, wd, c = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))  # [N,H,W,C,3,3]
    cols = cols.transpose(0, 1, 2, 4, 5, 3).reshape(n * h * wd, 9 * c)      # (kh, kw, c) order, as HWIO
    return (cols @ w.reshape(9 * c, -1) + b).reshape(n, h, wd, -1)


def _maxpool2x2(x: np.ndarray) -> np.ndarray:
    """2x2 max pool, stride 2, SAME padding: float32[N,H,W,C] -> [N,ceil(H/2),ceil(W/2),C]."""
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-np.inf)
    return x.reshape(n, x.shape[1] // 2, 2, x.shape[2] // 2, 2, c).max(axis=(2, 4))


class VggishModel:
    """examples float32[N,96,64] -> embeddings float32[N,128] (before PCA)."""

    def __init__(self, variables: dict[str, np.ndarray], p: VggishParams = PARAMS):
        want = p.variable_shapes()
        missing = sorted(set(want) - set(variables))
        if missing:
            raise CheckpointError(f"VGGish checkpoint lacks {len(missing)} variables, e.g. {missing[:3]}")
        wrong = {k: (tuple(variables[k].shape), s) for k, s in want.items() if tuple(variables[k].shape) != s}
        if wrong:
            raise CheckpointError(f"VGGish checkpoint variables have unexpected shapes (got, want): {wrong}")
        self.p = p
        self.vars = {k: np.asarray(variables[k], np.float32) for k in want}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        p = self.p
        if x.ndim != 3 or x.shape[1:] != (p.example_frames, p.mel_bands):
            raise ValueError(f"VGGish takes float32[N, {p.example_frames}, {p.mel_bands}], got {x.shape}")
        net = x.astype(np.float32)[..., None]  # [N, 96, 64, 1]
        for kind, scope, _, relu in p.layers:
            if kind == "conv":
                net = _conv3x3(net, self.vars[f"{SCOPE}/{scope}/weights"], self.vars[f"{SCOPE}/{scope}/biases"])
            elif kind == "pool":
                net = _maxpool2x2(net)
            elif kind == "flatten":
                net = net.reshape(net.shape[0], -1)  # NHWC row-major, as slim.flatten
            elif kind == "fc":
                net = net @ self.vars[f"{SCOPE}/{scope}/weights"] + self.vars[f"{SCOPE}/{scope}/biases"]
            if relu:
                net = np.maximum(net, 0.0)
        return net.astype(np.float32)


class Postprocessor:
    """PCA (with the released means and eigenvectors), clip to [-2, 2], quantize to uint8."""

    def __init__(self, eigen_vectors: np.ndarray, means: np.ndarray, p: VggishParams = PARAMS):
        k = p.embedding_size
        means = np.asarray(means, np.float64).reshape(-1, 1)
        if eigen_vectors.shape != (k, k) or means.shape != (k, 1):
            raise CheckpointError(f"PCA params must be eigen vectors [{k},{k}] and means [{k},1], got "
                                  f"{eigen_vectors.shape} and {means.shape}")
        self.vectors, self.means, self.p = np.asarray(eigen_vectors, np.float64), means, p

    @classmethod
    def load(cls, path: str | Path, p: VggishParams = PARAMS) -> "Postprocessor":
        try:
            with np.load(path) as z:
                return cls(z["pca_eigen_vectors"], z["pca_means"], p)
        except (OSError, KeyError, ValueError) as exc:
            raise CheckpointError(f"cannot read VGGish PCA params {path}: {exc}") from exc

    def pca(self, emb: np.ndarray) -> np.ndarray:
        """float32[N,128] -> float64[N,128] PCA-applied (not yet clipped)."""
        return (self.vectors @ (emb.T.astype(np.float64) - self.means)).T

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        """float32[N,128] -> uint8[N,128]."""
        lo, hi = self.p.pca_min, self.p.pca_max
        clipped = np.clip(self.pca(emb), lo, hi)
        return ((clipped - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def load_variables(path: str | Path, p: VggishParams = PARAMS) -> dict[str, np.ndarray]:
    """The VGGish variables from a TF1 checkpoint prefix (needs tensorflow) or an .npz keyed by the same names."""
    path = Path(path)
    if path.suffix == ".npz":
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not Path(f"{path}.index").is_file() and not path.is_file():
        raise CheckpointError(f"no VGGish checkpoint at {path} (expected {path}.index and data files)")
    try:
        import tensorflow as tf  # only to read the official TF1 checkpoint; `models export vggish` removes the need
    except ImportError:
        raise CheckpointError(f"reading {path} needs tensorflow; convert it once with "
                              "`python -m cloud_svc models export vggish` where tensorflow is installed") from None
    try:
        reader = tf.train.load_checkpoint(str(path))
        names = reader.get_variable_to_shape_map()
    except Exception as exc:  # noqa: BLE001 - tf raises assorted errors
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    return {k: reader.get_tensor(k) for k in p.variable_shapes() if k in names}


def model_dir(path: Optional[str | Path] = None) -> Path:
    if path is not None:
        return Path(path)
    env = os.environ.get("CLOUD_SVC_VGGISH_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models" / "vggish"


def find_checkpoint(d: Path) -> Optional[Path]:
    if (d / NPZ_NAME).is_file():
        return d / NPZ_NAME
    if Path(f"{d / CKPT_NAME}.index").is_file() or (d / CKPT_NAME).is_file():  # V2 (index + data) or V1 file
        return d / CKPT_NAME
    return None


@dataclass
class Prototypes:
    """One mean PCA embedding per label, from labelled clips; scores are cosine similarities mapped to [0, 1]."""

    labels: list[str]
    centroids: np.ndarray          # float32[K, 128], unit length
    threshold: float = 0.8
    thresholds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Prototypes":
        with np.load(path) as z:
            return cls([str(x) for x in z["labels"]], z["centroids"].astype(np.float32), float(z["threshold"]))

    def save(self, path: Path) -> None:
        np.savez(path, labels=np.array(self.labels), centroids=self.centroids, threshold=self.threshold)

    def scores(self, pca_emb: np.ndarray) -> dict[str, float]:
        """float[N,128] PCA embeddings of a clip -> label -> max over examples of (1 + cos) / 2."""
        x = pca_emb / np.maximum(np.linalg.norm(pca_emb, axis=1, keepdims=True), 1e-9)
        sims = (1.0 + x @ self.centroids.T) / 2.0  # [N, K]
        peak = sims.max(axis=0)
        return {lab: float(peak[i]) for i, lab in enumerate(self.labels)}


class Vggish:
    """Waveform -> uint8 embeddings, the whole VGGish pipeline."""

    def __init__(self, checkpoint: str | Path, pca_params: str | Path, p: VggishParams = PARAMS):
        self.p = p
        self.model = VggishModel(load_variables(checkpoint, p), p)
        self.post = Postprocessor.load(pca_params, p)

    def embed(self, wave: np.ndarray) -> np.ndarray:
        """float32[samples] 16 kHz -> float32[N,128] embeddings before PCA (N = whole 0.96 s examples)."""
        return self.model(examples(wave, self.p))

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        """float32[samples] 16 kHz -> uint8[N,128], VGGish's released embedding format."""
        return self.post(self.embed(wave))


class VggishVerifier(Verifier):
    KEY = "vggish"

    def __init__(self, model_dir_: Optional[str | Path] = None, params: VggishParams = PARAMS, **_):
        d = model_dir(model_dir_)
        ckpt = find_checkpoint(d)
        if ckpt is None or not (d / PCA_NAME).is_file():
            raise VerifierUnavailable(f"the vggish verifier runs only with Google's VGGish weights in {d} "
                                      f"({CKPT_NAME} and {PCA_NAME}); `python -m cloud_svc models fetch vggish` "
                                      "says where to get them")
        if not (d / PROTOTYPES_NAME).is_file():
            raise VerifierUnavailable(f"the vggish verifier needs label prototypes {d / PROTOTYPES_NAME}: build "
                                      "them from labelled clips with `python -m cloud_svc models prototypes "
                                      "vggish --clips DIR` (DIR/<label>/*.wav)")
        self.vggish = Vggish(ckpt, d / PCA_NAME, params)
        self.prototypes = Prototypes.load(d / PROTOTYPES_NAME)
        log.info("vggish verifier: %s, %d label prototypes", ckpt, len(self.prototypes.labels))

    def verify(self, clip: bytes, fmt: str, label: str) -> VerifyResult:
        wave = decode(clip, self.vggish.p.sample_rate)
        emb = self.vggish.embed(wave)
        if emb.shape[0] == 0:
            return VerifyResult(self.KEY, [], {}, None, "clip shorter than one 0.96 s example")
        lo, hi = self.vggish.p.pca_min, self.vggish.p.pca_max
        scores = self.prototypes.scores(np.clip(self.vggish.post.pca(emb), lo, hi))
        thresholds = {lab: self.prototypes.threshold for lab in self.prototypes.labels}
        return self.verdict(self.KEY, scores, thresholds, label)


def build_prototypes(clips_dir: Path, d: Optional[Path] = None, threshold: float = 0.8,
                     p: VggishParams = PARAMS) -> Prototypes:
    """DIR/<label>/*.{wav,flac,ogg} -> one unit-length mean PCA embedding per label, saved beside the weights."""
    d = model_dir(d)
    ckpt = find_checkpoint(d)
    if ckpt is None:
        raise VerifierUnavailable(f"no VGGish checkpoint in {d}")
    vg = Vggish(ckpt, d / PCA_NAME, p)
    labels, cents = [], []
    for sub in sorted(x for x in Path(clips_dir).iterdir() if x.is_dir()):
        embs = []
        for f in sorted(sub.iterdir()):
            if f.suffix.lower() in (".wav", ".flac", ".ogg"):
                e = vg.embed(decode(f.read_bytes(), p.sample_rate))
                if e.shape[0]:
                    embs.append(np.clip(vg.post.pca(e), p.pca_min, p.pca_max))
        if embs:
            m = np.concatenate(embs).mean(axis=0)
            labels.append(sub.name)
            cents.append(m / max(np.linalg.norm(m), 1e-9))
    if not labels:
        raise VerifierUnavailable(f"no labelled clips under {clips_dir} (expected {clips_dir}/<label>/*.wav)")
    protos = Prototypes(labels, np.stack(cents).astype(np.float32), threshold)
    protos.save(d / PROTOTYPES_NAME)
    return protos
