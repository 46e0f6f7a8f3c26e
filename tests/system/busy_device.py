"""The system tests' busy device: a thread that puts events into a real outbox fast (20 a second by default) while
a real uplink streams them to the cloud, so failures land mid-batch, mid-commit and mid-ack."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Optional

from edge_rt.config import CloudConfig
from edge_rt.outbox import Outbox
from edge_rt.uplink import Uplink
from support import put_event

Make = Callable[[Outbox, int], object]  # puts the n-th event's records into the outbox


def every_tenth(distress: str) -> Make:
    """Events of an ordinary label with every 10th a distress one (verified by the cloud)."""
    return lambda ob, n: put_event(ob, distress if n % 10 == 0 else "dog_bark")


class BusyDevice:
    """`make(outbox, n)` every `every_s` from `start()` until `stop_making()`; the uplink runs until `close()`.
    A context manager, so that no thread outlives a failed test."""

    def __init__(self, spool: Path, target: str, device_id: str, token: str, *, make: Make,
                 options: CloudConfig, every_s: float = 0.05, heartbeat: Optional[Callable[[], dict]] = None):
        self.device_id = device_id
        self.outbox = Outbox(Path(spool) / "outbox.db")
        self._make, self._every_s = make, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=f"busy-{device_id}", daemon=True)
        self.uplink = Uplink(self.outbox, target, device_id, token, options=options, heartbeat=heartbeat)
        self.made = 0

    def _produce(self) -> None:
        while not self._stop.wait(self._every_s):
            self._make(self.outbox, self.made)
            self.made += 1

    def start(self) -> "BusyDevice":
        self._thread.start()
        self.uplink.start()
        return self

    def stop_making(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def drain(self, timeout: float = 90.0) -> None:
        """Stop making events and wait until the cloud acked every record the outbox holds."""
        self.stop_making()
        deadline = time.monotonic() + timeout
        while not self.uplink.drained() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.uplink.drained(), f"{self.device_id} still holds {self.outbox.stats()['depth']} records"

    def close(self) -> None:
        self.stop_making()
        self.uplink.stop()
        self.outbox.close()

    def __enter__(self) -> "BusyDevice":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
