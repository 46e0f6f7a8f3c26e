"""The cloud server: wires the store, clip store, committer, servicers and workers, and runs them on grpc.aio."""
from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Callable, Optional

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cloud_svc import notify
from cloud_svc.auth import QueryAuth, QueryAuthInterceptor, TokenAuth
from cloud_svc.clipstore import open_store
from cloud_svc.config import CloudConfig, IngestConfig
from cloud_svc.db import make_engine
from cloud_svc.errors import ConfigError
from cloud_svc.ingest import Committer
from cloud_svc.store import Store
from cloud_svc.workers import Correlator, CorrelatorProcess, RollupWorker, VerifyWorker, Worker
from edgert.notify.config import NotifyConfig

log = logging.getLogger("cloud_svc.server")

INGEST = "edgert.v1.Ingest"
QUERY = "edgert.v1.Query"


def server_options(ic: IngestConfig, reuse_port: bool = False) -> list[tuple[str, int]]:
    """gRPC server options from the ingest settings: message limits and keepalives."""
    return [
        ("grpc.max_receive_message_length", ic.max_message_bytes),
        ("grpc.max_send_message_length", ic.max_message_bytes),
        ("grpc.keepalive_time_ms", int(ic.keepalive_s * 1000)),  # the server pings idle connections ...
        ("grpc.keepalive_timeout_ms", int(ic.keepalive_timeout_s * 1000)),  # ... and drops the silent ones
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", int(ic.min_client_ping_s * 1000)),
        ("grpc.http2.max_ping_strikes", 0),
        # A second server on the port fails instead of sharing it, unless sharing is the point (serve --procs).
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]


def _read(path: Optional[str]) -> Optional[bytes]:
    return Path(path).read_bytes() if path else None


def create_server(addr: str, app: "CloudApp") -> tuple[grpc.aio.Server, int]:
    """Build the grpc.aio server with every service registered and bind `addr` (port 0 picks a free port).
    Starting it is the caller's business."""
    cfg = app.cfg
    server = grpc.aio.server(options=server_options(cfg.ingest, app.reuse_port),
                             interceptors=[QueryAuthInterceptor(app.query_auth, QUERY)])
    server.add_generic_rpc_handlers((app.ingest.handler(),))
    app.query.register(server)
    health_pb2_grpc.add_HealthServicer_to_server(app.health, server)
    reflection.enable_server_reflection([INGEST, QUERY, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    try:
        if cfg.tls.cert:
            creds = grpc.ssl_server_credentials([(_read(cfg.tls.key), _read(cfg.tls.cert))],
                                                root_certificates=_read(cfg.tls.client_ca),
                                                require_client_auth=bool(cfg.tls.client_ca))
            port = server.add_secure_port(addr, creds)
        else:
            port = server.add_insecure_port(addr)
    except (RuntimeError, OSError) as exc:
        raise ConfigError(f"cannot listen on {addr}: {exc}") from exc
    if not port:
        raise ConfigError(f"cannot listen on {addr}")
    return server, port


class CloudApp:
    """Everything `serve` runs. `start()` returns the bound port; `stop()` drains in-flight commits first."""

    def __init__(self, cfg: CloudConfig, *, migrate: bool = True, verifier=None, reuse_port: bool = False):
        from cloud_svc.servicer.ingest import IngestServicer
        from cloud_svc.servicer.query import AlertBus, QueryServicer

        self.cfg, self.reuse_port = cfg, reuse_port
        self.clips = open_store(cfg.clips, cfg.db)
        self.store = Store(make_engine(cfg.db), distress_labels=cfg.verify.distress_labels,
                           sample_rate=cfg.verify.sample_rate, stale_after_s=cfg.ingest.stale_after_s,
                           clip_uri=self.clips.uri, health_sample_s=cfg.ingest.health_sample_s)
        if migrate:
            rev = self.store.upgrade()
            log.info("database %s at revision %s", self.store.engine.url.render_as_string(), rev)
        self.bus = AlertBus()
        self.committer = Committer(self.store.ingest, self.clips, cfg.ingest, on_alerts=self.bus.publish_threadsafe,
                                   shards=1 if self.store.sqlite else cfg.ingest.committers)
        self.ingest = IngestServicer(self.store.devices, TokenAuth(self.store.devices, cfg.ingest.auth_cache_s),
                                     self.committer, self.clips, cfg)
        self.query = QueryServicer(self.store.queries, self.clips, self.bus)
        self.query_auth = QueryAuth(self.store.users, ttl_s=cfg.ingest.auth_cache_s, open_query=cfg.open_query)
        self.health = health.aio.HealthServicer()
        self.workers: list[Worker] = []
        if cfg.fleet.enabled and cfg.fleet.process:
            self.workers.append(CorrelatorProcess(cfg))
        elif cfg.fleet.enabled:
            self.workers.append(Correlator(self.store.fleet, cfg.fleet, on_alerts=self.bus.publish_threadsafe))
        if cfg.rollup.enabled:
            self.workers.append(RollupWorker(self.store.rollup, cfg.rollup))
        if cfg.verify.workers:
            if verifier is None:
                from cloud_svc import verify

                verifier = verify.load(cfg.verify.verifier)
            self.workers += [VerifyWorker(self.store.jobs, self.clips, verifier, cfg.verify, i)
                             for i in range(cfg.verify.workers)]
        self.bridge: Optional[notify.Bridge] = None
        if notify.wanted(cfg):  # the MQTT / webhook bridge, started and stopped with the other workers
            self.bridge = notify.build_bridge(cfg, self.store)
            self.workers.append(self.bridge)
        self.server: Optional[grpc.aio.Server] = None
        self.port = 0
        self._refresher: Optional[asyncio.Task] = None

    async def start(self) -> int:
        if self.bridge is not None:  # a refused broker login ends the server here, before it takes any record
            await asyncio.to_thread(self.bridge.open)
        self.bus.bind(asyncio.get_running_loop())
        self.committer.start()
        self.server, self.port = create_server(self.cfg.listen, self)
        await self.server.start()
        for svc in ("", INGEST, QUERY):
            await self.health.set(svc, health_pb2.HealthCheckResponse.SERVING)
        for w in self.workers:
            w.start()
        if self.cfg.ingest.auth_cache_s > 0:
            self._refresher = asyncio.create_task(self.ingest.refresh_tokens())
        log.info("serving %s on port %d", self.cfg.listen, self.port)
        return self.port

    async def stop(self, grace: float = 2.0) -> None:
        """NOT_SERVING, stop taking batches, commit and ack what is in flight, end streams, close."""
        if self._refresher is not None:
            self._refresher.cancel()
        await self.health.enter_graceful_shutdown()
        await self.ingest.drain(self.cfg.ingest.drain_timeout_s)
        self.query.closing = True
        if self.server is not None:
            await self.server.stop(grace)
        await asyncio.to_thread(self.committer.stop, self.cfg.ingest.drain_timeout_s)
        for w in self.workers:
            await asyncio.to_thread(w.stop)
        self.store.close()
        log.info("stopped: %d commits, %d records", self.committer.commits, self.committer.records)

    async def run(self, on_started: Optional[Callable[[int], None]] = None) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully."""
        port = await self.start()
        if on_started is not None:
            on_started(port)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        await done.wait()
        log.info("signal received: draining")
        await self.stop()


class ServerThread:
    """A CloudApp on its own event loop in a thread: for embedding, tests and benchmarks."""

    def __init__(self, cfg: CloudConfig, **kw):
        self.cfg, self._kw = cfg, kw
        self.app: Optional[CloudApp] = None
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._main, name="cloud-server", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self.app = CloudApp(self.cfg, **self._kw)
            self.port = self._loop.run_until_complete(self.app.start())
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def start(self, timeout: float = 30.0) -> int:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the cloud server did not start")
        if self._error is not None:
            raise self._error
        return self.port

    def stop(self, timeout: float = 30.0) -> None:
        if self.app is None or not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.app.stop(), self._loop)
        try:
            fut.result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> "ServerThread":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


SWITCH_INTERVAL_S = 0.0005  # measured against the default 5 ms with bench/ingest.py (BENCHMARKS.md)


def tune_gc() -> None:
    """Ingest allocates many short-lived objects per record while thousands of streams keep long-lived ones:
    with the default generation-0 threshold (700) the collector rescans them constantly (a quarter of the event
    loop's time at 1000 devices). Freeze what startup built and collect young objects less often."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # Committer threads do one database round trip after another; each time one comes back it must win the GIL
    # from a busy event loop, which by default keeps it up to 5 ms. A shorter switch interval lets commits (and
    # their acks) move on promptly.
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def _child(cfg_data: dict, ready) -> None:
    tune_gc()
    app = CloudApp(CloudConfig.model_validate(cfg_data), migrate=False, reuse_port=True)
    asyncio.run(app.run(on_started=ready.put))


def serve_forever(cfg: CloudConfig, *, migrate: bool = True, procs: int = 1,
                  on_started: Optional[Callable[[int], None]] = None) -> None:
    """Run until SIGTERM/SIGINT. With procs > 1, that many processes share the port (SO_REUSEPORT; the kernel
    spreads connections over them): replicas on one host, each with its own event loop and committers."""
    if procs <= 1:
        tune_gc()
        asyncio.run(CloudApp(cfg, migrate=migrate).run(on_started))
        return
    if migrate:
        store = Store(make_engine(cfg.db))
        try:
            store.upgrade()
        finally:
            store.close()
    host, port = cfg.listen.rsplit(":", 1)
    placeholder = None
    if int(port) == 0:  # pick the port here, so that every process binds the same one
        family, kind, proto, _, addr = socket.getaddrinfo(host.strip("[]") or None, 0, type=socket.SOCK_STREAM)[0]
        placeholder = socket.socket(family, kind, proto)
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        placeholder.bind(addr)
        port = str(placeholder.getsockname()[1])
    # one bridge for all the processes (each would publish every event): it runs here, in the parent
    child_cfg = cfg.model_copy(update={"listen": f"{host}:{port}", "notify": NotifyConfig()}).model_dump()
    bridge_store = bridge = None
    if notify.wanted(cfg):
        bridge_store = Store(make_engine(cfg.db), stale_after_s=cfg.ingest.stale_after_s)
        bridge = notify.build_bridge(cfg, bridge_store).start()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    children = [ctx.Process(target=_child, args=(child_cfg, ready), name=f"cloud_svc-{i}") for i in range(procs)]
    stopping = threading.Event()

    def forward(signum, _frame):
        stopping.set()
        for c in children:
            if c.is_alive():
                os.kill(c.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for c in children:
        c.start()
    try:
        for _ in children:
            while True:
                try:
                    ready.get(timeout=1.0)
                    break
                except queue.Empty:
                    if stopping.is_set() or any(c.exitcode not in (None, 0) for c in children):
                        raise ConfigError("a serving process failed to start; see its log above") from None
        if placeholder is not None:
            placeholder.close()
        log.info("%d processes serving port %s", procs, port)
        if on_started is not None:
            on_started(int(port))
        for c in children:
            c.join()
    finally:
        forward(signal.SIGTERM, None)
        for c in children:
            c.join(30)
        if bridge is not None:
            bridge.stop()
        if bridge_store is not None:
            bridge_store.close()
