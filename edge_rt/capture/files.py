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

FAST_BLOCK_SECONDS = 1.0
"""Audio one sink call gets from a file played as fast as possible, decoded in one read (a failed read is read again
in reads of the chunk length, so what a failure mid-file keeps is the same); ten times fewer calls cost the capture
thread a tenth as much beside the model. Resampling and repairs are the same in any block size."""

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


def is_audio_name(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES


def scan_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """(audio files, other files) under `folder`, each in path order; audio by its suffix (AUDIO_SUFFIXES).

    Hidden files (.DS_Store, ._x.wav) are in neither list. Raises SourceNotFoundError when it cannot be listed.
    """
    try:
        found = sorted(p for p in folder.rglob("*") if not p.name.startswith(".") and p.is_file())
    except OSError as err:
        raise SourceNotFoundError(f"audio folder {folder} could not be listed: {err.strerror or err}") from None
    return [p for p in found if is_audio_name(p)], [p for p in found if not is_audio_name(p)]


def play_file(path: Path, feed: Feed, block_seconds: float | None = None) -> bool:
    """Decode `path` block by block into `feed`. True when it played to the end, False when a stop cut it short.

    `block_seconds` (default: the feed's chunk length) of audio are decoded in one read, then sanitized, resampled
    and emitted together, so memory does not grow with the file; a read that fails is read again in reads of the
    chunk length. Raises
    SourceNotFoundError, EmptySourceError or AudioDecodeError; a decoder failure mid-file comes after the audio
    before it (up to the last whole read) was delivered, and says how far decoding got.
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
        read_frames = max(1, int(round(info.samplerate * feed.chunk_seconds)))
        block_frames = max(read_frames, int(round(info.samplerate * (block_seconds or feed.chunk_seconds))))
        decoded = 0

        def deliver(block: np.ndarray) -> None:  # float32[k, channels]
            if len(block):
                feed.emit(resampler.process(feed.sanitize(block, str(path))))

        while not feed.stopping():
            # a fresh buffer per block: the sink may keep what it is given, and mono 16 kHz passes through uncopied
            block = np.empty((block_frames, info.channels), np.float32)
            filled, whole = 0, False
            if block_frames > read_frames:
                # The whole block in one read: soundfile's own cost per read (about 10 us) was most of what a fast
                # file cost the capture thread. A read that fails is read again from the block's start in reads
                # of the chunk length, so what a failure mid-file keeps is the same.
                try:
                    filled, whole = len(handle.read(always_2d=True, out=block)), True
                except sf.SoundFileError as err:
                    try:
                        handle.seek(decoded)
                    except (sf.SoundFileError, RuntimeError):
                        feed.emit(resampler.flush())
                        raise AudioDecodeError(f"{path} could not be decoded past {decoded / info.samplerate:.2f} s "
                                               f"({_reason(err)})") from None
            while not whole and filled < block_frames:
                try:
                    got = len(handle.read(always_2d=True, out=block[filled:filled + read_frames]))
                except sf.SoundFileError as err:
                    deliver(block[:filled])
                    feed.emit(resampler.flush())
                    at = (decoded + filled) / info.samplerate
                    raise AudioDecodeError(f"{path} could not be decoded past {at:.2f} s ({_reason(err)})") from None
                filled += got
                if got < read_frames:
                    break
            decoded += filled
            deliver(block[:filled])
            if filled < block_frames:
                feed.emit(resampler.flush())
                return True
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
    """`file:PATH`: one audio file, decoded and resampled in blocks; finite.

    `block_seconds` sets how much of the file one read decodes (default: FAST_BLOCK_SECONDS, or the 0.02 s chunk
    length when paced); the sink then gets the block's 16 kHz audio in one call.
    """

    def __init__(self, path: str | Path, *, realtime: bool = False, block_seconds: float | None = None):
        self.path = Path(path).expanduser()
        if block_seconds is not None and not block_seconds > 0:
            raise SourceSpecError(f"block_seconds must be positive, got {block_seconds!r}")
        self.block_seconds = block_seconds
        info = check_audio_file(self.path)
        super().__init__(f"file:{self.path} ({info.samplerate} Hz, {info.channels} ch, {info.duration:.2f} s)",
                         finite=True, realtime=realtime)

    def _produce(self, feed: Feed) -> None:
        if play_file(self.path, feed, self.block_seconds or (None if self.realtime else FAST_BLOCK_SECONDS)):
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
        super().__init__(f"dir:{self.path}", finite=not self.loop, realtime=realtime)
        self._ignored: set[Path] = set()
        files = self._scan()
        self.description = f"dir:{self.path} ({len(files)} files, {'loop' if self.loop else 'once'})"

    def _scan(self) -> list[Path]:
        files, others = scan_folder(self.path)
        for p in others:
            if p not in self._ignored:  # once per file, not once per pass of a loop
                self._ignored.add(p)
                self.stats["files_ignored"] += 1
                log.warning("dir: ignoring %s: not an audio file by its name (audio is %s)", p,
                            " ".join(AUDIO_SUFFIXES))
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
                    finished = play_file(path, feed, None if self.realtime else FAST_BLOCK_SECONDS)
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
