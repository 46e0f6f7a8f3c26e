"""The Ingest servicer: authenticates a device, turns its stream into batches for the committer, sends acks."""
from __future__ import annotations

import asyncio
import logging
import time

import grpc

from cloud_svc import errors
from cloud_svc.auth import TokenAuth, bearer_token
from cloud_svc.clipstore import ClipStore, Upload
from cloud_svc.config import CloudConfig
from cloud_svc.domain import BatchIn, EventIn
from cloud_svc.errors import CloudError, Draining, InvalidMessage, PermissionDenied
from cloud_svc.ingest import CLIP_MISSING, Committer
from cloud_svc.servicer import convert
from cloud_svc.store import DeviceStore
from edgert.v1 import ingest_pb2

log = logging.getLogger("cloud_svc.ingest")

SERVICE = "edgert.v1.Ingest"
MAX_INFLIGHT_BATCHES = 64   # per stream; beyond this the stream stops reading (HTTP/2 flow control pushes back)
MAX_CHUNK_BYTES = 1 << 20   # ClipChunk.data (or max_message_bytes when lower); documented in ingest.proto
UPLOADS_REMEMBERED = 256    # per stream: clips uploaded here, which a ref then needs no clip store lookup for
CONFIG_POLL_S = 5.0         # a device's own thresholds, changed on the dashboard, reach it within this + a heartbeat
INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]


class Undecodable:
    """What the tolerant deserializer hands on for bytes that are not an IngestRequest."""

    def __init__(self, error: str, size: int):
        self.error, self.size = error, size


def tolerant_deserializer(raw: bytes):
    """A message that does not parse is answered in-band, so one bad message does not end the stream."""
    try:
        return ingest_pb2.IngestRequest.FromString(raw)
    except Exception as exc:  # noqa: BLE001 - DecodeError and friends
        return Undecodable(str(exc) or type(exc).__name__, len(raw))


def _settled(fut: asyncio.Future) -> None:
    """Read a commit's outcome that no stream will ack (its stream ended first): the device resends it."""
    if not fut.cancelled() and fut.exception() is not None:
        log.debug("a commit of an ended stream failed: %s", fut.exception())


class _Abort:
    def __init__(self, exc: CloudError):
        self.exc = exc


_END = object()


class _Stream:
    """Per-stream state: the device, its clip uploads, and what it is owed, in order."""

    def __init__(self, device_id: str, token: str):
        self.device_id, self.token = device_id, token
        self.uploads: dict[str, Upload] = {}
        self.uploaded: dict[str, None] = {}        # sha256s of the clips completed on this stream, oldest first
        self.out: asyncio.Queue = asyncio.Queue()  # responses, commit futures (-> acks), _END or _Abort, in order
        self.owed = 0                              # commits whose acks have not left yet
        self.slots = asyncio.Semaphore(MAX_INFLIGHT_BATCHES)
        self.pushed_version = -1                   # the config version last pushed on this stream
        self.config_checked = 0.0                  # monotonic time of the last look for a per-device config

    def close(self) -> None:
        for up in self.uploads.values():
            up.abort()
        self.uploads.clear()


class IngestServicer:
    def __init__(self, devices: DeviceStore, auth: TokenAuth, committer: Committer, store: ClipStore,
                 cfg: CloudConfig):
        self.devices, self.auth, self.committer, self.store, self.cfg = devices, auth, committer, store, cfg
        self._streams: set[_Stream] = set()
        self.draining = False
        self.rejected = 0

    # ------------------------------------------------------------------------------------------ registration
    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Stream": grpc.stream_stream_rpc_method_handler(
                self.Stream, request_deserializer=tolerant_deserializer,
                response_serializer=ingest_pb2.IngestResponse.SerializeToString)})

    async def refresh_tokens(self) -> None:
        """Keep the token cache fresh in one query per half lifetime instead of one per stream (runs until
        cancelled)."""
        period = max(0.05, self.auth.ttl_s / 2)
        while True:
            await asyncio.sleep(period)
            try:
                await asyncio.to_thread(self.auth.refresh)
            except CloudError as exc:
                log.warning("token refresh failed: %s", exc)

    async def drain(self, timeout: float) -> None:
        """Stop taking batches, wait for the committer and for the acks owed, then end every stream with
        UNAVAILABLE (which devices retry, against another replica or this one once it is back)."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and (self.committer.pending() or any(s.owed for s in self._streams)):
            await asyncio.sleep(0.02)
        for s in list(self._streams):
            s.out.put_nowait(_Abort(Draining("server is shutting down; reconnect")))

    # ------------------------------------------------------------------------------------------ the RPC
    async def Stream(self, request_iterator, context: grpc.aio.ServicerContext):
        """A reader task turns requests into commits (and in-band rejects); this generator writes the answers
        in order, awaiting each commit before its ack."""
        token = bearer_token(context.invocation_metadata())
        try:
            if self.draining:
                raise Draining("server is shutting down; reconnect")
            device_id = self.auth.cached(token)
            if not device_id:
                device_id = await asyncio.to_thread(self.auth.authenticate, token)
        except CloudError as exc:
            await context.abort(errors.status_of(exc), errors.detail(exc))
            raise  # not reached: abort() raises (grpc's AbortError)
        s = _Stream(device_id, token)
        self._streams.add(s)
        reader = asyncio.create_task(self._read(s, request_iterator))
        try:
            while True:
                item = await s.out.get()
                if isinstance(item, asyncio.Future):
                    try:
                        res = await item
                    except CloudError as exc:
                        item = _Abort(exc)
                    else:
                        item = convert.ack(s.device_id, res.acked_seq)
                    finally:
                        s.owed -= 1
                        s.slots.release()
                if item is _END:
                    break
                if isinstance(item, _Abort):
                    await context.abort(errors.status_of(item.exc), errors.detail(item.exc))
                yield item
        finally:
            reader.cancel()
            self._streams.discard(s)
            s.close()
            while not s.out.empty():  # commits whose acks will never be sent: their outcome is read, not lost
                item = s.out.get_nowait()
                if isinstance(item, asyncio.Future):
                    item.add_done_callback(_settled)

    async def _read(self, s: _Stream, request_iterator) -> None:
        try:
            async for msg in request_iterator:
                if self.draining:
                    s.out.put_nowait(_Abort(Draining("server is shutting down; reconnect")))
                    return
                try:
                    await self._handle(s, msg)
                except InvalidMessage as exc:
                    self.rejected += 1
                    s.out.put_nowait(convert.reject(INVALID, exc.field, exc.detail))
            s.out.put_nowait(_END)  # the device half-closed: finish the acks it is owed, then end
        except asyncio.CancelledError:
            raise
        except CloudError as exc:  # Unauthenticated, PermissionDenied (a Hello for another device): read no more
            s.out.put_nowait(_Abort(exc))
        except Exception as exc:  # noqa: BLE001 - the transport failed under us; the stream is gone
            log.debug("stream of %s ended: %s", s.device_id, exc)
            s.out.put_nowait(_END)

    async def _handle(self, s: _Stream, msg) -> None:
        if isinstance(msg, Undecodable):
            raise InvalidMessage("(message)", f"{msg.size} bytes that are not an IngestRequest: {msg.error}")
        which = msg.WhichOneof("msg")
        ic = self.cfg.ingest
        if which == "batch":
            await self._recheck(s)
            try:
                batch, problems = convert.batch_in(s.device_id, msg.batch, max_records=ic.max_batch_records,
                                                   max_inline=ic.max_inline_clip_bytes, max_clip=ic.max_clip_bytes)
            except InvalidMessage as exc:
                self.rejected += 1
                s.out.put_nowait(convert.batch_reject(INVALID, exc, msg.batch))
                return
            problems += await self._drop_missing_clips(s, batch)
            for p in problems:  # before the batch's ack, so a device hears of a dropped clip before it forgets it
                self.rejected += 1
                s.out.put_nowait(convert.record_reject(errors.status_of(p.error).value[0], p))
            await s.slots.acquire()
            s.owed += 1
            s.out.put_nowait(self.committer.submit_async(batch))
        elif which == "clip_chunk":
            await self._chunk(s, msg.clip_chunk)
        elif which == "heartbeat":
            self.committer.submit_heartbeat(convert.heartbeat_in(s.device_id, msg.heartbeat))
            if time.monotonic() - s.config_checked >= CONFIG_POLL_S:
                await self._push_config(s)
        elif which == "hello":
            h = msg.hello
            if h.device_id != s.device_id:  # ends the stream: nothing after it may be stored under either device
                raise PermissionDenied(f"this token belongs to device {s.device_id!r}, not to {h.device_id[:128]!r} "
                                       "(Hello.device_id)")
            agent = convert.text(h.agent, "hello.agent", required=False)
            mark = await asyncio.to_thread(self.devices.hello, s.device_id, agent)
            s.out.put_nowait(convert.ack(s.device_id, mark))
            await self._push_config(s, always=True)
        else:
            raise InvalidMessage("msg", "one of hello, batch, heartbeat, clip_chunk is required")

    async def _push_config(self, s: _Stream, always: bool = False) -> None:
        """Push the detector thresholds: the cloud-wide ones with this device's own (set from the dashboard) over
        them. On Hello always; after that when the device's own changed (looked up every CONFIG_POLL_S)."""
        s.config_checked = time.monotonic()
        own = await asyncio.to_thread(self.devices.config_for, s.device_id)
        if own is None:
            thresholds, version = self.cfg.edge_thresholds, self.cfg.pushed_version
        else:
            thresholds, version = {**self.cfg.edge_thresholds, **own.thresholds}, own.version
        if always or version != s.pushed_version:
            s.pushed_version = version
            s.out.put_nowait(convert.config_push(thresholds, self.cfg.verify.sample_rate, version))

    async def _drop_missing_clips(self, s: _Stream, batch: BatchIn) -> list[convert.Problem]:
        """Refs to clips that were never uploaded cost only the clip (the committer checks again, as a backstop);
        clips uploaded on this stream are known to be there without asking the store."""
        refs = {r.payload.clip.sha256 for r in batch.records if isinstance(r.payload, EventIn)
                and r.payload.clip is not None and r.payload.clip.data is None} - s.uploaded.keys()
        if not refs:
            return []
        there = await asyncio.to_thread(lambda: {sha for sha in refs if self.store.exists(sha)})
        return convert.drop_missing_clips(batch, lambda sha: sha in there or sha in s.uploaded, CLIP_MISSING)

    async def _recheck(self, s: _Stream) -> None:
        """A token revoked while its stream is open is noticed within the auth cache's lifetime (Unauthenticated
        then ends the stream)."""
        if self.auth.cached(s.token) != s.device_id:
            await asyncio.to_thread(self.auth.authenticate, s.token)

    async def _chunk(self, s: _Stream, c: ingest_pb2.ClipChunk) -> None:
        ic = self.cfg.ingest
        convert.check_chunk(c, ic.max_clip_bytes, min(MAX_CHUNK_BYTES, ic.max_message_bytes))
        up = s.uploads.get(c.sha256)
        if up is None:
            if c.offset != 0:
                raise InvalidMessage("clip_chunk.offset", f"an upload starts at offset 0, got {c.offset}")
            if len(s.uploads) >= ic.max_uploads_per_stream:
                raise InvalidMessage("clip_chunk.sha256", f"more than {ic.max_uploads_per_stream} uploads at once")
            up = await asyncio.to_thread(self.store.begin_upload, c.sha256, int(c.total_size))
            s.uploads[c.sha256] = up
        elif c.total_size != up.total:
            raise InvalidMessage("clip_chunk.total_size", f"changed from {up.total} to {c.total_size}")
        try:
            done = await asyncio.to_thread(up.write, int(c.offset), bytes(c.data))
        except InvalidMessage:
            s.uploads.pop(c.sha256, None)
            up.abort()
            raise
        if done:
            del s.uploads[c.sha256]
            s.uploaded[c.sha256] = None
            if len(s.uploaded) > UPLOADS_REMEMBERED:
                del s.uploaded[next(iter(s.uploaded))]
