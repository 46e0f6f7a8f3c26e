"""The signed webhook: one POST of a notification's JSON to one URL, retried until the receiver takes it.

Each request carries three headers: `X-Edgert-Delivery` (the notification's stable delivery id, so a receiver
drops the duplicates that at-least-once delivery brings), `X-Edgert-Timestamp` (Unix seconds) and, when a secret
is set, `X-Edgert-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body>`. The timestamp is inside the
signature, so a captured request cannot be replayed once it is older than the receiver's tolerance. A receiver
checks a request with `verify`, given the raw body bytes exactly as they arrived (before any JSON parsing):

    from edgert.notify.webhook import verify

    def on_post(headers, raw_body):                     # any framework: a headers mapping and the raw bytes
        if not verify(SECRET, headers, raw_body):       # wrong secret, altered body, or older than 5 minutes
            return 401                                  # 4xx: the sender gives up at once
        handle(json.loads(raw_body)); return 204        # 2xx: delivered; dedupe on headers["X-Edgert-Delivery"]

`WebhookSender.post` retries what may pass later (no connection, timeouts, 5xx, 408, 429 with Retry-After) with
the shared backoff and gives up only at its deadline or when told to stop (`NotifyUnavailable`: the caller keeps
the notification and tries again later); a receiver that refuses the request (other 4xx, 3xx) raises `NotifyError`
at once, since sending the same request again cannot help.
"""
from __future__ import annotations

import email.utils
import hashlib
import hmac
import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from edgert.backoff import Backoff
from edgert.errors import NotifyError, NotifyUnavailable

log = logging.getLogger("edgert.notify.webhook")

SIGNATURE_HEADER = "X-Edgert-Signature"
TIMESTAMP_HEADER = "X-Edgert-Timestamp"
DELIVERY_HEADER = "X-Edgert-Delivery"
SIGNATURE_SCHEME = "sha256="
DEFAULT_USER_AGENT = "edgert-webhook/1"
DEFAULT_TOLERANCE_S = 300.0
# Statuses that say "not now" rather than "not this": the same request may pass later.
RETRY_STATUSES = frozenset({408, 429})
ANSWER_CHARS = 200          # of a refusing receiver's answer, quoted in the error
ANSWER_READ_BYTES = 4096    # read no more than this of an answer: only its start is ever shown
BACKOFF_JITTER = 0.5        # waits drawn from [step/2, step]: spread, yet never a hot loop


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value: "sha256=" + hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)."""
    mac = hmac.new(_key(secret), f"{int(timestamp)}.".encode("ascii") + body, hashlib.sha256)
    return SIGNATURE_SCHEME + mac.hexdigest()


def verify(secret: str | bytes, headers: Mapping[str, str], body: bytes, *,
           tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """True when `headers` carry a signature of `body` under `secret` whose timestamp is within `tolerance_s` of
    `now` (default: the clock) in either direction. Header names are matched case-insensitively; a missing or
    malformed header is False, never an exception, so a receiver can answer 401 to anything that is not True."""
    if tolerance_s < 0:
        raise ValueError(f"tolerance_s must be at least 0, got {tolerance_s!r}")
    lower = {str(k).lower(): v for k, v in headers.items()}
    given, stamp = lower.get(SIGNATURE_HEADER.lower()), lower.get(TIMESTAMP_HEADER.lower())
    if not isinstance(given, str) or not isinstance(stamp, str):
        return False
    try:
        timestamp = int(stamp.strip())
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    # bytes on both sides: compare_digest refuses non-ASCII str, and a forged header may hold anything
    return hmac.compare_digest(expected.encode("ascii"), given.strip().encode("utf-8", "replace"))


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or an HTTP date), at least 0; None if absent or
    unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:  # an HTTP date is always GMT; a zoneless one is not one
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _shown(url: str) -> str:
    """The URL as logs and errors show it: any password in it replaced by ***."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port is not None else ""
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}{port}"))
    except ValueError:
        return url


def _check_url(url: Any) -> str:
    if not isinstance(url, str) or not url.strip():
        raise NotifyError(f"webhook URL {url!r} is empty: give an http:// or https:// URL")
    shown = _shown(url)
    if url != url.strip() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise NotifyError(f"webhook URL {shown!r} holds whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number in 0..65535
    except ValueError as err:
        raise NotifyError(f"webhook URL {shown!r} cannot be parsed: {err}") from None
    if parts.scheme.lower() not in ("http", "https"):
        what = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise NotifyError(f"webhook URL {shown!r} has {what}: only http:// and https:// are supported")
    if not parts.hostname:
        raise NotifyError(f"webhook URL {shown!r} has no host")
    if port == 0:
        raise NotifyError(f"webhook URL {shown!r} has port 0")
    return url


class WebhookSender:
    """POSTs JSON bodies to one URL, signed when a secret is set, retrying until delivered (see `post`).

    One sender holds one HTTP session (kept-alive connections); calls from several threads are safe but go out
    one request at a time. `close()` (or `with`) releases the connections.
    """

    def __init__(self, url: str, secret: str | bytes | None, *, timeout_s: float = 5.0,
                 retry_initial_s: float = 0.5, retry_max_s: float = 30.0,
                 user_agent: str = DEFAULT_USER_AGENT, rng: random.Random | None = None) -> None:
        self._url = _check_url(url)
        self.shown_url = _shown(url)
        if secret is not None and not _key(secret):
            raise NotifyError(f"webhook {self.shown_url}: the secret is empty; give one, or None to send unsigned")
        if not timeout_s > 0:
            raise NotifyError(f"webhook {self.shown_url}: timeout_s must be above 0, got {timeout_s!r}")
        if not 0 < retry_initial_s <= retry_max_s:
            raise NotifyError(f"webhook {self.shown_url}: retries need 0 < retry_initial_s <= retry_max_s, got "
                              f"{retry_initial_s!r} and {retry_max_s!r}")
        if not user_agent or any(c in user_agent for c in "\r\n"):
            raise NotifyError(f"webhook {self.shown_url}: user_agent {user_agent!r} is not a header value")
        self._secret = None if secret is None else _key(secret)
        self.timeout_s = float(timeout_s)
        self.retry_max_s = float(retry_max_s)
        self._backoff = Backoff(float(retry_initial_s), float(retry_max_s), jitter=BACKOFF_JITTER)
        self._rng = rng or random.Random()
        self._user_agent = user_agent
        self._session = requests.Session()
        self._lock = threading.Lock()  # requests.Session is not documented as thread-safe
        if self._secret is None:
            log.warning("webhook %s: no secret set, requests go out unsigned and receivers cannot check them",
                        self.shown_url)

    @property
    def signed(self) -> bool:
        return self._secret is not None

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, delivery_id: str) -> dict[str, str]:
        return {"Content-Type": "application/json", "User-Agent": self._user_agent, DELIVERY_HEADER: delivery_id}

    def post(self, body: bytes, delivery_id: str, *, stop: threading.Event | None = None,
             deadline_s: float | None = None) -> int:
        """POST `body` (JSON bytes) until a 2xx answer, whose status is returned.

        Every attempt is signed afresh with the current time. Connection errors, timeouts, 5xx, 408 and 429 are
        retried after a backoff step (or the Retry-After asked for, if longer; both capped at retry_max_s), each
        retry logged once at INFO. `deadline_s` is a budget in seconds from this call: NotifyUnavailable is raised
        once the next attempt could not start within it (at least one attempt is made), and also as soon as `stop`
        is set, before an attempt or during a wait. Any other answer (3xx, other 4xx) raises NotifyError at once,
        naming the URL, the status and the start of the answer. `delivery_id` goes out as X-Edgert-Delivery.
        """
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"webhook body must be bytes, got {type(body).__name__}")
        body = bytes(body)
        if not delivery_id or any(c in delivery_id for c in "\r\n\0"):
            raise NotifyError(f"webhook {self.shown_url}: delivery id {delivery_id!r} is not a header value")
        if deadline_s is not None and deadline_s < 0:
            raise ValueError(f"deadline_s must be at least 0, got {deadline_s!r}")
        stop = stop or threading.Event()
        started = time.monotonic()
        give_up = None if deadline_s is None else started + deadline_s
        attempt = 0
        while True:
            if stop.is_set():
                raise NotifyUnavailable(f"webhook {self.shown_url}: stopped before {delivery_id} was delivered "
                                        f"({attempt} attempts)")
            attempt += 1
            timeout = self.timeout_s
            if give_up is not None:  # an attempt never runs past the deadline
                timeout = max(0.05, min(timeout, give_up - time.monotonic()))
            status, reason, asked = self._attempt(body, delivery_id, timeout)
            if status is not None and 200 <= status < 300:
                if attempt > 1:
                    log.info("webhook %s: %s delivered on attempt %d (%.1f s)", self.shown_url, delivery_id,
                             attempt, time.monotonic() - started)
                return status
            wait = self._backoff.delay(attempt - 1, self._rng)
            if asked is not None:
                wait = max(wait, asked)
            wait = min(wait, self.retry_max_s)
            if give_up is not None and time.monotonic() + wait > give_up:
                raise NotifyUnavailable(f"webhook {self.shown_url}: {delivery_id} not delivered within "
                                        f"{deadline_s:g} s ({attempt} attempts; last: {reason})")
            log.info("webhook %s: attempt %d for %s failed (%s); retry in %.2f s", self.shown_url, attempt,
                     delivery_id, reason, wait)
            if stop.wait(wait):
                raise NotifyUnavailable(f"webhook {self.shown_url}: stopped before {delivery_id} was delivered "
                                        f"({attempt} attempts; last: {reason})")

    def _attempt(self, body: bytes, delivery_id: str, timeout: float) -> tuple[int | None, str, float | None]:
        """One POST: (status, why it is retried, Retry-After seconds) for a 2xx or a retryable outcome; raises
        NotifyError for an answer that retrying cannot change."""
        headers = self._headers(delivery_id)
        timestamp = int(time.time())
        headers[TIMESTAMP_HEADER] = str(timestamp)
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        with self._lock:
            try:
                # redirects are not followed: requests would turn a 301/302 POST into a GET and drop the body
                resp = self._session.post(self._url, data=body, headers=headers, timeout=timeout,
                                          allow_redirects=False, stream=True)
            except requests.Timeout:
                return None, f"no answer within {timeout:.1f} s", None
            except requests.ConnectionError as err:
                return None, f"cannot connect: {_first_line(err)}", None
            except requests.RequestException as err:  # e.g. a malformed answer: the next try may be fine
                return None, f"{type(err).__name__}: {_first_line(err)}", None
            try:
                status = resp.status_code
                if 200 <= status < 300:
                    return status, "", None
                answer = _start_of(resp)
                if status in RETRY_STATUSES or 500 <= status < 600:
                    asked = retry_after_s(resp.headers.get("Retry-After"))
                    return status, f"HTTP {status}{': ' + answer if answer else ''}", asked
            finally:
                resp.close()
        where = f" to {resp.headers.get('Location')}" if 300 <= status < 400 and resp.headers.get("Location") else ""
        raise NotifyError(f"webhook {self.shown_url} refused {delivery_id}: HTTP {status}{where}"
                          f"{': ' + repr(answer) if answer else ' (empty answer)'}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:ANSWER_CHARS] if text else type(err).__name__


def _start_of(resp: Any) -> str:
    """The first ANSWER_CHARS characters of an answer, read no further than needed."""
    try:
        raw = resp.raw.read(ANSWER_READ_BYTES, decode_content=True) or b""
    except Exception:  # the answer is only quoted: a broken one must not hide the status
        return ""
    try:
        text = raw.decode(resp.encoding or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        text = raw.decode("utf-8", "replace")
    return text.strip()[:ANSWER_CHARS]
