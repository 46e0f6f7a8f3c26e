"""Audio capture: sources that turn files, folders, sound cards, GStreamer pipelines, RTSP streams and generated
scenarios into 16 kHz mono float32 chunks for a sink, with no temp files.

    src = open_source("file:/x.wav")         # or dir:, mic:, gst:, rtsp://, synth:
    run_supervised(src, sink, stop_event)    # live sources reconnect with backoff; finite ones run once
"""
from edge_rt.capture.base import CHUNK_SECONDS, REALTIME_CHUNK_SECONDS, GroundTruthEvent, Sink, Source
from edge_rt.capture.files import AUDIO_SUFFIXES, DirSource, FileSource
from edge_rt.capture.gst import GstSource, RtspSource
from edge_rt.capture.mic import MicSource
from edge_rt.capture.spec import SPEC_FORMS, open_source
from edge_rt.capture.supervise import run_supervised
from edge_rt.capture.synth import PRESETS, SynthSource, parse_scenario
from edgert.audio import StreamingResampler

__all__ = ["AUDIO_SUFFIXES", "CHUNK_SECONDS", "PRESETS", "REALTIME_CHUNK_SECONDS", "SPEC_FORMS", "DirSource",
           "FileSource", "GroundTruthEvent", "GstSource", "MicSource", "RtspSource", "Sink", "Source",
           "StreamingResampler", "SynthSource", "open_source", "parse_scenario", "run_supervised"]
