"""Query API users: a name, a role (reader or admin) and a bearer token of which only the sha256 is stored.

Users are people, dashboards and scripts that read through the Query API. They live apart from devices: a
device token is never a Query credential, and a user token is never accepted on Ingest."""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from cloud_svc.errors import AlreadyExists, InvalidMessage, NotFound, Unauthenticated
from cloud_svc.schema import users
from cloud_svc.store.base import Database
from cloud_svc.store.devices import TOKEN_BYTES, TOKEN_PREFIX, hash_token

ROLES = ("reader", "admin")
USER_TOKEN_PREFIX = "erq_"  # device tokens start with TOKEN_PREFIX ("ert_"): the two are told apart at a glance
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    created_ns: int
    token_issued_ns: int
    revoked: bool


def new_user_token() -> str:
    return USER_TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def _check(name: str, role: str) -> None:
    if not NAME.match(name or ""):
        raise InvalidMessage("name", f"{name!r}: 1-128 letters, digits, '.', '_', '@' or '-', starting with a letter "
                                     "or digit")
    if role not in ROLES:
        raise InvalidMessage("role", f"{role!r} is not one of {list(ROLES)}")


class UserStore:
    def __init__(self, db: Database):
        self.db = db

    def add(self, name: str, role: str) -> str:
        """Create a user and return its token (only its hash is stored)."""
        _check(name, role)
        token, now = new_user_token(), time.time_ns()
        with self.db.write() as conn:
            if conn.scalar(sa.select(users.c.name).where(users.c.name == name)) is not None:
                raise AlreadyExists(f"user {name!r} exists; use `users rotate {name}` for a new token")
            conn.execute(users.insert().values(name=name, role=role, token_hash=hash_token(token), created_ns=now,
                                               token_issued_ns=now))
        return token

    def rotate(self, name: str) -> str:
        """A new token for a user; the old one stops working at once (a revoked user is reinstated)."""
        token = new_user_token()
        with self.db.write() as conn:
            n = conn.execute(users.update().where(users.c.name == name).values(
                token_hash=hash_token(token), token_issued_ns=time.time_ns(), revoked_ns=None)).rowcount
        if not n:
            raise NotFound(f"no user {name!r}")
        return token

    def revoke(self, name: str) -> None:
        with self.db.write() as conn:
            # the hash is replaced by one no token has, so the unique column keeps working
            n = conn.execute(users.update().where(users.c.name == name).values(
                revoked_ns=time.time_ns(), token_hash=hash_token(secrets.token_hex(32)))).rowcount
        if not n:
            raise NotFound(f"no user {name!r}")

    def list(self) -> list[User]:
        with self.db.read() as conn:
            return [User(r.name, r.role, int(r.created_ns), int(r.token_issued_ns), r.revoked_ns is not None)
                    for r in conn.execute(sa.select(users).order_by(users.c.name))]

    def active_count(self) -> int:
        with self.db.read() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(users).where(users.c.revoked_ns.is_(None)))
                       or 0)

    def authenticate(self, token: str) -> User:
        """The user a bearer token belongs to; Unauthenticated otherwise, saying so when it is a device's."""
        if not token:
            raise Unauthenticated("the Query API needs a user's token: 'authorization: Bearer <token>' "
                                  "(create one with `python -m cloud_svc users add NAME --role reader`)")
        with self.db.read() as conn:
            r = conn.execute(sa.select(users).where(users.c.token_hash == hash_token(token))).first()
        if r is None or r.revoked_ns is not None:
            if token.startswith(TOKEN_PREFIX):
                raise Unauthenticated("a device token is not a Query credential; use a user's token "
                                      "(`python -m cloud_svc users add NAME --role reader`)")
            raise Unauthenticated("unknown or revoked Query token")
        return User(r.name, r.role, int(r.created_ns), int(r.token_issued_ns), False)

    def get(self, name: str) -> Optional[User]:
        return next((u for u in self.list() if u.name == name), None)
