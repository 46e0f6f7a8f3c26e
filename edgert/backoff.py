"""The one retry policy of both sides: capped exponential backoff with jitter.

Attempt n (0 for the first retry) may wait up to min(longest, first * factor**n); `jitter` is the share of that
step drawn at random, so a fleet that lost its cloud (or a cloud that lost its database) does not come back in
lockstep: 1.0 is "full jitter" (uniform in [0, step]), 0.5 draws from [step/2, step], 0 waits the step itself.
The uplink, the capture supervisor, the committer and the background workers all wait through `Backoff`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from edgert.errors import SettingsError


@dataclass(frozen=True)
class Backoff:
    first_s: float
    longest_s: float
    factor: float = 2.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.longest_s:
            raise SettingsError(f"backoff needs 0 < first <= longest, got first={self.first_s!r} "
                                f"longest={self.longest_s!r}")
        if self.factor < 1:
            raise SettingsError(f"backoff factor must be at least 1, got {self.factor!r}")
        if not 0 <= self.jitter <= 1:
            raise SettingsError(f"backoff jitter must be within [0, 1], got {self.jitter!r}")

    def step(self, attempt: int) -> float:
        """The longest wait of attempt `attempt` (0-based): min(longest, first * factor**attempt)."""
        n = max(0, int(attempt))
        # factor**n overflows a float for n in the thousands: the cap is reached long before
        return self.longest_s if n > 1000 else min(self.longest_s, self.first_s * self.factor ** n)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt `attempt`: its step times a factor drawn from [1 - jitter, 1]."""
        return self.step(attempt) * (rng or random).uniform(1.0 - self.jitter, 1.0)
