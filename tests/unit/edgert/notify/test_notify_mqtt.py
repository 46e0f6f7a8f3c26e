"""The MQTT publisher against a real Mosquitto: delivery at QoS 1 with PUBACK, clear errors for refused credentials
and an unreachable broker, reconnection after the broker restarts, and the will when the publisher dies."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
from mosquitto import Collector, Mosquitto

from edgert.errors import NotifyError, NotifyUnavailable
from edgert.notify.config import MqttConfig
from edgert.notify.mqtt import BrokerUrl, MqttPublisher, parse_broker
from support import env_with_repo


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker", users={"edge": "s3cret"}) as b:
        yield b


def publisher(broker, *, password="s3cret", **kw) -> MqttPublisher:
    cfg = MqttConfig(broker=broker.url, username="edge", password=password, retry_initial_s=0.1, retry_max_s=0.5,
                     publish_timeout_s=5)
    return MqttPublisher(cfg, client_id=f"test-{time.monotonic_ns()}", **kw)


@pytest.mark.parametrize("url, want", [
    ("mqtt://h", BrokerUrl("mqtt", "h", 1883)),
    ("mqtts://h", BrokerUrl("mqtts", "h", 8883)),
    ("mqtt://u:p%40ss@10.0.0.1:1884", BrokerUrl("mqtt", "10.0.0.1", 1884, "u", "p@ss")),
    ("mqtt://[::1]:1885/", BrokerUrl("mqtt", "::1", 1885)),
])
def test_broker_urls_parse_with_default_ports_and_decoded_credentials(url, want):
    assert parse_broker(url) == want


@pytest.mark.parametrize("url, match", [
    ("", "no MQTT broker"), ("http://h:1883", "mqtt://"), ("mqtt://", "no host"), ("mqtt://h:99999", "not valid"),
    ("mqtt://h:1883/topic", "only scheme"), ("h:1883", "mqtt://"),
])
def test_bad_broker_urls_are_refused_clearly(url, match):
    with pytest.raises(NotifyError, match=match):
        parse_broker(url)


def test_a_broker_url_never_shows_its_password():
    assert str(parse_broker("mqtt://u:hunter2@h:1")) == "mqtt://h:1"
    with pytest.raises(NotifyError) as e:
        parse_broker("ftp://u:hunter2@h")
    assert "hunter2" not in str(e.value)


def test_published_messages_arrive_once_in_order_with_their_retain_flag(broker):
    with Collector(broker.url, ["edgert/#"], username="edge", password="s3cret") as c, publisher(broker) as pub:
        pub.connect()
        assert pub.connected and pub.connections == 1
        pub.publish("edgert/d/status", b"s", retain=True)
        pub.publish_many([("edgert/d/event", str(i).encode(), False) for i in range(200)])
        got = c.wait_for(lambda m: len(m) >= 201)
        assert got[0] == ("edgert/d/status", b"s", False)  # live delivery to an existing subscriber clears retain
        assert [m[1] for m in got[1:]] == [str(i).encode() for i in range(200)]
    with Collector(broker.url, ["edgert/d/status"], username="edge", password="s3cret") as late:
        assert late.wait_for(lambda m: len(m) == 1) == [("edgert/d/status", b"s", True)]


def test_a_wrong_password_is_a_permanent_error_naming_the_broker(broker):
    with pytest.raises(NotifyError) as e:
        publisher(broker, password="wrong").connect(timeout_s=5)
    assert not isinstance(e.value, NotifyUnavailable)
    assert str(e.value).startswith(f"{broker.url} refused the connection")
    assert "credentials of user 'edge' were refused" in str(e.value) and "wrong" not in str(e.value)


def test_an_unreachable_broker_is_unavailable_and_publishing_says_so(tmp_path):
    b = Mosquitto(tmp_path / "never-started")  # its port is free: nothing listens there
    with publisher(b) as pub:
        with pytest.raises(NotifyUnavailable, match=f"{b.url} cannot be reached"):
            pub.connect(timeout_s=2)
        with pytest.raises(NotifyUnavailable, match="not connected"):
            pub.publish("edgert/d/event", b"x")


def test_the_publisher_reconnects_after_a_broker_restart_and_delivers_again(broker):
    with publisher(broker) as pub:
        pub.connect()
        broker.stop()
        deadline = time.monotonic() + 5
        while pub.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(NotifyUnavailable):
            pub.publish("edgert/d/event", b"while down")
        broker.start()
        with Collector(broker.url, ["edgert/#"], username="edge", password="s3cret") as c:
            deadline = time.monotonic() + 10
            while not pub.connected and time.monotonic() < deadline:
                time.sleep(0.02)
            assert pub.connected and pub.connections == 2
            pub.publish("edgert/d/event", b"after")
            # what was refused while down is not sent behind the caller's back
            assert [m[1] for m in c.wait_for(lambda m: len(m) >= 1)] == [b"after"]
            time.sleep(0.5)
            assert len(c.snapshot()) == 1


def test_a_publisher_that_dies_leaves_its_will(broker):
    with Collector(broker.url, ["edgert/bridge/status"], username="edge", password="s3cret") as c:
        code = ("import sys, time; from edgert.notify.config import MqttConfig; "
                "from edgert.notify.mqtt import MqttPublisher; "
                f"p = MqttPublisher(MqttConfig(broker='{broker.url}', username='edge', password='s3cret'), "
                "client_id='dying', will=('edgert/bridge/status', b'offline')); p.connect(); "
                "p.publish('edgert/bridge/status', b'online', retain=True); print('up', flush=True); time.sleep(60)")
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env_with_repo())
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
            proc.kill()
        finally:
            proc.wait(timeout=10)
        got = c.wait_for(lambda m: [x[1] for x in m] == [b"online", b"offline"], timeout=10)
        assert got[-1][0] == "edgert/bridge/status"


def test_a_clean_close_does_not_send_the_will(broker):
    with Collector(broker.url, ["edgert/bridge/status"], username="edge", password="s3cret") as c:
        pub = publisher(broker, will=("edgert/bridge/status", b"offline"))
        pub.connect()
        pub.publish("edgert/bridge/status", b"online")
        pub.close()
        time.sleep(0.5)
        assert [m[1] for m in c.snapshot()] == [b"online"]
        with pytest.raises(NotifyUnavailable):
            pub.publish("edgert/bridge/status", b"after close")
