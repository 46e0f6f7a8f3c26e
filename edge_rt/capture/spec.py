"""Source spec strings (`file:P`, `dir:P`, `mic:[DEV]`, `gst:PIPELINE`, `rtsp://…`, `synth:SCENARIO`) to sources."""
from __future__ import annotations

from pathlib import Path

from edge_rt.capture.base import Source
from edge_rt.capture.files import AUDIO_SUFFIXES, DirSource, FileSource
from edge_rt.capture.gst import RTSP_SCHEMES, GstSource, RtspSource
from edge_rt.capture.mic import MicSource
from edge_rt.capture.synth import SynthSource
from edge_rt.errors import SourceSpecError

SPEC_FORMS = "file:PATH, dir:PATH, mic:[DEVICE], gst:PIPELINE, rtsp://HOST/PATH, synth:SCENARIO"


def open_source(spec: str, *, realtime: bool | None = None, loop: bool = True, finite: bool | None = None) -> Source:
    """Build the source a spec names; constructors check what they can (files exist and decode, syntax).

    realtime: pace stored audio (file:, dir:, synth:, gst:) to the wall clock; None means paced only for a
      looping dir:. Live inputs (mic:, rtsp://) are paced by their own clock and ignore it.
    loop: dir: plays its files in a loop (live, finite=False) or once (finite).
    finite: gst: only; None guesses from the pipeline (num-buffers, filesrc, file: URI).
    A bare path is taken as file: (an existing file, or any name with an audio suffix) or dir: (a folder).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SourceSpecError(f"empty source spec: use one of {SPEC_FORMS}")
    spec = spec.strip()
    scheme, sep, rest = spec.partition(":")
    scheme = scheme.lower()
    if sep and scheme in ("file", "dir") and not rest.strip():
        raise SourceSpecError(f"{scheme}: needs a path, e.g. {scheme}:/data/clips")
    if sep and scheme == "file":
        return FileSource(rest.strip(), realtime=bool(realtime))
    if sep and scheme == "dir":
        return DirSource(rest.strip(), loop=loop, realtime=loop if realtime is None else realtime)
    if sep and scheme == "synth":
        return SynthSource(rest, realtime=bool(realtime))
    if sep and scheme == "gst":
        return GstSource(rest, finite=finite, realtime=bool(realtime))
    if sep and scheme in RTSP_SCHEMES and rest.startswith("//"):
        return RtspSource(spec)
    if scheme == "mic":
        return MicSource(rest.strip().strip("[]") or None)
    path = Path(spec).expanduser()
    if path.is_file() or path.suffix.lower() in AUDIO_SUFFIXES:  # a missing x.wav: say "not found", not "unknown"
        return FileSource(path, realtime=bool(realtime))
    if path.is_dir():
        return DirSource(path, loop=loop, realtime=loop if realtime is None else realtime)
    raise SourceSpecError(f"unknown source {spec!r}: use one of {SPEC_FORMS}")
