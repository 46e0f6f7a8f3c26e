"""`python -m edge_rt classify` and `run` on bad audio: NaN/Inf, clipped, empty, truncated, 8-bit, 96 kHz,
6 channels, a folder mixing audio with other files, and a 2 GB WAV streamed with bounded memory.

Each case is handled (exit 0, a warning naming the file where something was repaired) or refused with a message
naming the file; `classify` exits 1 when any file failed, `run` 2."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
SR = 16000


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float
    wall_s: float

    @property
    def results(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines()]


def edge(tmp: Path, *args: str, timeout: float = 300) -> Done:
    """Run `python -m edge_rt ARGS` and measure its own peak RSS (wait4 reports it for that one child)."""
    out, err = tmp / f"out-{time.monotonic_ns()}", tmp / f"err-{time.monotonic_ns()}"
    t0 = time.monotonic()
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen([sys.executable, "-m", "edge_rt", *args], cwd=ROOT, stdout=fo, stderr=fe)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"python -m edge_rt {' '.join(args)} ran past {timeout} s")
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; keep Popen from waiting again
    return Done(proc.returncode, out.read_text(), err.read_text(), usage.ru_maxrss / 1024, time.monotonic() - t0)


def classify(tmp: Path, *paths: Path | str) -> Done:
    return edge(tmp, "classify", "--json", *map(str, paths))


def run_file(tmp: Path, spec: str) -> Done:
    return edge(tmp, "run", "--source", spec, "--fast", "--spool", str(tmp / f"spool-{time.monotonic_ns()}"))


def scene(seconds: float = 4.0, rate: int = SR) -> np.ndarray:
    """A tone with bursts of noise: float32[n] in [-0.6, 0.6], something for YAMNet to name."""
    rng = np.random.default_rng(5)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 660 * t) + 0.2 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 1.5 * t) > 0.6)
    return np.clip(x, -0.6, 0.6).astype(np.float32)


def without_file(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "file"}


# ---------------------------------------------------------------------------------------- NaN, Inf, clipping
def test_nan_and_inf_are_heard_as_silence_with_a_warning_naming_the_file(tmp_path):
    audio = scene()
    bad = audio.copy()
    bad[1000:1400] = np.nan
    bad[20000] = np.inf
    bad[30000:30010] = -np.inf
    zeroed = np.where(np.isfinite(bad), bad, 0).astype(np.float32)
    sf.write(tmp_path / "nan.wav", bad, SR, subtype="FLOAT")
    sf.write(tmp_path / "zeroed.wav", zeroed, SR, subtype="FLOAT")
    done = classify(tmp_path, tmp_path / "nan.wav", tmp_path / "zeroed.wav")
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path / 'nan.wav'}: 411 NaN/Inf samples replaced with 0" in done.stderr
    got, ref = done.results
    assert without_file(got) == without_file(ref)

    ran = run_file(tmp_path, f"file:{tmp_path / 'nan.wav'}")
    assert ran.returncode == 0, ran.stderr
    assert f"{tmp_path / 'nan.wav'}: 400 NaN/Inf samples replaced with 0" in ran.stderr  # the first 0.1 s block's
    assert ran.stderr.count("NaN/Inf") == 1


def test_float_audio_beyond_full_scale_is_clipped_with_a_warning_and_heard_as_clipped(tmp_path):
    loud = 4 * scene()
    sf.write(tmp_path / "loud.wav", loud, SR, subtype="FLOAT")
    sf.write(tmp_path / "clipped.wav", np.clip(loud, -1, 1), SR, subtype="FLOAT")
    done = classify(tmp_path, tmp_path / "loud.wav", tmp_path / "clipped.wav")
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path / 'loud.wav'}: " in done.stderr and "beyond full scale" in done.stderr
    assert "clipped.wav:" not in done.stderr
    got, ref = done.results
    assert without_file(got) == without_file(ref)

    ran = run_file(tmp_path, f"file:{tmp_path / 'loud.wav'}")
    assert ran.returncode == 0, ran.stderr
    assert f"{tmp_path / 'loud.wav'}: " in ran.stderr and "beyond full scale" in ran.stderr


def test_a_clipped_pcm_recording_is_classified_like_any_other(tmp_path):
    sf.write(tmp_path / "sat.wav", np.clip(4 * scene(), -1, 1), SR, subtype="PCM_16")
    done = classify(tmp_path, tmp_path / "sat.wav")
    assert done.returncode == 0 and "warn" not in done.stderr.lower(), done.stderr
    (result,) = done.results
    assert result["duration_s"] == 4.0 and len(result["frames"]) == 8
    assert run_file(tmp_path, f"file:{tmp_path / 'sat.wav'}").returncode == 0


# ------------------------------------------------------------------------------------------- empty, truncated
@pytest.mark.parametrize("name, make, says", [
    ("zero.wav", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    ("header.wav", lambda p: sf.write(p, np.zeros((0, 1), np.float32), SR), "header holds no audio frames"),
    ("header.aiff", lambda p: sf.write(p, np.zeros((0, 2), np.float32), 44100), "header holds no audio frames"),
])
def test_an_empty_file_is_refused_naming_it(tmp_path, name, make, says):
    make(tmp_path / name)
    done = classify(tmp_path, tmp_path / name)
    assert done.returncode == 1 and done.stdout == ""
    assert f"error: {tmp_path / name}" in done.stderr and says in done.stderr
    assert "Traceback" not in done.stderr

    ran = run_file(tmp_path, f"file:{tmp_path / name}")
    assert ran.returncode == 2 and str(tmp_path / name) in ran.stderr and says in ran.stderr


def test_a_truncated_wav_is_classified_as_far_as_it_goes_with_a_warning(tmp_path):
    sf.write(tmp_path / "full.wav", scene(4.0), SR, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 2 * 3 * SR + 1])  # 3 s and half a sample
    done = classify(tmp_path, tmp_path / "cut.wav")
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path / 'cut.wav'} is truncated" in done.stderr
    (result,) = done.results
    assert result["duration_s"] == 3.0

    ran = run_file(tmp_path, f"file:{tmp_path / 'cut.wav'}")
    assert ran.returncode == 0 and f"{tmp_path / 'cut.wav'} is truncated" in ran.stderr


def test_a_flac_cut_mid_stream_gets_the_json_of_what_decoded_then_an_error_naming_it(tmp_path):
    sf.write(tmp_path / "full.flac", scene(10.0), SR)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    done = classify(tmp_path, tmp_path / "cut.flac")
    assert done.returncode == 1
    assert f"error: {tmp_path / 'cut.flac'} could not be decoded past" in done.stderr
    assert "the JSON covers the" in done.stderr
    (result,) = done.results
    assert result["file"] == str(tmp_path / "cut.flac") and 3.0 < result["duration_s"] < 7.0

    ran = run_file(tmp_path, f"file:{tmp_path / 'cut.flac'}")
    assert ran.returncode == 2 and f"{tmp_path / 'cut.flac'} could not be decoded past" in ran.stderr


# ------------------------------------------------------------------------------------ 8-bit, 96 kHz, 6 channels
def _u8_samples(path: Path) -> np.ndarray:
    """The samples of a mono 8-bit WAV from its bytes, as the format defines them (unsigned, 128 is zero)."""
    raw = path.read_bytes()
    at = raw.index(b"data") + 8
    return (np.frombuffer(raw[at:], np.uint8).astype(np.float32) - 128) / 128


def test_an_8_bit_wav_is_heard_as_its_samples_are_defined(tmp_path):
    sf.write(tmp_path / "u8.wav", scene(), SR, subtype="PCM_U8")
    sf.write(tmp_path / "ref.wav", _u8_samples(tmp_path / "u8.wav"), SR, subtype="FLOAT")
    done = classify(tmp_path, tmp_path / "u8.wav", tmp_path / "ref.wav")
    assert done.returncode == 0, done.stderr
    got, ref = done.results
    assert without_file(got) == without_file(ref)
    ran = run_file(tmp_path, f"file:{tmp_path / 'u8.wav'}")
    assert ran.returncode == 0 and "4.0 s of audio" in ran.stderr, ran.stderr


def test_96k_and_6_channel_files_are_heard_as_the_16k_mono_original(tmp_path):
    import scipy.signal

    audio = scene(6.0)
    sf.write(tmp_path / "ref.wav", audio, SR, subtype="FLOAT")
    sf.write(tmp_path / "hi.wav", scipy.signal.resample_poly(audio, 6, 1), 96000, subtype="PCM_24")
    gains = np.array([0.4, 1.6, 0.7, 1.3, 1.0, 1.0])  # their mean is 1: the downmix is the original
    sf.write(tmp_path / "six.wav", audio[:, None] * gains[None, :], SR, subtype="FLOAT")
    names = ("ref.wav", "hi.wav", "six.wav")
    done = classify(tmp_path, *(tmp_path / n for n in names))
    assert done.returncode == 0, done.stderr
    ref, *others = done.results
    for name, got in zip(names[1:], others):
        assert got["duration_s"] == ref["duration_s"] == 6.0, name
        assert [c for c, _ in got["clip_top"][:3]] == [c for c, _ in ref["clip_top"][:3]], name
        top = dict(ref["clip_top"])
        for c, s in got["clip_top"][:3]:
            assert s == pytest.approx(top[c], abs=0.01), (name, c)
    for name in names[1:]:
        ran = run_file(tmp_path, f"file:{tmp_path / name}")
        assert ran.returncode == 0 and "6.0 s of audio" in ran.stderr, (name, ran.stderr)


# ------------------------------------------------------------------------------------------------- folders
def _mixed(folder: Path, with_bad_audio: bool) -> Path:
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", scene(2.0), SR)
    sf.write(folder / "sub" / "b.flac", np.stack([scene(2.0, 44100)] * 2, axis=1), 44100)
    (folder / "notes.txt").write_text("field notes, not audio")
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(300))
    (folder / ".DS_Store").write_bytes(bytes(64))
    if with_bad_audio:
        (folder / "fake.wav").write_bytes(b"RIFF" + bytes(200))
    return folder


def test_a_folder_classifies_its_audio_and_names_each_other_file_it_skips(tmp_path):
    folder = _mixed(tmp_path / "clips", with_bad_audio=False)
    done = classify(tmp_path, folder)
    assert done.returncode == 0, done.stderr
    assert [r["file"] for r in done.results] == [str(folder / "a.wav"), str(folder / "sub" / "b.flac")]
    for name in ("notes.txt", "cover.jpg"):
        assert f"warning: skipping {folder / name}: not an audio file" in done.stderr
    assert ".DS_Store" not in done.stderr

    ran = edge(tmp_path, "run", "--source", f"dir:{folder}", "--fast", "--spool", str(tmp_path / "spool"))
    assert ran.returncode == 0, ran.stderr
    assert "4.0 s of audio" in ran.stderr
    for name in ("notes.txt", "cover.jpg"):
        assert f"ignoring {folder / name}: not an audio file" in ran.stderr


def test_an_undecodable_audio_file_in_a_folder_fails_the_run_of_classify_but_not_the_others(tmp_path):
    folder = _mixed(tmp_path / "clips", with_bad_audio=True)
    done = classify(tmp_path, folder)
    assert done.returncode == 1
    assert f"error: {folder / 'fake.wav'} could not be decoded" in done.stderr
    assert [r["file"] for r in done.results] == [str(folder / "a.wav"), str(folder / "sub" / "b.flac")]

    ran = edge(tmp_path, "run", "--source", f"dir:{folder}", "--fast", "--spool", str(tmp_path / "spool"))
    assert ran.returncode == 0 and f"skipping {folder / 'fake.wav'} could not be decoded" in ran.stderr


def test_a_folder_without_audio_is_an_error_naming_it(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("nothing to hear")
    done = classify(tmp_path, tmp_path / "docs")
    assert done.returncode == 1 and done.stdout == ""
    assert "error: no audio files (.wav" in done.stderr and f"in {tmp_path / 'docs'}\n" in done.stderr


# -------------------------------------------------------------------------------------------------- 2 GB
RATE_2G, CHANNELS_2G = 96000, 6  # float32: 2.3 MB per second of audio, so 2 GB is 15.5 minutes to classify
SECONDS_2G = 933  # 2 149 632 000 bytes of samples


def _write_wav(path: Path, seconds: int) -> None:
    """A 96 kHz 6-channel float WAV of a one-second pattern repeated: written at disk speed."""
    t = np.arange(RATE_2G) / RATE_2G
    rng = np.random.default_rng(0)
    second = (0.3 * np.sin(2 * np.pi * 440 * t)[:, None]
              + 0.05 * rng.standard_normal((RATE_2G, CHANNELS_2G))).astype(np.float32)
    with sf.SoundFile(path, "w", RATE_2G, CHANNELS_2G, "FLOAT", format="WAV") as f:
        for _ in range(seconds):
            f.write(second)


@pytest.fixture(scope="module")
def big_wav(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    need = SECONDS_2G * RATE_2G * CHANNELS_2G * 4
    free = shutil.disk_usage(folder).free
    if free < need + (1 << 30):
        pytest.fail(f"the 2 GB WAV test needs {need / 2**30 + 1:.1f} GiB free in {folder}, there are "
                    f"{free / 2**30:.1f} GiB")
    path = folder / "two_gigabytes.wav"
    try:
        _write_wav(path, SECONDS_2G)
        _write_wav(folder / "two_minutes.wav", 120)
        assert path.stat().st_size > 2_000_000_000
        yield path, folder / "two_minutes.wav"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_classify_streams_a_2_gb_wav_in_memory_that_does_not_grow_with_it(tmp_path, big_wav):
    big, small = big_wav
    ref = classify(tmp_path, small)
    assert ref.returncode == 0, ref.stderr
    done = classify(tmp_path, big)
    assert done.returncode == 0, done.stderr
    (result,) = done.results
    padded_hops = -(-(SECONDS_2G * SR - 15600) // 7680)  # the hub pads the end to a whole 0.48 s hop
    assert result["duration_s"] == SECONDS_2G and len(result["frames"]) == 1 + padded_hops
    assert [c for c, _ in result["clip_top"][:2]] == [c for c, _ in ref.results[0]["clip_top"][:2]]
    # Measured: 2 min of this file 180 MB, all 15.5 min 195 MB (reading it whole took 4.8 GB).
    assert done.peak_rss_mb < ref.peak_rss_mb + 64, (done.peak_rss_mb, ref.peak_rss_mb)
    assert done.peak_rss_mb < 512, done.peak_rss_mb
    print(f"classify 2 GB: peak RSS {done.peak_rss_mb:.0f} MB (2 min: {ref.peak_rss_mb:.0f} MB), "
          f"{done.wall_s:.1f} s")


def test_run_streams_a_2_gb_wav_in_memory_that_does_not_grow_with_it(tmp_path, big_wav):
    big, small = big_wav
    ref = run_file(tmp_path, f"file:{small}")
    assert ref.returncode == 0, ref.stderr
    done = run_file(tmp_path, f"file:{big}")
    assert done.returncode == 0, done.stderr
    assert f"{SECONDS_2G:.1f} s of audio" in done.stderr
    assert done.peak_rss_mb < ref.peak_rss_mb + 64, (done.peak_rss_mb, ref.peak_rss_mb)
    assert done.peak_rss_mb < 512, done.peak_rss_mb
    print(f"run 2 GB: peak RSS {done.peak_rss_mb:.0f} MB (2 min: {ref.peak_rss_mb:.0f} MB), {done.wall_s:.1f} s")
