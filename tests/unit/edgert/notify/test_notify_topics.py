"""Topic names: the layout under the prefix, and the names that would change a topic's meaning."""
from __future__ import annotations

import pytest

from edgert.errors import NotifyError
from edgert.notify.topics import Topics


def test_topics_under_the_prefix():
    t = Topics("site/edgert")
    assert t.event("dev-1") == "site/edgert/dev-1/event"
    assert t.alert("dev-1") == "site/edgert/dev-1/alert"
    assert t.status("dev-1") == "site/edgert/dev-1/status"
    assert t.fleet_alert() == "site/edgert/fleet/alert"
    assert t.bridge_status() == "site/edgert/bridge/status"


@pytest.mark.parametrize("device", ["", "a+b", "a#", "a/b", "a\x00", "fleet", "bridge"])
def test_a_device_that_cannot_be_one_topic_level_is_refused_by_name(device):
    with pytest.raises(NotifyError, match="device id"):
        Topics("edgert").event(device)


@pytest.mark.parametrize("prefix", ["", "+", "e/#", "/e", "e/", "e//f", "e\x00"])
def test_a_bad_prefix_is_refused_by_name(prefix):
    with pytest.raises(NotifyError, match="prefix"):
        Topics(prefix)


def test_device_ids_the_cloud_accepts_are_topic_levels():
    assert Topics("e").event("Site_1.mic:3-b") == "e/Site_1.mic:3-b/event"
