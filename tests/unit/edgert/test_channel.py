"""edgert.channel.open_channel: one builder for the uplink and the query client; bad TLS settings are named."""
import grpc
import pytest

from edgert.channel import TlsFileError, open_channel
from edgert.errors import SettingsError


def test_a_missing_ca_file_is_named_before_any_connection(tmp_path):
    with pytest.raises(TlsFileError, match=r"cannot read the TLS CA bundle .*nope\.pem"):
        open_channel("127.0.0.1:1", ca=str(tmp_path / "nope.pem"))


def test_a_client_certificate_without_its_key_is_refused(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="go together"):
        open_channel("127.0.0.1:1", cert=str(cert))


def test_a_plaintext_channel_to_a_closed_port_is_not_ready():
    ch = open_channel("127.0.0.1:1", keepalive_s=10.0, reconnect_backoff_s=(0.1, 0.2), grpc_retries=False)
    try:
        with pytest.raises(grpc.FutureTimeoutError):
            grpc.channel_ready_future(ch).result(timeout=0.3)
    finally:
        ch.close()
