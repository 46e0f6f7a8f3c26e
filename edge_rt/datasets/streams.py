"""Long streams with known truth: ordinary life (speech turns, clatter, ambience) and pack events at known times.

A stream is a sequence of scenes. Each scene has a background bed (the pack's ambience, pink noise, or a quiet
room), a level, sometimes a cheap microphone's band limit, and items placed one after another with gaps: speech
turns of the negatives' speakers, espeak-ng sentences, household clatter, and in event streams one pack event
at a known SNR over the bed. Only clips of the requested split are used, so a `test` stream holds recordings and
voices that training and calibration never met. Everything comes from one seed.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from edge_rt.datasets import augment, corpus
from edge_rt.datasets.corpus import Clip
from edgert.yamnet.analysis import HOP_SAMPLES, WINDOW_SAMPLES
from edgert.yamnet.params import PARAMS

SR = PARAMS.sample_rate
KINDS = ("ordinary", "events")
VERSION = 4  # bump when the recipe changes: cached model outputs are keyed by it
EVENT_LABELS = {"glass_break": 0.3, "scream": 0.25, "shout": 0.25, "baby_cry": 0.1, "siren": 0.1}  # draw weights
SCENE_S = {"ordinary": (25.0, 60.0), "events": (12.0, 24.0)}
BED_DBFS = (-62.0, -32.0)  # active RMS of the ambience bed
SPEECH_SNR_DB = (0.0, 20.0)  # speech over the bed
EVENT_SNR_DB = (3.0, 25.0)  # an event over the bed
QUIET_ROOM_DBFS = (-45.0, -8.0)  # content level where the bed is a near-silent room: "-40 to 0 dBFS"
NARROW_SHARE = 0.25  # scenes heard through a cheap 8 kHz microphone
TRUTH_WITHIN_DB = 25.0  # an item's truth spans its 10 ms frames within this of its loudest frame
LABEL_WITHIN_DB = 10.0  # a window is the item's when the item is within this of its own loudest window ...
AMBIGUOUS_DB = 25.0  # ... and left out of training between that and this
SPEECH, CLATTER, BACKGROUND = "speech", "clatter", "background"


@dataclass
class Truth:
    label: str
    start_s: float
    end_s: float
    source: str
    snr_db: Optional[float] = None


@dataclass
class Item:
    label: str  # an event label, SPEECH or CLATTER
    start: int  # first sample in the stream
    audio: np.ndarray  # float32[samples] as mixed in (level applied, before any band limit)
    source: str


@dataclass
class Stream:
    name: str
    kind: str
    split: str
    seed: int
    wave: np.ndarray  # float32[samples] at 16 kHz
    truth: list[Truth]
    items: list[Item] = field(default_factory=list, repr=False)
    bed: Optional[np.ndarray] = field(default=None, repr=False)  # float32[samples] the ambience alone

    @property
    def seconds(self) -> float:
        return self.wave.size / SR

    def digest(self) -> str:
        return hashlib.sha256(self.wave.tobytes()).hexdigest()

    def window_targets(self, n: int) -> np.ndarray:
        """str[n]: what window i (at i*hop, 0.96 s) mostly holds: an event label, SPEECH, CLATTER, BACKGROUND,
        or '' where a sound is present but far below its own peak (left out of training)."""
        bed = _window_power(self.bed if self.bed is not None else np.zeros(self.wave.size, np.float32), 0, n)
        best = np.zeros(n)
        best_peak = np.zeros(n)
        best_label = np.full(n, BACKGROUND, dtype=object)
        for it in self.items:
            p = _window_power(it.audio, it.start, n)
            take = p > best
            best[take], best_peak[take], best_label[take] = p[take], p.max(), it.label
        out = np.full(n, BACKGROUND, dtype=object)
        present = best > 0.5 * bed  # the item is no more than 3 dB under the ambience
        near = present & (best >= best_peak * 10 ** (-LABEL_WITHIN_DB / 10))
        faint = present & ~near & (best >= best_peak * 10 ** (-AMBIGUOUS_DB / 10))
        out[near] = best_label[near]
        out[faint] = ""
        return out.astype(str)

    def save(self, folder: Path) -> Path:
        """Write NAME.wav (16-bit would round; float32 WAV keeps it exact) and NAME.json with the truth."""
        import soundfile as sf

        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{self.name}.wav", self.wave, SR, subtype="FLOAT")
        (folder / f"{self.name}.json").write_text(json.dumps(
            {"name": self.name, "kind": self.kind, "split": self.split, "seed": self.seed, "seconds": self.seconds,
             "sha256": self.digest(), "truth": [asdict(t) for t in self.truth]}, indent=1))
        return folder / f"{self.name}.wav"


def _window_power(audio: np.ndarray, start: int, n: int) -> np.ndarray:
    """float64[n]: mean power of `audio` (placed at sample `start`) inside each of n stream windows."""
    out = np.zeros(n)
    c = np.concatenate([[0.0], np.cumsum(np.square(audio, dtype=np.float64))])
    first = max(0, (start - WINDOW_SAMPLES) // HOP_SAMPLES)
    last = min(n, (start + audio.size) // HOP_SAMPLES + 1)
    for i in range(first, last):
        a = min(max(i * HOP_SAMPLES - start, 0), audio.size)
        b = min(max(i * HOP_SAMPLES + WINDOW_SAMPLES - start, 0), audio.size)
        out[i] = (c[b] - c[a]) / WINDOW_SAMPLES
    return out


def active_span(audio: np.ndarray) -> tuple[float, float]:
    """(start_s, end_s) of the 10 ms frames within TRUTH_WITHIN_DB of the loudest one."""
    f = augment.FRAME
    k = -(-audio.size // f)  # the last, partial frame counts too
    padded = np.zeros(k * f, np.float64)
    padded[:audio.size] = audio
    e = np.mean(np.square(padded.reshape(k, f)), axis=1)  # float64[k] frame power
    on = np.flatnonzero(e >= e.max() * 10 ** (-TRUTH_WITHIN_DB / 10))
    return on[0] * f / SR, min((on[-1] + 1) * f, audio.size) / SR


class StreamBuilder:
    """Makes streams from one split's clips. Decoded clips are cached, so many streams cost one read each."""

    def __init__(self, split: str, pack: Optional[list[Clip]] = None, speech: Optional[list[Clip]] = None,
                 event_speed: Optional[tuple[float, float]] = None):
        """`event_speed`: play each event clip at a speed drawn from this range (pitch and length move together),
        for training material; evaluation streams leave it None and play the recordings as they are."""
        self.split = split
        self.event_speed = event_speed
        pack = corpus.pack_clips() if pack is None else pack
        speech = corpus.speech_clips() if speech is None else speech
        self.events = {lab: corpus.by_split(pack, split, lab) for lab in EVENT_LABELS}
        self.ambience = corpus.by_split(pack, split, BACKGROUND)
        self.speech = corpus.by_split(speech, split)
        self.voices = corpus.ESPEAK_VOICES[split]
        self._audio: dict[Path, np.ndarray] = {}
        self._espeak: dict[tuple[str, str, int, int], np.ndarray] = {}  # (voice, line, speed, pitch)
        if not self.speech or not self.ambience:
            raise ValueError(f"split {split!r} has no speech or no ambience clips")

    def _read(self, path: Path) -> np.ndarray:
        from edge_rt.capture.files import read_clip

        if path not in self._audio:
            self._audio[path] = read_clip(path)  # as the edge reads and resamples audio (soxr)
        return self._audio[path]

    def _say(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        voice = str(rng.choice(self.voices))
        line = str(rng.choice(corpus.SENTENCES))
        key = (voice, line, int(rng.integers(130, 190)), int(rng.integers(30, 70)))  # drawn whether cached or not
        if key not in self._espeak:
            self._espeak[key] = augment.espeak(line, voice, speed=key[2], pitch=key[3])
        return self._espeak[key], f"espeak:{voice}"

    def _turn(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """One speaker's turn: 2-7 spoken digits with short pauses (one negatives speaker)."""
        who = rng.choice(sorted({c.group for c in self.speech}))
        mine = [c for c in self.speech if c.group == who]
        parts = []
        for _ in range(int(rng.integers(2, 8))):
            parts.append(self._read(mine[int(rng.integers(len(mine)))].path))
            parts.append(np.zeros(int(rng.uniform(0.04, 0.3) * SR), np.float32))
        return np.concatenate(parts), str(who)

    def _bed(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """A room's steady noise: pink, brown (a rumble) or a near-silent room, at a bed level."""
        kind = str(rng.choice(["pink", "brown", "quiet"], p=[0.45, 0.35, 0.2]))
        x = augment.pink_noise(n, rng)
        if kind == "brown":  # a low rumble: pink noise through a one-pole low-pass
            from scipy.signal import lfilter

            x = lfilter([0.05], [1, -0.95], x).astype(np.float32)
        if kind == "quiet":
            return augment.set_level(x, float(rng.uniform(-78, -64))), kind
        return augment.set_level(x, float(rng.uniform(*BED_DBFS))), kind

    def _ambience(self, n: int, rng: np.random.Generator, bed_level: float) -> list[tuple[int, np.ndarray, str]]:
        """The split's ambience clips (the pack's "background": talk, traffic, water, a room) dropped into the
        room now and then, 0-12 dB over its noise: (start, audio, source) each."""
        out = []
        t = int(rng.uniform(0, 6) * SR)
        while t < n:
            clip = self.ambience[int(rng.integers(len(self.ambience)))]
            audio = augment.set_level(self._read(clip.path), bed_level + float(rng.uniform(0, 12)))[: n - t]
            out.append((t, audio, clip.path.name))
            t += audio.size + int(rng.uniform(1.0, 10.0) * SR)
        return out

    def _scene(self, seconds: float, rng: np.random.Generator, event: Optional[Clip], offset: int
               ) -> tuple[np.ndarray, np.ndarray, list[Item], list[Truth]]:
        n = int(seconds * SR)
        bed, bed_kind = self._bed(n, rng)
        quiet = bed_kind == "quiet"
        bed_level = 20 * np.log10(augment.active_rms(bed) or 1e-7)
        narrow = rng.uniform() < NARROW_SHARE

        def level(snr_range) -> float:
            return float(rng.uniform(*QUIET_ROOM_DBFS)) if quiet else bed_level + float(rng.uniform(*snr_range))

        mix = bed.copy()
        items: list[Item] = []
        truth: list[Truth] = []
        if not quiet or rng.uniform() < 0.3:
            for at, audio, source in self._ambience(n, rng, max(bed_level, -60.0)):
                mix[at:at + audio.size] += audio
                items.append(Item(BACKGROUND, offset + at, audio, source))
        event_at = int(rng.uniform(0.2, 0.6) * n) if event is not None else None
        t = int(rng.uniform(0.3, 2.0) * SR)
        while t < n:
            if event_at is not None and t >= event_at:
                assert event is not None  # event_at is set only for an event
                audio = self._read(event.path)
                if self.event_speed is not None:
                    audio = augment.speed(audio, float(rng.uniform(*self.event_speed)))
                snr = float(rng.uniform(*EVENT_SNR_DB))
                audio = augment.set_level(audio, float(rng.uniform(*QUIET_ROOM_DBFS)) if quiet else bed_level + snr)
                label, source, snr_note = event.label, event.path.name, (None if quiet else snr)
                event_at = None
            else:
                r = rng.uniform()
                if r < 0.55:
                    audio, source = self._turn(rng)
                    label = SPEECH
                elif r < 0.72:
                    audio, source = self._say(rng)
                    label = SPEECH
                elif r < 0.85:
                    audio, source = augment.clatter(rng, float(rng.uniform(0.5, 2.5))), "clatter"
                    label = CLATTER
                elif r < 0.95:
                    audio, source = augment.noise_burst(rng, float(rng.uniform(0.5, 4.0))), "hiss"
                    label = BACKGROUND
                else:
                    t += int(rng.uniform(2, 6) * SR)
                    continue
                snr_note = None
                audio = augment.set_level(audio, level(SPEECH_SNR_DB))
            audio = audio[: n - t]
            mix[t:t + audio.size] += audio
            items.append(Item(label, offset + t, audio, source))
            if label not in (CLATTER, BACKGROUND):
                a, b = active_span(audio)
                truth.append(Truth(label, round((offset + t) / SR + a, 3), round((offset + t) / SR + b, 3), source,
                                   None if snr_note is None else round(snr_note, 1)))
            t += audio.size + int(rng.uniform(0.4, 4.0) * SR)
        if narrow:
            mix = augment.band_limit(mix)
        return np.clip(mix, -1, 1).astype(np.float32), bed, items, truth

    def build(self, kind: str, minutes: float, seed: int, passes: int = 0) -> Stream:
        """An `ordinary` stream (negatives only) or an `events` stream (one pack event per scene) of `minutes`.

        For `events`, `passes` > 0 makes the stream as long as it takes to use every event clip that many times
        (training wants every clip; evaluation wants a fixed length)."""
        if kind not in KINDS:
            raise ValueError(f"stream kind must be one of {KINDS}, got {kind!r}")
        rng = np.random.default_rng([seed, VERSION, KINDS.index(kind), corpus.SPLITS.index(self.split)])
        queue: list[Clip] = []
        if kind == "events" and passes:
            for _ in range(passes):
                queue += [c for lab in EVENT_LABELS for c in self.events[lab]]
            queue = [queue[i] for i in rng.permutation(len(queue))]
        cursors = {lab: 0 for lab in EVENT_LABELS}
        waves, beds, items, truth = [], [], [], []
        total = 0
        while (total < minutes * 60 * SR) if not queue and not (kind == "events" and passes) else queue:
            event = None
            if kind == "events":
                if passes:
                    event = queue.pop()
                else:
                    labs = [lab for lab in EVENT_LABELS if self.events[lab]]
                    w = np.array([EVENT_LABELS[lab] for lab in labs])
                    lab = labs[int(rng.choice(len(labs), p=w / w.sum()))]
                    event = self.events[lab][cursors[lab] % len(self.events[lab])]
                    cursors[lab] += 1
            wave, bed, its, tr = self._scene(float(rng.uniform(*SCENE_S[kind])), rng, event, total)
            waves.append(wave)
            beds.append(bed)
            items += its
            truth += tr
            total += wave.size
        name = f"{kind}-{self.split}-{seed}"
        return Stream(name, kind, self.split, seed, np.concatenate(waves), truth, items, np.concatenate(beds))
