"""The golden test signals and the reading of the reference outputs TF's hub YAMNet computed for them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgert.errors import ModelMissingError
from edgert.yamnet import paths
from edgert.yamnet.params import PARAMS

NOISE_SEED = 51773  # the seed of Google's own yamnet_test.py
# Two real clips of the labelled pack: (golden name, path inside ../shared/data).
REAL_CLIPS = {
    "clip_glass_break": "audio/glass_break/glass_break_0001.wav",
    "clip_scream": "audio/scream/scream_0001.wav",
}
# Keys of every golden .npz.
KEYS = ("waveform", "log_mel", "patches", "scores", "embeddings")


def synthetic_signals() -> dict[str, np.ndarray]:
    """Google's test signals plus a chirp: name -> float32[samples] at 16 kHz."""
    sr = PARAMS.sample_rate
    n3 = 3 * sr
    t3 = np.arange(n3) / sr
    np.random.seed(NOISE_SEED)  # exactly as yamnet_test.py draws its noise
    noise = np.random.uniform(-1.0, +1.0, n3)
    t10 = np.arange(10 * sr) / sr
    # Linear chirp 100 Hz -> 7.9 kHz over 10 s: phase = 2*pi*(f0*t + (f1-f0)*t^2/(2*T)).
    f0, f1, dur = 100.0, 7900.0, 10.0
    chirp = 0.5 * np.sin(2 * np.pi * (f0 * t10 + (f1 - f0) * t10**2 / (2 * dur)))
    return {
        "zeros_3s": np.zeros(n3, np.float32),
        "noise_51773_3s": noise.astype(np.float32),
        "sine_440_3s": np.sin(2 * np.pi * 440.0 * t3).astype(np.float32),
        "chirp_10s": chirp.astype(np.float32),
    }


def all_signals() -> dict[str, np.ndarray]:
    """Synthetic signals plus the real clips where the labelled pack is present."""
    from edge_rt.capture.files import read_clip  # the edge's own reader and resampler (soxr)

    sigs = synthetic_signals()
    data = paths.data_dir()
    if data is not None:
        for name, rel in REAL_CLIPS.items():
            sigs[name] = read_clip(data / rel)
    return sigs


def golden_files(directory: Path | None = None) -> list[Path]:
    directory = directory or paths.golden_dir()
    return sorted(directory.glob("*.npz"))


def load(name: str, directory: Path | None = None) -> dict[str, np.ndarray]:
    """Load golden `name`: waveform, log_mel [M,64], patches [N,96,64], scores [N,521], embeddings [N,1024]."""
    path = (directory or paths.golden_dir()) / f"{name}.npz"
    if not path.is_file():
        raise ModelMissingError(f"golden file {path} does not exist: {paths.BUILD_HINT}")
    with np.load(path) as npz:
        return {k: npz[k] for k in KEYS}
