"""The store's device registry: tokens authenticate, rotate and revoke; only their hashes are stored."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from cloud_svc.errors import AlreadyExists, NotFound, Unauthenticated


def test_tokens_authenticate_rotate_and_revoke(store):
    token = store.devices.add_device("lamp-1")
    assert store.devices.authenticate(token) == "lamp-1"
    with pytest.raises(AlreadyExists):
        store.devices.add_device("lamp-1")
    new = store.devices.rotate_token("lamp-1")
    with pytest.raises(Unauthenticated):
        store.devices.authenticate(token)
    assert store.devices.authenticate(new) == "lamp-1"
    store.devices.revoke_device("lamp-1")
    with pytest.raises(Unauthenticated):
        store.devices.authenticate(new)
    with pytest.raises(Unauthenticated):
        store.devices.authenticate("")
    with pytest.raises(NotFound):
        store.devices.revoke_device("nobody")


def test_only_a_hash_of_the_token_is_stored(store):
    token = store.devices.add_device("lamp-1")
    with store.engine.connect() as c:
        dump = " ".join(str(v) for row in c.execute(sa.text("SELECT * FROM devices")) for v in row)
    assert token not in dump and token[4:] not in dump
