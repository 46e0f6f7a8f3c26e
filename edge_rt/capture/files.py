"""Stored audio as a source: `file:` and `dir:` decode WAV, FLAC, OGG (anything libsndfile reads) in blocks."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from edge_rt.capture.base import Feed, Source, log
from edge_rt.errors import AudioDecodeError, CaptureError, EmptySourceError, SourceNotFoundError, SourceSpecError
from edgert import audio
from edgert.audio import StreamingResampler
from edgert.audio import reason as _reason
from edgert.errors import ClipDecodeError

AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")
"""What `dir:` plays; `file:` tries any name, since libsndfile recognises formats by content."""

_RIFF_HEADER = struct.Struct("<4sI4s")  # "RIFF", size, "WAVE"
_CHUNK_HEADER = struct.Struct("<4sI")  # chunk id, chunk size
_STREAMING_SIZES = (0, 0xFFFFFFFF)  # writers that stream a WAV leave the data size at one of these


def check_audio_file(path: Path) -> sf._SoundFileInfo:
    """The file's soundfile info; raises SourceNotFoundError, EmptySourceError or AudioDecodeError naming it."""
    if not path.exists():
        raise SourceNotFoundError(f"audio file not found: {path}")
    if not path.is_file():
        raise SourceNotFoundError(f"not a regular file: {path}")
    try:
        size = path.stat().st_size
        if size == 0:
            raise EmptySourceError(f"{path} is empty (0 bytes)")
        info = sf.info(str(path))
    except sf.SoundFileError as err:
        raise AudioDecodeError(f"{path} could not be decoded as audio ({_reason(err)})") from None
    except OSError as err:
        raise SourceNotFoundError(f"{path} could not be read: {err.strerror or err}") from None
    if info.frames == 0:
        raise EmptySourceError(f"{path} is empty: its {info.format} header holds no audio frames")
    return info


def wav_truncation(path: Path) -> tuple[int, int] | None:
    """(bytes the WAV header declares for its data, bytes present) when a RIFF/WAVE file was cut short, else None.

    libsndfile quietly plays what is present of a truncated WAV; this lets the caller say so.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(_RIFF_HEADER.size)
            if len(head) < _RIFF_HEADER.size:
                return None
            riff, _, wave = _RIFF_HEADER.unpack(head)
            if riff != b"RIFF" or wave != b"WAVE":
                return None
            while True:
                raw = fh.read(_CHUNK_HEADER.size)
                if len(raw) < _CHUNK_HEADER.size:
                    return None
                chunk_id, chunk_size = _CHUNK_HEADER.unpack(raw)
                if chunk_id == b"data":
                    present = size - fh.tell()
                    if chunk_size not in _STREAMING_SIZES and chunk_size > present:
                        return chunk_size, present
                    return None
                fh.seek(chunk_size + (chunk_size & 1), 1)  # RIFF chunks are padded to even sizes
    except OSError:
        return None


def play_file(path: Path, feed: Feed) -> bool:
    """Decode `path` block by block into `feed`. True when it played to the end, False when a stop cut it short.

    Raises SourceNotFoundError, EmptySourceError or AudioDecodeError; a decoder failure mid-file comes after
    the audio before it was delivered, and says how far decoding got.
    """
    info = check_audio_file(path)
    cut = wav_truncation(path)
    if cut is not None:
        feed.source.stats["truncated_files"] += 1
        log.warning("%s is truncated: its header declares %d data bytes, the file holds %d; playing what exists",
                    path, cut[0], cut[1])
    try:
        handle = sf.SoundFile(str(path))
    except sf.SoundFileError as err:
        raise AudioDecodeError(f"{path} could not be decoded as audio ({_reason(err)})") from None
    with handle:
        resampler = StreamingResampler(info.samplerate, info.channels)
        block_frames = max(1, int(round(info.samplerate * feed.chunk_seconds)))
        decoded = 0
        while not feed.stopping():
            try:
                block = handle.read(block_frames, dtype="float32", always_2d=True)  # float32[k, channels]
            except sf.SoundFileError as err:
                raise AudioDecodeError(f"{path} could not be decoded past {decoded / info.samplerate:.2f} s "
                                       f"({_reason(err)})") from None
            if len(block) == 0:
                feed.emit(resampler.flush())
                return True
            decoded += len(block)
            feed.emit(resampler.process(feed.sanitize(block, str(path))))
    return False


def read_clip(path: Path) -> np.ndarray:
    """The whole file as float32[n] mono at 16 kHz, NaN/Inf set to 0 (for short clips; raises like play_file).
    Decoded by the core's `edgert.audio.decode`, as the cloud's verifier decodes an uploaded clip."""
    check_audio_file(path)
    try:
        return audio.decode(str(path))
    except ClipDecodeError as exc:
        raise AudioDecodeError(str(exc)) from None


class FileSource(Source):
    """`file:PATH`: one audio file, decoded and resampled in blocks; finite."""

    def __init__(self, path: str | Path, *, realtime: bool = False):
        self.path = Path(path).expanduser()
        info = check_audio_file(self.path)
        super().__init__(f"file:{self.path} ({info.samplerate} Hz, {info.channels} ch, {info.duration:.2f} s)",
                         finite=True, realtime=realtime)

    def _produce(self, feed: Feed) -> None:
        if play_file(self.path, feed):
            self.stats["files"] += 1


class DirSource(Source):
    """`dir:PATH`: every audio file under a folder in path order, once or in a loop; a bad file is skipped.

    Each pass rescans the folder, so files added while it loops are picked up.
    """

    def __init__(self, path: str | Path, *, loop: bool = True, realtime: bool = False):
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise SourceNotFoundError(f"audio folder not found: {self.path}")
        if not self.path.is_dir():
            raise SourceSpecError(f"dir: needs a folder and {self.path} is a file; use file:{self.path}")
        self.loop = bool(loop)
        files = self._scan()
        super().__init__(f"dir:{self.path} ({len(files)} files, {'loop' if self.loop else 'once'})",
                         finite=not self.loop, realtime=realtime)

    def _scan(self) -> list[Path]:
        try:
            files = sorted(p for p in self.path.rglob("*")
                           if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".") and p.is_file())
        except OSError as err:
            raise SourceNotFoundError(f"audio folder {self.path} could not be listed: {err.strerror or err}") from None
        if not files:
            raise EmptySourceError(f"no audio files ({' '.join(AUDIO_SUFFIXES)}) in {self.path}")
        return files

    def _produce(self, feed: Feed) -> None:
        while not feed.stopping():
            files = self._scan()
            played = 0
            for path in files:
                if feed.stopping():
                    return
                try:
                    finished = play_file(path, feed)
                except CaptureError as err:
                    self.stats["files_skipped"] += 1
                    log.warning("dir: skipping %s", err)
                    continue
                if finished:
                    played += 1
                    self.stats["files"] += 1
            if played == 0 and not feed.stopping():
                raise AudioDecodeError(f"none of the {len(files)} audio files in {self.path} could be decoded")
            if not self.loop:
                return
