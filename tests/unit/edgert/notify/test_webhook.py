"""edgert.notify.webhook: signed POSTs that a receiver can check, retried through errors and outages, refused 4xx
raised at once. Every test talks HTTP to a real local server on a free loopback port."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgert.errors import NotifyError, NotifyUnavailable
from edgert.notify.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    retry_after_s,
    sign,
    verify,
)

SECRET = "s3cret-for-tests"
LOGGER = "edgert.notify.webhook"


@dataclass
class Got:
    at: float                   # time.monotonic() when the request arrived
    path: str
    headers: dict[str, str]     # as sent (original case)
    body: bytes


@dataclass
class Receiver:
    """What the server got, and what it answers: scripted (status, headers, text) answers first, then 200."""
    answers: deque = field(default_factory=deque)
    delay_s: float = 0.0
    got: list[Got] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Event = field(default_factory=threading.Event)

    def take(self, got: Got) -> tuple[int, dict[str, str], str]:
        with self.lock:
            self.got.append(got)
            answer = self.answers.popleft() if self.answers else (200, {}, "ok")
        self.arrived.set()
        return answer

    def delivered(self) -> list[Got]:
        with self.lock:
            return list(self.got)


def _handler(recv: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so stopping the server really ends every connection to it
        def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got = Got(time.monotonic(), self.path, dict(self.headers.items()), body)
            if recv.delay_s:
                time.sleep(recv.delay_s)
            status, headers, text = recv.take(got)
            data = text.encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class Server:
    """A ThreadingHTTPServer in a thread; stop() closes the port, start() again binds the same one."""

    def __init__(self, recv: Receiver) -> None:
        self.recv, self.port = recv, 0
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Server:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self.recv))
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            assert self.thread is not None
            self.thread.join(5)
            self.httpd = None


@pytest.fixture
def recv() -> Receiver:
    return Receiver()


@pytest.fixture
def server(recv):
    srv = Server(recv).start()
    yield srv
    srv.stop()


def _sender(url: str, secret: str | None = SECRET, **kw) -> WebhookSender:
    kw = {"timeout_s": 2.0, "retry_initial_s": 0.05, "retry_max_s": 0.5, **kw}
    return WebhookSender(url, secret, **kw)


def _alert(n: int) -> tuple[bytes, str]:
    delivery = f"alert/dev-{n % 3}/{n}"
    return json.dumps({"v": 1, "type": "alert", "seq": n, "delivery": delivery}, sort_keys=True).encode(), delivery


def _retry_logs(caplog) -> list[int]:
    """The attempt numbers of the retry lines logged."""
    return [int(m.group(1)) for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO
            for m in [re.search(r"attempt (\d+) for .* failed", r.getMessage())] if m]


# --- the signature --------------------------------------------------------------------------------------------


def test_sign_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"a":1}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", 1700000000, body) == "sha256=" + expected
    assert sign(b"k", 1700000000, body) == sign("k", 1700000000, body)
    assert sign("k", 1700000001, body) != sign("k", 1700000000, body)  # the timestamp is signed


def test_the_receiver_verifies_what_was_sent_and_nothing_else(server, recv):
    body, delivery = _alert(1)
    with _sender(server.url) as s:
        assert s.post(body, delivery) == 200
    [got] = recv.delivered()
    assert got.path == "/hook" and got.body == body
    h = got.headers
    assert h["Content-Type"] == "application/json"
    assert h[DELIVERY_HEADER] == delivery
    ts = int(h[TIMESTAMP_HEADER])
    assert abs(ts - time.time()) < 5
    assert h[SIGNATURE_HEADER] == sign(SECRET, ts, body)
    assert verify(SECRET, h, got.body)
    assert verify(SECRET, {k.lower(): v for k, v in h.items()}, got.body)  # header names in any case
    assert verify(SECRET, {k.upper(): v for k, v in h.items()}, got.body)
    assert not verify("wrong-secret", h, got.body)
    assert not verify(SECRET, h, got.body + b" ")
    assert not verify(SECRET, h, got.body.replace(b"1", b"2"))
    # the same request replayed later, or stamped in the future, is refused
    assert verify(SECRET, h, got.body, now=ts + 299)
    assert not verify(SECRET, h, got.body, now=ts + 301)
    assert not verify(SECRET, h, got.body, now=ts - 301)
    assert not verify(SECRET, h, got.body, now=ts + 61, tolerance_s=60)
    # a timestamp moved forward to pass the tolerance breaks the signature
    assert not verify(SECRET, {**h, TIMESTAMP_HEADER: str(ts + 1000)}, got.body, now=ts + 1000)


@pytest.mark.parametrize("headers", [
    {},
    {TIMESTAMP_HEADER: "1700000000"},
    {SIGNATURE_HEADER: sign(SECRET, 1700000000, b"{}")},
    {SIGNATURE_HEADER: sign(SECRET, 1700000000, b"{}"), TIMESTAMP_HEADER: "yesterday"},
    {SIGNATURE_HEADER: "sha256=\u00e9\u00e9", TIMESTAMP_HEADER: "1700000000"},
    {SIGNATURE_HEADER: sign(SECRET, 1700000000, b"{}")[7:], TIMESTAMP_HEADER: "1700000000"},  # no scheme
])
def test_missing_or_malformed_headers_do_not_verify(headers):
    assert verify(SECRET, headers, b"{}", now=1700000000) is False


def test_without_a_secret_requests_go_unsigned_but_stamped(server, recv, caplog):
    body, delivery = _alert(2)
    with caplog.at_level(logging.WARNING, LOGGER):
        s = _sender(server.url, secret=None)
    assert not s.signed
    assert any("unsigned" in r.getMessage() for r in caplog.records)
    assert s.post(body, delivery) == 200
    s.close()
    [got] = recv.delivered()
    assert SIGNATURE_HEADER not in got.headers
    assert got.headers[DELIVERY_HEADER] == delivery and got.headers[TIMESTAMP_HEADER].isdigit()


# --- retries ---------------------------------------------------------------------------------------------------


def test_a_500_is_retried_and_the_second_answer_counts(server, recv, caplog):
    recv.answers.extend([(500, {}, "database down")])
    body, delivery = _alert(3)
    with caplog.at_level(logging.INFO, LOGGER), _sender(server.url) as s:
        assert s.post(body, delivery) == 200
    got = recv.delivered()
    assert [g.body for g in got] == [body, body]
    assert [g.headers[DELIVERY_HEADER] for g in got] == [delivery, delivery]
    assert all(verify(SECRET, g.headers, g.body) for g in got)
    assert _retry_logs(caplog) == [1]
    assert any("HTTP 500" in r.getMessage() and "database down" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("status", [408, 502, 503])
def test_other_passing_failures_are_retried(server, recv, status):
    recv.answers.extend([(status, {}, "")] * 2)
    body, delivery = _alert(4)
    with _sender(server.url) as s:
        assert s.post(body, delivery) == 200
    assert len(recv.delivered()) == 3


def test_429_retry_after_is_honoured_and_each_attempt_is_signed_afresh(server, recv):
    recv.answers.append((429, {"Retry-After": "1"}, "slow down"))
    body, delivery = _alert(5)
    with _sender(server.url, retry_initial_s=0.05, retry_max_s=5.0) as s:
        assert s.post(body, delivery) == 200
    first, second = recv.delivered()
    assert second.at - first.at >= 0.95  # the backoff alone would have waited at most 0.05 s
    assert second.at - first.at < 3.0
    t1, t2 = int(first.headers[TIMESTAMP_HEADER]), int(second.headers[TIMESTAMP_HEADER])
    assert t2 > t1 and first.headers[SIGNATURE_HEADER] != second.headers[SIGNATURE_HEADER]
    assert verify(SECRET, second.headers, second.body, tolerance_s=0, now=t2)


def test_retry_after_is_capped_at_retry_max(server, recv):
    recv.answers.append((503, {"Retry-After": "3600"}, ""))
    t0 = time.monotonic()
    with _sender(server.url, retry_max_s=0.3) as s:
        assert s.post(*_alert(6)) == 200
    assert time.monotonic() - t0 < 2.0 and len(recv.delivered()) == 2


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_s("7") == 7.0 and retry_after_s(" 0 ") == 0.0 and retry_after_s("-3") == 0.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412500.0) == 0.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None and retry_after_s("") is None


# --- refusals --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status, text", [(400, "bad json: expected object"), (401, "signature mismatch"),
                                          (404, ""), (410, "gone"), (301, "")])
def test_a_refusal_raises_at_once_with_url_status_and_answer(server, recv, status, text):
    headers = {"Location": "https://elsewhere.example/hook"} if status == 301 else {}
    recv.answers.append((status, headers, text + " " + "x" * 500 if text else ""))
    t0 = time.monotonic()
    with _sender(server.url) as s, pytest.raises(NotifyError) as info:
        s.post(*_alert(7))
    assert type(info.value) is NotifyError  # not NotifyUnavailable: the caller must not retry it
    assert time.monotonic() - t0 < 1.0
    assert len(recv.delivered()) == 1
    msg = str(info.value)
    assert server.url in msg and f"HTTP {status}" in msg and "alert/dev-1/7" in msg
    if text:
        assert text in msg and "x" * 300 not in msg  # the answer's start, not all of it
    if status == 301:
        assert "elsewhere.example" in msg


@pytest.mark.parametrize("url, problem", [
    ("ftp://example.com/hook", "scheme 'ftp'"),
    ("example.com/hook", "no scheme"),
    ("http://", "no host"),
    ("https:///hook", "no host"),
    ("http://example.com:99999/hook", "cannot be parsed"),
    ("http://example.com:port/hook", "cannot be parsed"),
    ("http://exa mple.com/hook", "whitespace"),
    ("", "empty"),
])
def test_a_bad_url_fails_at_construction(url, problem):
    with pytest.raises(NotifyError) as info:
        WebhookSender(url, SECRET)
    assert problem in str(info.value) and repr(url) in str(info.value)


def test_a_password_in_the_url_is_never_shown():
    with pytest.raises(NotifyError) as info:
        WebhookSender("ftp://user:hunter2@example.com/hook", SECRET)
    assert "hunter2" not in str(info.value) and "user:***@example.com" in str(info.value)
    assert "hunter2" not in WebhookSender("https://user:hunter2@example.com:8443/h", SECRET).shown_url


@pytest.mark.parametrize("kw, what", [({"secret": ""}, "secret is empty"), ({"timeout_s": 0}, "timeout_s"),
                                      ({"retry_initial_s": 2.0, "retry_max_s": 1.0}, "retry_initial_s"),
                                      ({"user_agent": "a\r\nX-Evil: 1"}, "user_agent")])
def test_nonsense_settings_fail_at_construction(kw, what):
    kw = {"secret": SECRET, **kw}
    with pytest.raises(NotifyError, match=what):
        WebhookSender("http://127.0.0.1:9/hook", **kw)


# --- giving up: deadline and stop ------------------------------------------------------------------------------


def test_a_deadline_gives_up_with_notify_unavailable(server):
    url = server.url
    server.stop()  # nothing listens on the port now
    t0 = time.monotonic()
    with _sender(url, retry_initial_s=0.05, retry_max_s=0.2) as s, pytest.raises(NotifyUnavailable) as info:
        s.post(*_alert(8), deadline_s=1.0)
    took = time.monotonic() - t0
    assert 0.7 <= took <= 1.5
    assert "within 1 s" in str(info.value) and "cannot connect" in str(info.value)


def test_a_receiver_that_never_answers_times_out_and_counts_against_the_deadline(server, recv):
    recv.delay_s = 3.0
    t0 = time.monotonic()
    with _sender(server.url, timeout_s=0.3) as s, pytest.raises(NotifyUnavailable, match="no answer within"):
        s.post(*_alert(9), deadline_s=1.0)
    assert time.monotonic() - t0 < 2.0


def test_stop_interrupts_a_retry_wait_promptly(server, recv):
    recv.answers.append((503, {"Retry-After": "30"}, "maintenance"))
    stop = threading.Event()
    outcome: list[BaseException | int] = []

    def run() -> None:
        try:
            with _sender(server.url, retry_max_s=30.0) as s:
                outcome.append(s.post(*_alert(10), stop=stop))
        except BaseException as err:  # noqa: B036 - handed to the test thread
            outcome.append(err)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert recv.arrived.wait(5)
    time.sleep(0.2)  # now inside the 30 s wait
    assert t.is_alive()
    t0 = time.monotonic()
    stop.set()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - t0 < 0.5
    [err] = outcome
    assert isinstance(err, NotifyUnavailable) and "stopped" in str(err) and "HTTP 503" in str(err)
    assert len(recv.delivered()) == 1


def test_a_set_stop_sends_nothing(server, recv):
    stop = threading.Event()
    stop.set()
    with _sender(server.url) as s, pytest.raises(NotifyUnavailable, match="stopped"):
        s.post(*_alert(11), stop=stop)
    assert recv.delivered() == []


# --- the outage ------------------------------------------------------------------------------------------------


def test_no_alert_is_lost_during_a_10_s_outage(server, recv, caplog):
    """The receiver goes away for 10 s while 20 alerts are posted one after another; all 20 arrive once it is
    back, in order, and soon after."""
    alerts = [_alert(n) for n in range(20)]
    outage_s, retry_max_s = 10.0, 1.0
    results: list[int] = []
    failures: list[BaseException] = []

    def post_all(sender: WebhookSender) -> None:
        try:
            for body, delivery in alerts:
                results.append(sender.post(body, delivery))
        except BaseException as err:  # noqa: B036 - handed to the test thread
            failures.append(err)

    sender = _sender(server.url, retry_initial_s=0.05, retry_max_s=retry_max_s)
    server.stop()  # the port is closed
    t = threading.Thread(target=post_all, args=(sender,), daemon=True)
    with caplog.at_level(logging.INFO, LOGGER):
        down_at = time.monotonic()
        t.start()
        time.sleep(outage_s)
        assert t.is_alive() and results == [] and failures == []  # still retrying the first one
        server.start()  # the same port again
        up_at = time.monotonic()
        t.join(retry_max_s + 10.0)
    sender.close()
    assert not t.is_alive(), "the sender did not finish after the receiver came back"
    assert failures == []
    assert results == [200] * 20
    got = recv.delivered()
    by_id = {g.headers[DELIVERY_HEADER]: g for g in got}
    assert sorted(by_id) == sorted(d for _, d in alerts)  # none lost
    assert len(got) == 20  # and, as nothing failed mid-request, none twice
    assert [g.headers[DELIVERY_HEADER] for g in got] == [d for _, d in alerts]  # in order
    assert all(by_id[d].body == b and verify(SECRET, by_id[d].headers, b) for b, d in alerts)
    # the first one arrived within one capped backoff step (plus slack) of the receiver's return
    assert got[0].at - up_at < retry_max_s + 1.0
    assert got[-1].at - up_at < retry_max_s + 5.0
    # one log line per retry, numbered 1, 2, 3...: the capped steps mean about 10-20 of them in 10 s
    attempts = _retry_logs(caplog)
    assert attempts == list(range(1, len(attempts) + 1))
    assert outage_s / retry_max_s <= len(attempts) <= outage_s / (retry_max_s * 0.5) + 15
    assert up_at - down_at >= outage_s
