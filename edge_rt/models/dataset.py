"""The labelled clip pack as model inputs (the int8 calibration set): every clip at 16 kHz mono, cut into log-mel
patches by our front end."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgert.yamnet.analysis import window_levels
from edge_rt.datasets.corpus import LABEL_MAP  # the pack's labels, renamed to the detector's
from edgert.errors import ModelMissingError
from edgert.yamnet import paths

SR = 16000
# Generated negatives that the pack lacks: steady noises at many levels, and plain synthetic speech (they widen
# the int8 calibration set beyond the pack).
NOISE_LEVELS_DBFS = (-65.0, -55.0, -45.0, -35.0, -25.0)
NOISE_SECONDS = 6.0
AUGMENT_SNR_DB = (10.0, 25.0)
AUGMENT_SEED = 5  # each event clip is also learnt mixed into pink noise at an SNR drawn from here
SPEECH_LINES = (
    "the meeting starts at ten tomorrow morning", "could you pass me the salt please",
    "the weather is nice today", "I will call you back in five minutes", "this is the last train to the city",
    "please close the door when you leave", "we need two more chairs in the kitchen",
    "the shop opens at nine on sundays", "my brother lives near the old bridge", "let us meet at the station",
)


@dataclass
class PackPatches:
    patches: np.ndarray  # float32[N,96,64]
    levels: np.ndarray  # float32[N] dBFS of each window of the clean clip
    labels: np.ndarray  # str[N] detector label of the clip the patch came from
    clip: np.ndarray  # int32[N] index of that clip
    group: np.ndarray  # int32[N] index of the pack clip it derives from (a noisy copy shares its original's)
    files: list[str]  # clip index -> path inside the pack, or the name of a generated negative


def generated_negatives(seed: int = 11) -> list[tuple[str, np.ndarray]]:
    """(name, float32[samples] 16 kHz) background clips: white, pink and brown noise, and espeak-ng speech."""
    import shutil
    import subprocess

    from edgert.audio import resample_whole
    from edge_rt.capture.synth import PinkNoise

    rng = np.random.default_rng(seed)
    n = int(NOISE_SECONDS * SR)
    out = []
    for level in NOISE_LEVELS_DBFS:
        rms = 10 ** (level / 20)
        white = rng.standard_normal(n)
        brown = np.cumsum(rng.standard_normal(n))
        brown -= np.convolve(brown, np.ones(801) / 801, mode="same")  # keep the walk from drifting off
        out.append((f"white@{level:g}", (white / white.std() * rms).astype(np.float32)))
        out.append((f"pink@{level:g}", PinkNoise(int(rng.integers(2**31)), rms).next(n)))
        out.append((f"brown@{level:g}", (brown / brown.std() * rms).astype(np.float32)))
    espeak = shutil.which("espeak-ng")
    if espeak:
        import io

        import soundfile as sf

        for i, line in enumerate(SPEECH_LINES):
            wav = subprocess.run([espeak, "--stdout", "-s", str(140 + 10 * (i % 4)), line], capture_output=True,
                                 check=True).stdout
            audio, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
            out.append((f"espeak:{i}", resample_whole(audio, rate) * np.float32(0.5)))
    return out


def load_pack(data_dir: Path | None = None, progress: bool = True) -> PackPatches:
    """Features of every pack clip plus generated negatives, computed with the numpy twin (bit-stable)."""
    from tqdm import tqdm

    from edgert.yamnet.frontend import fallback

    data_dir = data_dir or paths.data_dir()
    if data_dir is None:
        raise ModelMissingError("the labelled clip pack (../shared/data) is not present")
    with open(data_dir / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    from edge_rt.capture.files import read_clip
    from edge_rt.capture.synth import PinkNoise

    rng = np.random.default_rng(AUGMENT_SEED)
    # (name, label, a file or the audio itself, group) and, for the augmented copies, the SNR of added pink noise
    clips: list[tuple[str, str, Path | np.ndarray, int]] = [
        (row["file"], LABEL_MAP.get(row["label"], row["label"]), data_dir / row["file"], i) for i, row in enumerate(rows)]
    clips += [(name, "background", wave, len(rows) + i) for i, (name, wave) in enumerate(generated_negatives())]
    pts, lev, lab, clip, group, files = [], [], [], [], [], []
    work: list[tuple[str, str, Path | np.ndarray, int, Optional[float]]] = [
        (n, lab_, src, g, None) for n, lab_, src, g in clips]
    work += [(f"{n}+pink", lab_, src, g, float(rng.uniform(*AUGMENT_SNR_DB)))
             for n, lab_, src, g in clips if lab_ != "background"]
    for i, (name, label, src, g, snr) in enumerate(tqdm(work, desc="clip pack features", unit="clip",
                                                        disable=not progress)):
        wave = read_clip(src) if isinstance(src, Path) else src  # as the edge reads and resamples audio
        clean = wave  # a noisy copy's patches are labelled by where its clean original is loud
        if snr is not None:
            loud = np.sort(np.abs(wave))[int(0.9 * wave.size):]  # the clip's loud part sets the level
            rms = float(np.sqrt(np.mean(loud.astype(np.float64) ** 2))) / 10 ** (snr / 20)
            wave = np.clip(wave + PinkNoise(int(rng.integers(2**31)), rms).next(wave.size), -1, 1).astype(np.float32)
        p = fallback.patches(fallback.log_mel(wave, pad=True))
        pts.append(p)
        lev += window_levels(clean, len(p))
        lab += [label] * len(p)
        clip += [i] * len(p)
        group += [g] * len(p)
        files.append(name)
    return PackPatches(np.concatenate(pts).astype(np.float32), np.array(lev, np.float32), np.array(lab),
                       np.array(clip, np.int32), np.array(group, np.int32), files)
