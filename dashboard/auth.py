"""HTTP basic auth over every page, callback and file, with werkzeug password hashes; and who is reviewing."""
from __future__ import annotations

import getpass
from typing import Optional

import flask
from werkzeug.security import check_password_hash, generate_password_hash

from dashboard.config import AuthConfig

PASSWORD_METHOD = "scrypt"


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=PASSWORD_METHOD)


def install(server: flask.Flask, cfg: AuthConfig) -> None:
    """Every request needs a configured user's name and password (nothing is installed without users)."""
    if not cfg.users:
        return
    users = dict(cfg.users)
    decoy = hash_password("an unknown user's password is checked against this, so timing tells no names")

    @server.before_request
    def _basic_auth():
        a = flask.request.authorization
        if a is not None and a.type == "basic" and a.password is not None:
            known = a.username in users
            ok = check_password_hash(users[a.username] if known else decoy, a.password)
            if known and ok:
                flask.g.user = a.username
                return None
        return flask.Response("sign in with a dashboard user (auth.users in the dashboard config)\n", 401,
                              {"WWW-Authenticate": f'Basic realm="{cfg.realm}", charset="UTF-8"'})


def current_user() -> Optional[str]:
    """The signed-in user of this request (None when the dashboard runs without auth on loopback)."""
    try:
        return flask.g.get("user")
    except RuntimeError:  # outside a request
        return None


def local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"
