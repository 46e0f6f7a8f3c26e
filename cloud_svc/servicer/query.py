"""The Query servicer: events, devices, clips, alerts (listed and followed live) and verification agreement."""
from __future__ import annotations

import asyncio
import logging

import grpc

from cloud_svc import errors
from cloud_svc.auth import StaticTokenAuth
from cloud_svc.clipstore import ClipStore
from cloud_svc.errors import CloudError, InvalidMessage
from cloud_svc.servicer import convert
from cloud_svc.store import QueryStore
from edgert.v1 import query_pb2, query_pb2_grpc

log = logging.getLogger("cloud_svc.query")

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
CLIP_CHUNK = 256 << 10
SUBSCRIBE_POLL_S = 1.0  # alerts committed by other replicas show up within this


class AlertBus:
    """Wakes Subscribe streams when this process stored an alert; lives on the server's event loop."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self) -> None:
        for ev in list(self._waiters):
            ev.set()

    def publish_threadsafe(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.publish)

    def waiter(self) -> asyncio.Event:
        ev = asyncio.Event()
        self._waiters.add(ev)
        return ev

    def drop(self, ev: asyncio.Event) -> None:
        self._waiters.discard(ev)


class QueryServicer(query_pb2_grpc.QueryServicer):
    def __init__(self, queries: QueryStore, store: ClipStore, bus: AlertBus, auth: StaticTokenAuth):
        self.queries, self.store, self.bus, self.auth = queries, store, bus, auth
        self.closing = False

    def register(self, server: grpc.aio.Server) -> None:
        query_pb2_grpc.add_QueryServicer_to_server(self, server)

    async def _guard(self, context, fn, *args, **kw):
        """Check the operator token, run a store call off the event loop, map errors to status codes."""
        try:
            self.auth.check(context.invocation_metadata())
            return await asyncio.to_thread(fn, *args, **kw)
        except CloudError as exc:
            await context.abort(errors.status_of(exc), str(exc))

    async def ListEvents(self, request, context):
        try:
            f = convert.event_filter(request, DEFAULT_LIMIT, MAX_LIMIT)
        except InvalidMessage as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        for e in await self._guard(context, self.queries.list_events, f):
            yield convert.event_info(e)

    async def ListDevices(self, request, context):
        devs = await self._guard(context, self.queries.list_devices)
        return query_pb2.ListDevicesResponse(devices=[convert.device_info(d) for d in devs])

    async def GetClip(self, request, context):
        which = request.WhichOneof("key")
        if not request.device_id or which is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "device_id and one of seq, event_id are required")
        kw = {"seq": request.seq} if which == "seq" else {"event_id": request.event_id}
        clip = await self._guard(context, self.queries.get_clip, request.device_id, **kw)
        data = await self._guard(context, self.store.get, clip.sha256)
        for off in range(0, max(len(data), 1), CLIP_CHUNK):
            piece = query_pb2.ClipData(offset=off, data=data[off:off + CLIP_CHUNK], total_size=len(data))
            if off == 0:
                piece.format, piece.sample_rate, piece.sha256 = clip.format, clip.sample_rate, clip.sha256
            yield piece

    async def ListAlerts(self, request, context):
        alerts = await self._guard(context, self.queries.list_alerts, start_ns=request.start_ns or None,
                                   end_ns=request.end_ns or None, kind=request.kind,
                                   limit=min(request.limit or DEFAULT_LIMIT, MAX_LIMIT), after_id=request.after_id)
        for a in alerts:
            yield convert.alert_info(a)

    async def Subscribe(self, request, context):
        if request.kind not in ("", "device", "fleet"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "kind: must be device, fleet or empty")
        after = int(request.after_id)
        since = request.since_ns or None
        if not after and since is None:
            after = await self._guard(context, self.queries.last_alert_id)  # only what happens from now on
        wake = self.bus.waiter()
        try:
            while not self.closing:
                wake.clear()  # before the query: an alert stored during it wakes the next wait at once
                batch = await self._guard(context, self.queries.list_alerts, kind=request.kind, after_id=after,
                                          created_since_ns=since, limit=DEFAULT_LIMIT)
                for a in batch:
                    after = max(after, a.id)
                    yield convert.alert_info(a)
                if len(batch) == DEFAULT_LIMIT:
                    continue
                try:
                    await asyncio.wait_for(wake.wait(), SUBSCRIBE_POLL_S)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.bus.drop(wake)

    async def GetAgreement(self, request, context):
        rows = await self._guard(context, self.queries.agreement, request.start_ns or None,
                                 request.end_ns or None)
        return query_pb2.GetAgreementResponse(labels=[
            query_pb2.LabelAgreement(label=a.label, verified=a.verified, agreed=a.agreed, rate=a.rate) for a in rows])
