"""The clip store: content-addressed clip bytes in a folder (default) or an S3-compatible bucket (boto3, optional)."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, urlparse

from cloud_svc.errors import ClipMissing, ClipStoreError, ConfigError, InvalidMessage

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Upload:
    """One clip arriving in ordered pieces; `finish()` checks the hash and moves it into the store."""

    def __init__(self, store: "ClipStore", sha256: str, total: int):
        self.store, self.sha256, self.total = store, sha256, total
        self.received = 0
        self._hash = hashlib.sha256()
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=store.tmp_dir())
        self._fh = os.fdopen(fd, "wb")
        self.path = Path(name)

    def write(self, offset: int, data: bytes) -> bool:
        """Append one piece; True once the clip is complete and stored."""
        if offset != self.received:
            raise InvalidMessage("clip_chunk.offset", f"expected offset {self.received}, got {offset}")
        if offset + len(data) > self.total:
            raise InvalidMessage("clip_chunk.data", f"{offset + len(data)} bytes exceed total_size {self.total}")
        self._fh.write(data)
        self._hash.update(data)
        self.received += len(data)
        if self.received < self.total:
            return False
        self._fh.close()
        if self._hash.hexdigest() != self.sha256:
            self.path.unlink(missing_ok=True)
            raise InvalidMessage("clip_chunk.sha256", f"the {self.total} bytes received hash to "
                                                      f"{self._hash.hexdigest()}, not {self.sha256}")
        self.store._adopt(self.path, self.sha256)
        return True

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.path.unlink(missing_ok=True)


class ClipStore:
    """Content-addressed: a clip's key is its sha256, so writing the same clip twice is harmless."""

    scheme = ""

    def put(self, data: bytes) -> str:
        raise NotImplementedError

    def exists(self, sha256: str) -> bool:
        raise NotImplementedError

    def get(self, sha256: str) -> bytes:
        raise NotImplementedError

    def uri(self, sha256: str) -> str:
        raise NotImplementedError

    def tmp_dir(self) -> str:
        raise NotImplementedError

    def _adopt(self, tmp_path: Path, sha256: str) -> None:
        raise NotImplementedError

    def begin_upload(self, sha256: str, total: int) -> Upload:
        if not SHA256_RE.match(sha256):
            raise InvalidMessage("clip_chunk.sha256", "must be 64 lowercase hex digits")
        return Upload(self, sha256, total)


class FileClipStore(ClipStore):
    scheme = "file"

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        try:
            (self.root / ".tmp").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ClipStoreError(f"cannot create clip store {self.root}: {exc.strerror}") from exc

    def _path(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise ClipStoreError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def tmp_dir(self) -> str:
        return str(self.root / ".tmp")

    def _adopt(self, tmp_path: Path, sha256: str) -> None:
        dest = self._path(sha256)
        try:
            dest.parent.mkdir(exist_ok=True)
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, dest)  # atomic: readers see the whole clip or none
        except OSError as exc:
            tmp_path.unlink(missing_ok=True)
            raise ClipStoreError(f"cannot store clip {sha256}: {exc.strerror}") from exc

    def put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        if self.exists(sha):
            return sha
        try:
            fd, name = tempfile.mkstemp(prefix="put-", dir=self.tmp_dir())
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise ClipStoreError(f"cannot write clip {sha}: {exc.strerror}") from exc
        self._adopt(Path(name), sha)
        return sha

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def get(self, sha256: str) -> bytes:
        try:
            return self._path(sha256).read_bytes()
        except FileNotFoundError:
            raise ClipMissing(f"clip {sha256} is not in {self.root}") from None
        except OSError as exc:
            raise ClipStoreError(f"cannot read clip {sha256}: {exc.strerror}") from exc

    def uri(self, sha256: str) -> str:
        return self._path(sha256).as_uri()


class S3ClipStore(ClipStore):
    """s3://bucket/prefix[?endpoint=https://minio:9000&region=...]; credentials come from boto3's usual chain."""

    scheme = "s3"

    def __init__(self, url: str):
        u = urlparse(url)
        if not u.netloc:
            raise ConfigError(f"clip store {url!r}: needs a bucket, s3://BUCKET/PREFIX")
        try:
            import boto3  # optional: only deployments with an S3 clip store install it
        except ImportError:
            raise ConfigError("an s3:// clip store needs boto3: pip install boto3") from None
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        self.bucket, self.prefix = u.netloc, u.path.strip("/")
        self._client = boto3.client("s3", endpoint_url=q.get("endpoint"), region_name=q.get("region"))
        self._tmp = tempfile.mkdtemp(prefix="clipstore-")
        self._lock = threading.Lock()

    def _key(self, sha256: str) -> str:
        return f"{self.prefix}/{sha256[:2]}/{sha256}" if self.prefix else f"{sha256[:2]}/{sha256}"

    def tmp_dir(self) -> str:
        return self._tmp

    def _adopt(self, tmp_path: Path, sha256: str) -> None:
        try:
            self._client.upload_file(str(tmp_path), self.bucket, self._key(sha256))
        except Exception as exc:  # noqa: BLE001 - botocore raises many types
            raise ClipStoreError(f"cannot upload clip {sha256} to s3://{self.bucket}: {exc}") from exc
        finally:
            tmp_path.unlink(missing_ok=True)

    def put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(sha), Body=data)
        except Exception as exc:  # noqa: BLE001
            raise ClipStoreError(f"cannot upload clip {sha} to s3://{self.bucket}: {exc}") from exc
        return sha

    @staticmethod
    def _not_found(exc: Exception) -> bool:
        """True for S3's 'no such key' answers (404 / NoSuchKey), False for outages, refusals and the rest."""
        err = getattr(exc, "response", None) or {}
        code = str(err.get("Error", {}).get("Code", ""))
        status = err.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in ("404", "NoSuchKey", "NotFound") or status == 404

    def exists(self, sha256: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(sha256))
            return True
        except Exception as exc:  # noqa: BLE001 - botocore raises many types
            if self._not_found(exc):
                return False
            raise ClipStoreError(f"cannot reach s3://{self.bucket} to look for clip {sha256}: {exc}") from exc

    def get(self, sha256: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(sha256))["Body"].read()
        except Exception as exc:  # noqa: BLE001
            if self._not_found(exc):
                raise ClipMissing(f"clip {sha256} is not in s3://{self.bucket}/{self.prefix}") from exc
            raise ClipStoreError(f"cannot read clip {sha256} from s3://{self.bucket}: {exc}") from exc

    def uri(self, sha256: str) -> str:
        return f"s3://{self.bucket}/{self._key(sha256)}"


def default_root(db_url: str) -> Path:
    """clips/ beside a SQLite database file, else ./clips."""
    from sqlalchemy.engine import make_url

    u = make_url(db_url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        return Path(u.database).expanduser().resolve().parent / "clips"
    return Path("clips").resolve()


def open_store(spec: Optional[str], db_url: str) -> ClipStore:
    if spec and spec.startswith("s3://"):
        return S3ClipStore(spec)
    if spec and spec.startswith("file://"):
        return FileClipStore(urlparse(spec).path)
    return FileClipStore(spec or default_root(db_url))
