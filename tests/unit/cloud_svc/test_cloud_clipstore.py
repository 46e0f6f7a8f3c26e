"""The file clip store: content-addressed, atomic, and strict about uploads."""
from __future__ import annotations

import hashlib
import os

import pytest

from cloud_svc.clipstore import FileClipStore, default_root, open_store
from cloud_svc.errors import ClipMissing, ConfigError, InvalidMessage


def test_put_is_content_addressed_and_idempotent(tmp_path):
    s = FileClipStore(tmp_path)
    data = os.urandom(1000)
    sha = s.put(data)
    assert sha == hashlib.sha256(data).hexdigest() and s.put(data) == sha
    assert s.get(sha) == data and s.exists(sha) and s.uri(sha).startswith("file://")
    assert not list((tmp_path / ".tmp").iterdir())
    with pytest.raises(ClipMissing):
        s.get("0" * 64)


def test_an_upload_in_pieces_is_stored_once_complete(tmp_path):
    s = FileClipStore(tmp_path)
    data = os.urandom(10_000)
    sha = hashlib.sha256(data).hexdigest()
    up = s.begin_upload(sha, len(data))
    assert up.write(0, data[:4000]) is False and not s.exists(sha)
    assert up.write(4000, data[4000:]) is True
    assert s.get(sha) == data


def test_an_upload_out_of_order_too_long_or_with_the_wrong_hash_fails(tmp_path):
    s = FileClipStore(tmp_path)
    up = s.begin_upload("a" * 64, 10)
    with pytest.raises(InvalidMessage, match="clip_chunk.offset"):
        up.write(3, b"abc")
    with pytest.raises(InvalidMessage, match="clip_chunk.data"):
        up.write(0, b"x" * 11)
    with pytest.raises(InvalidMessage, match="clip_chunk.sha256"):
        up.write(0, b"x" * 10)
    assert not s.exists("a" * 64) and not list((tmp_path / ".tmp").iterdir())
    with pytest.raises(InvalidMessage):
        s.begin_upload("not-a-hash", 10)


def test_the_default_store_sits_beside_a_sqlite_file(tmp_path):
    assert default_root(f"sqlite:///{tmp_path}/x/cloud.db") == tmp_path / "x" / "clips"
    assert isinstance(open_store(f"file://{tmp_path}/c", "sqlite://"), FileClipStore)


def test_an_s3_store_needs_boto3_or_says_so(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)  # as on a deployment without the optional package
    with pytest.raises(ConfigError, match="boto3"):
        open_store("s3://bucket/prefix", "sqlite://")
