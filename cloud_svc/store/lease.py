"""Leadership among processes over one database: a lease kept in a row of `cursors`, taken, renewed, checked and
given back by compare-and-set, for the workers that must run once per database (the fleet correlator, the
notification bridge), and the cursor reads they share."""
from __future__ import annotations

import time
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_svc.schema import cursors
from cloud_svc.store.base import Database

LEASE_SUFFIX = ":leader"  # the lease of the work that keeps cursor C is the row C + LEASE_SUFFIX of `cursors`


def cursor_value(db: Database, conn: Connection, name: str, *, create: bool = False, start: int = 0,
                 skip_locked: bool = False) -> Optional[int]:
    """The value of a row of `cursors` (created at `start` first if asked and absent); None when absent, or when
    skip_locked finds the row held by another transaction. The row is created only when a plain read misses it:
    an INSERT IGNORE of an existing row would lock it, and on Galera a lock a follower holds is one the leader's
    replicated write aborts."""
    q = sa.select(cursors.c.value).where(cursors.c.name == name)
    value = conn.scalar(q.with_for_update(skip_locked=True) if skip_locked else q)
    if value is None and create:
        conn.execute(db.insert_ignore(cursors).values(name=name, value=int(start)))
        value = conn.scalar(q)
    return None if value is None else int(value)


class Lease:
    """One holder's view of a lease: the row `name` of `cursors`, whose value is the lease's expiry (ns since the
    epoch; 0 when free), and `token`, the value this holder last committed to it.

    The token proves the lease: whoever takes or renews it writes a new value, larger than the last, by
    compare-and-set from the value it read, so a holder whose token is no longer in the row has lost it, and two
    candidates can never both take it (on one server the second UPDATE finds the value changed; across Galera
    nodes both write the row and certification lets one commit). Work that only the leader may do is fenced by
    `fence()` in its own transaction: it renews from the token, so it commits only while this holder still leads,
    and a takeover committed elsewhere conflicts with it. Expiries compare the clocks of the servers, which NTP
    keeps far closer than a lease.
    """

    def __init__(self, db: Database, name: str, lease_s: float):
        if lease_s <= 0:
            raise ValueError(f"a lease must last a positive time, got {lease_s!r} s")
        self.db = db
        self.name = name
        self.lease_ns = int(lease_s * 1e9)
        self.token: Optional[int] = None

    # ------------------------------------------------------------------------ inside a caller's transaction
    def candidate(self, conn: Connection, now: int) -> Optional[int]:
        """The row's value when this holder may lead now (it holds the lease, or the lease is free or expired);
        None while another holder's lease runs. Only reads, creating the row (free) when it is absent."""
        held = cursor_value(self.db, conn, self.name, create=True)
        assert held is not None  # created above
        return None if held != self.token and held > now else held

    def take(self, conn: Connection, held: int, now: int) -> Optional[int]:
        """Renews or takes the lease from `held` (what candidate() returned): the token to lead with once the
        transaction commits, or None when another holder changed the row first. A lease of this holder's with
        more than half of it left is kept as it is, without a write."""
        if held == self.token and held - now > self.lease_ns // 2:
            return held
        return self._swap(conn, held, now)

    def fence(self, conn: Connection, now: int) -> Optional[int]:
        """Renews the lease from this holder's token, in a transaction that writes what only the leader may:
        the new token (to pass to committed() once the transaction commits), or None when this holder no
        longer holds it, and the caller must roll back. It always writes the row, so that a takeover committed
        on another Galera node and this transaction conflict, and only one of them commits."""
        return None if self.token is None else self._swap(conn, self.token, now)

    def committed(self, token: Optional[int]) -> None:
        """Records the token a committed take() or fence() wrote (None: this holder lost the lease)."""
        self.token = token

    def _swap(self, conn: Connection, held: int, now: int) -> Optional[int]:
        new = max(now + self.lease_ns, held + 1)
        moved = conn.execute(cursors.update().where(cursors.c.name == self.name, cursors.c.value == held)
                             .values(value=new))
        return new if moved.rowcount == 1 else None

    # ------------------------------------------------------------------------ in transactions of its own
    def hold(self, now: Optional[int] = None) -> bool:
        """Leads if it can (renewing or taking the lease as needed) and says whether it does. While another
        holder's lease runs, and while this holder's own has more than half left, it only reads: a holder
        standing by polls without taking a write lock (SQLite) or writing anything (Galera)."""
        now = time.time_ns() if now is None else now
        with self.db.read() as conn:
            held = cursor_value(self.db, conn, self.name)
        if held is not None and held > now and (held != self.token or held - now > self.lease_ns // 2):
            if held != self.token:
                self.token = None
            return self.token is not None
        with self.db.write() as conn:
            held = self.candidate(conn, now)
            token = None if held is None else self.take(conn, held, now)
        self.token = token
        return token is not None

    def release(self) -> None:
        """Gives the lease up (a clean stop), so that another holder takes it at its next try instead of after
        it runs out. Nothing happens when this holder does not hold it."""
        token, self.token = self.token, None
        if token is None:
            return
        with self.db.write() as conn:
            conn.execute(cursors.update().where(cursors.c.name == self.name, cursors.c.value == token)
                         .values(value=0))

    @property
    def remaining_ns(self) -> int:
        """How long the lease this holder last committed runs from now (by this server's clock; <= 0 when it ran
        out, or is not held)."""
        return 0 if self.token is None else self.token - time.time_ns()
