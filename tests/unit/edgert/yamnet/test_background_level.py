"""Unit tests for edge_rt.analysis.BackgroundLevel: the running room level and each window's loudness above it.

Expected values follow the documented rule by hand: the level falls to a quieter window at once and rises by
at most RISE_DB per window; each window is measured against the level before it.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgert.yamnet.analysis import BackgroundLevel

RISE = BackgroundLevel.RISE_DB
FLOOR = BackgroundLevel.LEVEL_FLOOR_DBFS
LO, HI = BackgroundLevel.RELATIVE_RANGE_DB
START = BackgroundLevel.INITIAL_DBFS


def test_documented_constants():
    assert (RISE, FLOOR, (LO, HI), START) == (0.5, -90.0, (-20.0, 60.0), -60.0)


def test_the_first_window_is_measured_against_a_quiet_room():
    out = BackgroundLevel().relative([-37.0])
    assert out.shape == (1,) and out.dtype == np.float32 and out[0] == pytest.approx(-37.0 - START)


def test_an_empty_batch_gives_an_empty_array_and_keeps_the_starting_level():
    bg = BackgroundLevel()
    assert bg.relative([]).shape == (0,)
    assert bg.level == START


def test_a_steady_room_stays_near_zero_once_the_level_has_caught_up():
    rng = np.random.default_rng(1)
    levels = -50.0 + rng.uniform(-0.2, 0.2, 200)
    out = BackgroundLevel().relative(levels)
    assert out[0] == pytest.approx(levels[0] - START, abs=1e-4)  # louder than the assumed quiet room at first
    assert np.all(np.abs(out[25:]) <= 0.5)  # 10 dB caught up at RISE_DB per window


def test_a_window_20_db_louder_after_ten_quiet_ones_reads_plus_20():
    out = BackgroundLevel().relative([-60.0] * 10 + [-40.0])
    assert out[-1] == pytest.approx(20.0, abs=1e-4)
    assert np.all(out[:10] == 0.0)


def test_the_level_falls_at_once_to_a_quieter_window():
    bg = BackgroundLevel()
    bg.level = -40.0  # a room that has settled at -40 dBFS
    out = bg.relative([-40.0] * 5 + [-55.0, -55.0, -52.0])
    assert out[5] == pytest.approx(-15.0)
    assert out[6] == pytest.approx(0.0)  # measured against -55, not against something in between
    assert out[7] == pytest.approx(3.0)
    assert bg.level == pytest.approx(-55.0 + RISE)


def test_a_sustained_rise_is_followed_at_rise_db_per_window():
    out = BackgroundLevel().relative([-60.0] + [-40.0] * 45)
    expected = [0.0] + [20.0 - RISE * k for k in range(40)] + [0.0] * 5  # the level catches up after 40 windows
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_a_short_bang_barely_lifts_the_level():
    bg = BackgroundLevel()
    out = bg.relative([-60.0] * 5 + [-20.0, -20.0] + [-60.0])
    np.testing.assert_allclose(out[5:7], [40.0, 40.0 - RISE], atol=1e-4)
    assert out[7] == pytest.approx(-2 * RISE, abs=1e-4)  # the room is back; the level had risen by 2 * RISE


def test_digital_silence_counts_as_the_level_floor():
    out = BackgroundLevel().relative([-140.0, -140.0, -60.0])
    assert out[1] == 0.0
    assert out[2] == pytest.approx(-60.0 - FLOOR)  # 30, not 80


def test_a_quiet_window_after_digital_silence_is_measured_from_the_floor():
    bg = BackgroundLevel()
    bg.relative([-140.0])
    assert bg.level == FLOOR
    assert bg.relative([-95.0])[0] == 0.0  # both clamp to the floor


def test_the_relative_level_is_clipped_to_its_range():
    out = BackgroundLevel().relative([-85.0, 0.0])
    assert out[1] == HI  # +85 clipped
    out = BackgroundLevel().relative([-5.0, -80.0])
    assert out[1] == LO  # -75 clipped


def test_clipping_the_output_does_not_clip_the_tracked_level():
    bg = BackgroundLevel()
    bg.relative([-85.0, 0.0])
    assert bg.level == pytest.approx(-85.0 + RISE)


def test_state_carries_across_calls():
    rng = np.random.default_rng(7)
    levels = list(rng.uniform(-70.0, -10.0, 10))
    whole = BackgroundLevel().relative(levels)
    bg = BackgroundLevel()
    halves = np.concatenate([bg.relative(levels[:5]), bg.relative(levels[5:])])
    np.testing.assert_array_equal(halves, whole)
    # and by hand for this batch: each window against the level before it
    level, expected = START, []
    for lv in levels:
        base = level
        expected.append(lv - base)
        level = lv if lv < base else base + min(RISE, lv - base)
    np.testing.assert_allclose(whole, np.clip(expected, LO, HI), atol=1e-4)


def test_a_new_instance_starts_a_new_stream():
    a = BackgroundLevel()
    a.relative([-80.0] * 3)
    assert BackgroundLevel().relative([-20.0])[0] == pytest.approx(-20.0 - START)
    assert a.relative([-20.0])[0] == pytest.approx(HI)
