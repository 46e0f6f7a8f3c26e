"""Following one kind of stored row (event starts, event ends, finished verifications, alerts) for one transport,
with a cursor in the database, so that every row is sent at least once across broker outages and bridge restarts.

Rows are keyed in the order the store reads them: events and alerts by id, ends by (received_ns, event pk),
verifications by (done_ns, event pk).
Transactions commit in any order (MySQL runs several committers, and the fleet correlator writes alerts beside
them), so a row may become visible after rows with larger keys were sent. The follower therefore

- sends every row it reads that it has not sent yet, at once (no delay for the common case);
- remembers the keys it sent above the stored cursor;
- moves the cursor over a row only once it was sent and nothing can still appear below it: for ids, when the
  row's id follows the cursor's directly (no gap), or when the row was stored more than `settle_s` ago (a
  transaction that took a smaller id has committed by then, or never will: rolled back, or an INSERT IGNORE
  that burnt the id); for ends, whose keys are times, only after `settle_s`, and only over whole groups of one
  commit time.

A relay that is stopped cleanly keeps stepping until its cursors are past everything it sent (at most settle_s),
so a restart repeats nothing. After a crash the follower starts from the stored cursor, and what it had sent
above it (at most the last settle_s of rows, and for ids only rows behind a gap) goes out once more:
at-least-once, with the notes' stable delivery ids for the receiver to drop repeats. Every move of a cursor is a
compare-and-set from where the follower read it (and, in a relay, fenced by the relay's lease), so a follower that
another process overtook moves nothing and starts over from the stored cursor.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

from cloud_svc.store.outbound import OutboundStore
from edgert.notify.payloads import AlertNote, EventNote

log = logging.getLogger("cloud_svc.notify")

Note = Union[EventNote, AlertNote]


@dataclass(frozen=True)
class Item:
    key: tuple[int, int]     # the read order; key[0] is the cursor position this row stands at
    stored_ns: int           # when the row was stored (its transaction's commit time, give or take the commit)
    note: Note

    @property
    def pos(self) -> int:
        return self.key[0]


@dataclass(frozen=True)
class Stream:
    """A kind of row: how to read it after a position, where a new follower starts, and whether positions are
    ids (a position directly after the cursor's proves that nothing is missing below it)."""
    name: str
    read: Callable[[OutboundStore, int, int], list[Item]]   # (store, after position, limit) -> items in key order
    start: Callable[[OutboundStore], int]                   # position a follower seen for the first time starts at
    ids: bool


class Follower:
    """One stream for one transport: `pending()` reads what is to be sent, `sent()` records what was, and
    `advance()` moves the stored cursor as far as is safe."""

    def __init__(self, store: OutboundStore, stream: Stream, cursor_name: str, *, settle_s: float, batch: int):
        self.store = store
        self.stream = stream
        self.cursor_name = cursor_name
        self.settle_ns = int(settle_s * 1e9)
        self.batch = batch
        self.cursor: Optional[int] = None   # read from the database at the first pending()
        self._sent: set[tuple[int, int]] = set()
        self._read: list[Item] = []
        self._limit = batch
        self.count = 0                      # notes sent by this follower

    def reset(self) -> None:
        """Forgets the cursor and what was sent above it: the next pending() starts from the stored cursor (another
        bridge led meanwhile, or is about to)."""
        self.cursor = None
        self._sent = set()
        self._read = []
        self._limit = self.batch

    def begin(self) -> int:
        """The cursor: the stored one, or one started at the stream's head (what is stored from now on is sent)."""
        if self.cursor is None:
            self.cursor = self.store.cursor(self.cursor_name, self.stream.start(self.store))
            log.info("%s: following from %d", self.cursor_name, self.cursor)
        return self.cursor

    def pending(self) -> list[Item]:
        """The rows after the cursor not sent yet, in key order (at most `batch` of them beyond those sent)."""
        cursor = self.begin()
        self._limit = self.batch + len(self._sent)
        self._read = self.stream.read(self.store, cursor, self._limit)
        return [it for it in self._read if it.key not in self._sent]

    @property
    def full(self) -> bool:
        """The last read hit its limit: there is more to read right away."""
        return len(self._read) >= self._limit

    @property
    def unsettled(self) -> int:
        """Rows sent but not yet behind the stored cursor: what a restart now would send again."""
        return len(self._sent)

    def sent(self, items: Sequence[Item]) -> None:
        self._sent.update(it.key for it in items)
        self.count += len(items)

    def advance(self, now_ns: Optional[int] = None) -> bool:
        """Moves the stored cursor over the sent rows of the last read that nothing can still appear below, on its
        own (a relay moves all of its followers' cursors in one fenced transaction instead); True when it moved.
        When another process moved the cursor meanwhile, the follower starts over from the stored one."""
        pos = self.plan(now_ns)
        if pos is None or self.cursor is None:
            return False
        if not self.store.move_cursors([(self.cursor_name, self.cursor, pos)]):
            self.reset()
            return False
        self.moved(pos)
        return True

    def plan(self, now_ns: Optional[int] = None) -> Optional[int]:
        """Where the cursor can move: past the sent rows of the last read that nothing can still appear below;
        None when it stays."""
        if self.cursor is None:
            return None
        settled = (time.time_ns() if now_ns is None else now_ns) - self.settle_ns
        pos = self.cursor
        items = self._read
        for i, it in enumerate(items):
            if it.key not in self._sent:
                break
            if self.stream.ids and it.pos == pos + 1:
                pos = it.pos
                continue
            if it.stored_ns > settled:
                break
            if self.stream.ids:
                pos = it.pos
                continue
            # a time position is done once every row stored at that time was read and sent
            nxt = items[i + 1] if i + 1 < len(items) else None
            if nxt is not None and nxt.pos == it.pos:
                continue
            if nxt is None and self.full:
                break
            pos = it.pos
        return None if pos == self.cursor else pos

    def moved(self, pos: int) -> None:
        """The stored cursor is at `pos` now (plan()'s answer, committed)."""
        self.cursor = pos
        self._sent = {k for k in self._sent if k[0] > pos}
