"""The Query servicer: events, devices, clips, alerts (listed and followed live) and verification agreement."""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time

import grpc

from cloud_svc import errors
from cloud_svc.clipstore import ClipStore
from cloud_svc.errors import CloudError, InvalidMessage
from cloud_svc.servicer import convert
from cloud_svc.store import QueryStore
from edgert.v1 import query_pb2, query_pb2_grpc

log = logging.getLogger("cloud_svc.query")

STREAM_PAGE = 1000      # ListEvents reads the store this many events at a time
DEFAULT_PAGE = 100      # ListEventsPage's page size when the request gives none ...
MAX_PAGE = 1000         # ... and its largest
DEFAULT_LIMIT = 1000    # ListAlerts
MAX_LIMIT = 100_000
CLIP_CHUNK = 256 << 10
SUBSCRIBE_POLL_S = 1.0  # alerts committed by other replicas show up within this
# Alert ids come from one sequence but transactions commit in any order: an alert with a smaller id may become
# visible after a larger one was sent. Subscribe looks back this far (by the time it was stored) for such late
# ones, and remembers what it sent that long, so none is missed and none is sent twice.
LATE_COMMIT_S = 10.0
NEXT_PAGE_KEY = "edgert-next-page-token"
AFTER_ID_KEY = "edgert-after-id"
TOKEN_PREFIX = "p1."


def page_token(after_id: int) -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(str(after_id).encode()).decode().rstrip("=")


def after_of(token: str) -> int:
    """The id a page token continues after; InvalidMessage for anything this server did not write."""
    try:
        if not token.startswith(TOKEN_PREFIX):
            raise ValueError
        raw = token[len(TOKEN_PREFIX):]
        n = int(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode())
        if not 0 <= n <= convert.MAX_ID:
            raise ValueError
        return n
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidMessage("page_token", "not a token of this server (send the next_page_token you got)") from None


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
    """Credentials are checked before any of this runs (cloud_svc.auth.QueryAuthInterceptor)."""

    def __init__(self, queries: QueryStore, store: ClipStore, bus: AlertBus):
        self.queries, self.store, self.bus = queries, store, bus
        self.closing = False

    def register(self, server: grpc.aio.Server) -> None:
        query_pb2_grpc.add_QueryServicer_to_server(self, server)

    async def _guard(self, context, fn, *args, **kw):
        """Run a store call off the event loop, map errors to status codes."""
        try:
            return await asyncio.to_thread(fn, *args, **kw)
        except CloudError as exc:
            await context.abort(errors.status_of(exc), errors.detail(exc))

    async def _filter(self, request, context, limit: int):
        try:
            f = convert.event_filter(request, limit, max(limit, 1))
            if request.page_token:
                f.after_id = max(f.after_id, after_of(request.page_token))
            return f
        except InvalidMessage as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, errors.detail(exc))

    async def ListEvents(self, request, context):
        """Every match, read from the store a page at a time (no cap); `limit` ends it early, and then the
        trailing metadata says where the rest starts."""
        want = int(request.limit) or None
        f = await self._filter(request, context, STREAM_PAGE)
        sent = 0
        while True:
            f.limit = STREAM_PAGE if want is None else min(STREAM_PAGE, want - sent + 1)  # one more: is there more?
            page = await self._guard(context, self.queries.list_events, f)
            for e in page:
                if want is not None and sent == want:
                    context.set_trailing_metadata(((NEXT_PAGE_KEY, page_token(f.after_id)),))
                    return
                yield convert.event_info(e)
                sent += 1
                f.after_id = e.id
            if len(page) < f.limit:
                return

    async def ListEventsPage(self, request, context):
        size = min(int(request.limit) or DEFAULT_PAGE, MAX_PAGE)
        f = await self._filter(request, context, size + 1)
        f.limit = size + 1  # one more than the page: is there a next one?
        found = await self._guard(context, self.queries.list_events, f)
        page = found[:size]
        more = len(found) > size
        return query_pb2.EventPage(events=[convert.event_info(e) for e in page],
                                   next_page_token=page_token(page[-1].id) if more and page else "")

    async def ListDevices(self, request, context):
        devs = await self._guard(context, self.queries.list_devices)
        return query_pb2.ListDevicesResponse(devices=[convert.device_info(d) for d in devs])

    async def GetClip(self, request, context):
        which = request.WhichOneof("key")
        if not request.device_id or which is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "device_id and one of seq, event_id are required")
        if which == "seq" and request.seq > convert.MAX_ID:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"seq: must be at most {convert.MAX_ID}")
        kw = {"seq": request.seq} if which == "seq" else {"event_id": request.event_id}
        clip = await self._guard(context, self.queries.get_clip, request.device_id, **kw)
        data = await self._guard(context, self.store.get, clip.sha256)
        for off in range(0, max(len(data), 1), CLIP_CHUNK):
            piece = query_pb2.ClipData(offset=off, data=data[off:off + CLIP_CHUNK], total_size=len(data))
            if off == 0:
                piece.format, piece.sample_rate, piece.sha256 = clip.format, clip.sample_rate, clip.sha256
            yield piece

    async def ListAlerts(self, request, context):
        if request.after_id > convert.MAX_ID:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"after_id: must be at most {convert.MAX_ID}")
        alerts = await self._guard(context, self.queries.list_alerts, start_ns=request.start_ns or None,
                                   end_ns=request.end_ns or None, kind=request.kind,
                                   limit=min(request.limit or DEFAULT_LIMIT, MAX_LIMIT), after_id=request.after_id)
        for a in alerts:
            yield convert.alert_info(a)

    async def Subscribe(self, request, context):
        if request.kind not in ("", "device", "fleet"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "kind: must be device, fleet or empty")
        if request.after_id > convert.MAX_ID:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"after_id: must be at most {convert.MAX_ID}")
        after = int(request.after_id)
        since = request.since_ns or None
        if not after and since is None:
            after = await self._guard(context, self.queries.last_alert_id)  # only what happens from now on
        floor = after  # the stream starts after this id
        wake = self.bus.waiter()
        # The headers go out at once, naming where this stream starts: the client is live from here on.
        await context.send_initial_metadata(((AFTER_ID_KEY, str(after)),))
        sent: dict[int, int] = {}  # id -> when sent (ns): recent ones, so a late look-back repeats none
        try:
            while not self.closing:
                wake.clear()  # before the query: an alert stored during it wakes the next wait at once
                now = time.time_ns()
                late_ns = now - int(LATE_COMMIT_S * 1e9)
                batch = await self._guard(context, self.queries.list_alerts, kind=request.kind, after_id=after,
                                          created_since_ns=since, limit=DEFAULT_LIMIT)
                # alerts with a smaller id than one already sent that became visible since (committed late)
                late = await self._guard(context, self.queries.list_alerts, kind=request.kind, after_id=floor,
                                         created_since_ns=max(since or 0, late_ns), limit=DEFAULT_LIMIT) if sent else []
                for a in sorted({a.id: a for a in [*late, *batch]}.values(), key=lambda a: a.id):
                    if a.id in sent or a.id <= floor:
                        continue
                    sent[a.id] = now
                    after = max(after, a.id)
                    yield convert.alert_info(a)
                for k in [k for k, t in sent.items() if t < late_ns - int(LATE_COMMIT_S * 1e9)]:
                    del sent[k]
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
