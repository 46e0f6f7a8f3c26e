"""Background workers: the fleet correlator and the verification workers (threads here, or their own processes)."""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Callable, Optional, Protocol

from cloud_svc.clipstore import ClipStore
from cloud_svc.config import FleetConfig, RollupConfig, VerifyConfig
from cloud_svc.domain import VerifyResult
from cloud_svc.errors import CloudError, StorageUnavailable
from cloud_svc.fleet import FleetIndex, FleetStore
from cloud_svc.store import JobStore, Store
from cloud_svc.store.rollup import RollupStore
from edgert.backoff import Backoff

log = logging.getLogger("cloud_svc.workers")


class Worker(Protocol):
    """What the server runs beside its RPCs: a loop in a thread (Correlator, VerifyWorker) or a child process
    (CorrelatorProcess)."""

    def start(self) -> object: ...

    def stop(self, timeout: float = 10.0) -> None: ...


class _Loop:
    """A stoppable worker loop: `while not stop.wait(idle)`; `run()` blocks, `start()` runs it in a thread."""

    name = "worker"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.errors = 0

    def start(self) -> "_Loop":
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        """True while the thread that start() began runs."""
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        idle, down = 0.0, 0  # down: failed steps in a row (the database is away)
        backoff = Backoff(max(self.poll_s, 1.0), 10.0, jitter=0.5)
        while not self._stop.wait(idle):
            try:
                busy = self.step()
                idle, down = (0.0 if busy else self.poll_s), 0
            except StorageUnavailable as exc:
                self.errors += 1
                idle, down = backoff.delay(down), down + 1
                log.warning("%s: %s; retrying in %.1f s", self.name, exc, idle)
            except Exception:  # noqa: BLE001 - one bad step must not end the worker
                self.errors += 1
                log.exception("%s step failed", self.name)
                idle = self.poll_s

    poll_s = 1.0

    def step(self) -> bool:
        """Do one unit of work; True when there may be more right away."""
        raise NotImplementedError


class Correlator(_Loop):
    """Turns the same label heard by several nearby devices at about the same time into one fleet alert."""

    name = "fleet-correlator"

    def __init__(self, fleet: FleetStore, cfg: FleetConfig, on_alerts: Optional[Callable[[], None]] = None):
        super().__init__()
        self.fleet, self.cfg, self.on_alerts = fleet, cfg, on_alerts
        self.poll_s = cfg.poll_s
        self.index = FleetIndex(cfg.radius_m, cfg.window_s, cfg.horizon_s)
        self.alerts = 0

    def stop(self, timeout: float = 10.0) -> None:
        """Stop stepping, then hand the lease over, so another server's correlator leads from its next step."""
        super().stop(timeout)
        if self.is_alive():
            return  # a step still runs (a stuck database): the lease runs out on its own
        try:
            self.fleet.release()
        except StorageUnavailable as exc:
            log.warning("%s: could not hand over the lead (%s); another takes over when it runs out", self.name, exc)

    def step(self) -> bool:
        before = self.index.seen_id
        ids = self.fleet.correlate(self.index, min_devices=self.cfg.min_devices, batch=self.cfg.batch,
                                   settle_s=self.cfg.settle_s)
        if ids:
            self.alerts += len(ids)
            if self.on_alerts is not None:
                self.on_alerts()
        return self.index.seen_id - before >= self.cfg.batch


class RollupWorker(_Loop):
    """Keeps the events' rollup (cloud_svc.store.rollup) up to date; one leads per database."""

    name = "rollup"

    def __init__(self, store: RollupStore, cfg: RollupConfig):
        super().__init__()
        self.store, self.cfg = store, cfg
        self.poll_s = cfg.poll_s
        self.rolled = 0

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        if self.is_alive():
            return
        try:
            self.store.release()
        except StorageUnavailable as exc:
            log.warning("%s: could not hand over the lead (%s); another takes over when it runs out", self.name, exc)

    def step(self) -> bool:
        n = self.store.step(batch=self.cfg.batch, settle_s=self.cfg.settle_s)
        self.rolled += n
        return n >= self.cfg.batch


def _correlator_main(cfg_data: dict, parent_pid: int) -> None:
    """A child process's whole life: correlate until SIGTERM or until the server that started it is gone."""
    import signal

    from cloud_svc.config import CloudConfig

    cfg = CloudConfig.model_validate(cfg_data)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the server decides
    store = Store.open(cfg.db)
    loop = Correlator(store.fleet, cfg.fleet)
    loop.start()
    try:
        while not stop.wait(0.5):
            if os.getppid() != parent_pid:  # the server died (kill -9): do not linger
                log.warning("the server (pid %d) is gone; the fleet correlator stops", parent_pid)
                break
            if not loop.is_alive():
                break
    finally:
        loop.stop()
        store.close()


class CorrelatorProcess:
    """The fleet correlator in a child process, with a worker's start()/stop(); it exits with its server.

    Stopping is a SIGTERM, not a shared multiprocessing primitive: a child that died while waiting on one
    would leave the parent blocked in it for good."""

    name = "fleet-correlator-process"

    def __init__(self, cfg):
        import multiprocessing

        self._ctx = multiprocessing.get_context("spawn")  # no inherited locks, threads or gRPC state
        self._cfg_data = cfg.model_dump(mode="json")
        self.process = None

    def start(self) -> "CorrelatorProcess":
        self.process = self._ctx.Process(target=_correlator_main, name=self.name, daemon=True,
                                         args=(self._cfg_data, os.getpid()))
        self.process.start()
        log.info("fleet correlator in process %d", self.process.pid)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.exitcode is not None:
            return
        self.process.terminate()  # SIGTERM: the child finishes its step and exits
        self.process.join(timeout)
        if self.process.is_alive():
            log.warning("fleet correlator process %d did not stop in %.0f s; killing it", self.process.pid, timeout)
            self.process.kill()
            self.process.join(5.0)


def worker_name(i: int = 0) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{i}"


class VerifyWorker(_Loop):
    """Claims verification jobs, runs the verifier on each clip and stores the verdict (JobStore: each job once)."""

    def __init__(self, jobs: JobStore, store: ClipStore, verifier, cfg: VerifyConfig, index: int = 0):
        super().__init__()
        self.jobs, self.store, self.verifier, self.cfg = jobs, store, verifier, cfg
        self.poll_s = cfg.poll_s
        self.name = f"verify-{index}"
        self.ident = worker_name(index)
        self.done = 0
        self.failed = 0
        self.lost = 0  # verdicts not stored: the claim had run out and another worker had the job

    def step(self) -> bool:
        jobs = self.jobs.claim_jobs(self.ident, self.cfg.batch, self.cfg.lease_s, self.cfg.max_attempts)
        for job in jobs:
            if self._stop.is_set():
                break
            try:
                if job.clip is None:
                    result = VerifyResult(self.verifier.KEY, [], {}, None, "no clip to verify")
                else:
                    result = self.verifier.verify(self.store.get(job.clip.sha256), job.clip.format, job.label)
                if self.jobs.finish_job(job, result):
                    self.done += 1
                else:
                    self.lost += 1
                    log.warning("verification of %s/%s took longer than the claim's lease (%.0f s); another claim "
                                "has the job, and this verdict is dropped", job.device_id, job.event_id,
                                self.cfg.lease_s)
            except StorageUnavailable:
                raise
            except (CloudError, Exception) as exc:  # noqa: BLE001 - a bad clip fails its job, not the worker
                self.failed += 1
                log.warning("verification of %s/%s failed: %s", job.device_id, job.event_id, exc)
                self.jobs.fail_job(job, f"{type(exc).__name__}: {exc}", self.cfg.max_attempts)
        return len(jobs) == self.cfg.batch
