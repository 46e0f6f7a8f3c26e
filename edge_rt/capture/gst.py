"""GStreamer as a source: `gst:PIPELINE` and `rtsp://` run gst-launch-1.0 and read raw 16 kHz float32 from its stdout.

No temp files: the pipeline ends in `audioconvert ! audioresample ! audio/x-raw,format=F32LE,rate=16000,channels=1
! fdsink fd=1`, so GStreamer does the decoding and resampling and Python reads little-endian float32 samples
straight off a pipe. gst-launch runs with `-q`, which keeps its own chatter off stdout; stderr is kept to explain
failures.
"""
from __future__ import annotations

import collections
import os
import re
import select
import shlex
import shutil
import subprocess
import threading
import time
import urllib.parse

import numpy as np

from edge_rt.capture.base import POLL_SECONDS, Feed, Source, one_line
from edge_rt.errors import PipelineError, SourceSpecError, StallError
from edgert.yamnet.params import PARAMS

GST_LAUNCH = "gst-launch-1.0"
SAMPLE_DTYPE = np.dtype("<f4")  # F32LE, what the caps below ask for
OUTPUT_TAIL = (f"audioconvert ! audioresample ! audio/x-raw,format=F32LE,rate={PARAMS.sample_rate},channels=1 "
               f"! fdsink fd=1")
MIN_CHUNK_SECONDS = 0.01  # gather at least one 10 ms STFT hop before calling the sink
STARTUP_TIMEOUT_S = 20.0  # first audio may wait on DNS, an RTSP handshake and preroll
STALL_TIMEOUT_S = 10.0  # after the first audio, this long without data means the input is gone
EXIT_TIMEOUT_S = 5.0  # how long a gst-launch that closed stdout (or was told to stop) may take to exit
STDERR_LINES = 64  # the tail of gst's stderr kept to explain a failure
RTSP_LATENCY_MS = 200  # rtspsrc jitter buffer: enough for Wi-Fi cameras, small next to a 0.96 s patch
RTSP_SCHEMES = ("rtsp", "rtsps", "rtspt", "rtspu")

# A pipeline is taken as finite when it says where it ends: a positive num-buffers, or a file it reads.
_FINITE_PATTERNS = (re.compile(r"\bnum-buffers\s*=\s*\+?[1-9]"), re.compile(r"\b(multi)?filesrc\b"),
                    re.compile(r"\buri\s*=\s*\"?file:", re.IGNORECASE))
_SOURCE_LOCATION = re.compile(r"^\S+\.c\(\d+\): ")  # "../gst/rtsp/gstrtspsrc.c(8336): fn (): /GstPipeline:…"


def looks_finite(pipeline: str) -> bool:
    """True when the pipeline ends by itself: `num-buffers=N` (N > 0), `filesrc` or a `file:` URI."""
    return any(p.search(pipeline) for p in _FINITE_PATTERNS)


def condense_gst_error(lines: list[str]) -> str:
    """gst-launch's stderr in one line: the first error, its element and its detail, without source locations."""
    lines = [ln.rstrip() for ln in lines]
    for i, line in enumerate(lines):
        if line.startswith("ERROR: from element"):
            match = re.match(r"ERROR: from element (\S+?): (.*)", line)
            element, message = (match.group(1).rsplit(":", 1)[-1], match.group(2)) if match else ("", line[7:])
            detail = []
            for follow in lines[i + 1:]:
                if follow.startswith(("ERROR", "WARNING", "Setting", "Execution", "Freeing")):
                    break
                if follow and follow != "Additional debug info:" and not _SOURCE_LOCATION.match(follow):
                    detail.append(follow)
            text = f"{element}: {message}" if element else message
            return one_line(f"{text} ({' '.join(detail)})" if detail else text)
        if line.startswith("WARNING: erroneous pipeline:"):
            return one_line(line[len("WARNING: "):])
        if line.startswith("ERROR:"):
            return one_line(line[len("ERROR: "):])
    tail = [ln for ln in lines if ln.strip()]
    return one_line(tail[-1]) if tail else "no error message on stderr"


def gst_launch_path() -> str:
    """The gst-launch-1.0 executable; PipelineError saying what to install when it is missing."""
    exe = shutil.which(GST_LAUNCH)
    if exe is None:
        raise PipelineError(f"{GST_LAUNCH} not found on PATH: install gstreamer1.0-tools "
                            f"(and gstreamer1.0-plugins-base/-good for decoders and rtspsrc)")
    return exe


class GstSource(Source):
    """`gst:PIPELINE`: a gst-launch-1.0 pipeline description whose audio is converted to 16 kHz mono float32.

    finite: None decides from the pipeline (see `looks_finite`); a finite source returns from `run` when gst
    reaches end of stream. A live one (the default for open-ended pipelines) also returns there, and
    `run_supervised` takes that as a dropped stream and starts it again. realtime paces reading to the wall
    clock, which a live element (alsasrc, rtspsrc, `is-live=true`) already does by itself.
    """

    def __init__(self, pipeline: str, *, finite: bool | None = None, realtime: bool = False,
                 stall_timeout_s: float = STALL_TIMEOUT_S, startup_timeout_s: float = STARTUP_TIMEOUT_S,
                 description: str | None = None):
        pipeline = pipeline.strip()
        try:
            # gst-launch escapes each argument as one token (gst_parse_launchv), so the shell's rules split the
            # text here: quoted values with spaces (location="/my clips/a.wav") stay one token.
            tokens = shlex.split(pipeline)
        except ValueError as err:
            raise SourceSpecError(f"gst: cannot split the pipeline {pipeline!r}: {err}") from None
        while tokens and tokens[-1] == "!":
            tokens.pop()
        if not tokens:
            raise SourceSpecError("gst: needs a pipeline description, e.g. gst:audiotestsrc wave=sine freq=440")
        if not (stall_timeout_s > 0 and startup_timeout_s > 0):
            raise SourceSpecError("gst: stall and startup timeouts must be positive")
        self.pipeline = pipeline
        self.argv = [gst_launch_path(), "-q", *tokens, "!", *OUTPUT_TAIL.split()]
        self.stall_timeout_s = float(stall_timeout_s)
        self.startup_timeout_s = float(startup_timeout_s)
        self._proc: subprocess.Popen | None = None
        self._proc_lock = threading.Lock()
        super().__init__(description or f"gst:{pipeline}",
                         finite=looks_finite(pipeline) if finite is None else finite, realtime=realtime)

    def _interrupt(self) -> None:
        with self._proc_lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def _start(self) -> subprocess.Popen:
        try:
            # A session of its own: a Ctrl-C on the terminal reaches Python, which then stops gst in order.
            proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, bufsize=0, start_new_session=True)
        except OSError as err:
            raise PipelineError(f"{self.description}: could not start {GST_LAUNCH}: {err.strerror or err}") from None
        with self._proc_lock:
            self._proc = proc
        if self._stop.is_set():  # stop() raced the start
            proc.terminate()
        return proc

    def _produce(self, feed: Feed) -> None:
        proc = self._start()
        stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        drain = threading.Thread(target=_drain, args=(proc.stderr, stderr_tail), name="gst-stderr", daemon=True)
        drain.start()
        try:
            self._read(proc, feed)
            if feed.stopping():
                return
            try:
                code = proc.wait(timeout=EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise PipelineError(f"{self.description}: {GST_LAUNCH} closed its output but did not exit") from None
            drain.join(EXIT_TIMEOUT_S)
            if code != 0 and not feed.stopping():  # a stop() terminates gst, which is no failure
                raise PipelineError(f"{self.description}: {GST_LAUNCH} exited with code {code}: "
                                    f"{condense_gst_error(list(stderr_tail))}")
        finally:
            _end(proc)
            drain.join(EXIT_TIMEOUT_S)  # before the pipes close under it
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            with self._proc_lock:
                self._proc = None

    def _read(self, proc: subprocess.Popen, feed: Feed) -> None:
        """Pump whole float32 samples from gst's stdout into the feed until EOF or a stop; StallError on silence."""
        assert proc.stdout is not None  # started with stdout=PIPE
        fd = proc.stdout.fileno()
        width = SAMPLE_DTYPE.itemsize
        min_bytes = int(round(MIN_CHUNK_SECONDS * PARAMS.sample_rate)) * width
        max_read = max(min_bytes, int(round(feed.chunk_seconds * PARAMS.sample_rate)) * width)
        pending = bytearray()
        last_data = time.monotonic()
        got_audio = False
        while not feed.stopping():
            ready, _, _ = select.select([fd], [], [], POLL_SECONDS)
            if not ready:
                self._emit_whole(pending, feed)  # a lull: hand over what has come rather than hold it back
                limit = self.stall_timeout_s if got_audio else self.startup_timeout_s
                if time.monotonic() - last_data > limit:
                    what = "no audio" if got_audio else "no audio at all"
                    raise StallError(f"{self.description}: {what} for {limit:g} s; stopping the pipeline")
                continue
            data = os.read(fd, max_read)
            if not data:
                break
            last_data = time.monotonic()
            got_audio = True
            pending += data
            if len(pending) >= min_bytes:
                self._emit_whole(pending, feed)
        self._emit_whole(pending, feed)

    def _emit_whole(self, pending: bytearray, feed: Feed) -> None:
        usable = len(pending) - len(pending) % SAMPLE_DTYPE.itemsize
        if usable:
            chunk = np.frombuffer(bytes(pending[:usable]), dtype=SAMPLE_DTYPE).astype(np.float32)  # float32[k]
            del pending[:usable]
            feed.emit(feed.sanitize(chunk, self.description))


def _drain(stream, tail: collections.deque) -> None:
    """Keep the last lines of a child's stderr (and keep the pipe from filling up)."""
    for raw in iter(stream.readline, b""):
        tail.append(raw.decode("utf-8", "replace").rstrip())


def _end(proc: subprocess.Popen) -> None:
    """Terminate a child that is still running, then kill it if it ignores that."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=EXIT_TIMEOUT_S)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class RtspSource(GstSource):
    """`rtsp://…`: the audio track of an RTSP stream (a camera, a NVR) through rtspsrc and decodebin; live.

    Only the audio RTP stream is linked (`application/x-rtp,media=audio`), so a camera's video is never decoded.
    A stream that drops ends `run` (an error, or a plain return at end of stream); `run_supervised` reconnects.
    """

    def __init__(self, url: str, *, latency_ms: int = RTSP_LATENCY_MS, stall_timeout_s: float = STALL_TIMEOUT_S,
                 startup_timeout_s: float = STARTUP_TIMEOUT_S):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in RTSP_SCHEMES or not parts.hostname:
            raise SourceSpecError(f"not an RTSP URL: {mask_url(url)!r} (expected rtsp://host[:port]/path)")
        if any(c in url for c in '"\'\\') or any(c.isspace() for c in url):
            raise SourceSpecError(f"RTSP URL must not contain quotes, backslashes or spaces: {mask_url(url)!r}")
        self.url = url
        pipeline = f"rtspsrc location={url} latency={int(latency_ms)} ! application/x-rtp,media=audio ! decodebin"
        super().__init__(pipeline, finite=False, realtime=False, stall_timeout_s=stall_timeout_s,
                         startup_timeout_s=startup_timeout_s, description=mask_url(url))
