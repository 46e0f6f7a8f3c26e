"""edgert.backoff.Backoff: the one retry policy; its steps grow to the cap and its jitter spreads the waits."""
import random

import pytest

from edgert.backoff import Backoff
from edgert.errors import SettingsError


def test_steps_double_up_to_the_cap_and_stay_there():
    b = Backoff(0.5, 8.0)
    assert [b.step(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert b.step(10_000) == 8.0 and b.step(-3) == 0.5


@pytest.mark.parametrize("jitter, low", [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)])
def test_jitter_draws_the_wait_from_its_share_of_the_step(jitter, low):
    b = Backoff(1.0, 4.0, jitter=jitter)
    rng = random.Random(3)
    for attempt, step in [(0, 1.0), (1, 2.0), (5, 4.0)]:
        waits = [b.delay(attempt, rng) for _ in range(400)]
        assert min(waits) >= low * step - 1e-12 and max(waits) <= step + 1e-12
        if jitter:  # spread over the whole range, not stuck at one end
            assert min(waits) < (low + 0.1 * jitter) * step and max(waits) > (1 - 0.1 * jitter) * step
        else:
            assert set(waits) == {step}


def test_the_same_seed_gives_the_same_waits():
    b = Backoff(0.1, 2.0)
    assert [b.delay(n, random.Random(7)) for n in range(5)] == [b.delay(n, random.Random(7)) for n in range(5)]


@pytest.mark.parametrize("kw, what", [({"first_s": 0.0, "longest_s": 1.0}, "0 < first <= longest"),
                                      ({"first_s": 2.0, "longest_s": 1.0}, "0 < first <= longest"),
                                      ({"first_s": 1.0, "longest_s": 2.0, "factor": 0.5}, "factor"),
                                      ({"first_s": 1.0, "longest_s": 2.0, "jitter": 1.5}, "jitter")])
def test_nonsense_settings_are_named(kw, what):
    with pytest.raises(SettingsError, match=what):
        Backoff(**kw)
