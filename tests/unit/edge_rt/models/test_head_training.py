"""The distress head's training: reproducible to the byte for a seed, and it learns ordinary life explicitly."""
from __future__ import annotations

import numpy as np

from edgert.yamnet import backends
from edgert.yamnet.head import FEATURE_CLASSES, HEAD_FILE, NEGATIVES, Head
from edgert.yamnet.classmap import class_names
from edge_rt.models.train_head import Plan, train

SMALL = (Plan(1.0, 0, 2.0), Plan(0.5, 0, 1.0))  # minutes of ordinary and event streams: train, calib


def test_training_the_head_twice_with_one_seed_gives_the_same_bytes(tmp_path):
    be = backends.load("onnxruntime")
    reports = [train(be, tmp_path / d, class_names(), progress=False, c_grid=(0.01,), plans=SMALL) for d in "ab"]
    a, b = ((tmp_path / d / HEAD_FILE).read_bytes() for d in "ab")
    assert a == b
    assert reports[0] == reports[1]
    with np.load(tmp_path / "a" / HEAD_FILE) as z:
        head = Head(z["weights"], z["bias"], [str(x) for x in z["labels"]], z["mean"], z["scale"],
                    [str(x) for x in z["feature_classes"]], class_names())
    # ordinary speech and clatter are classes of their own, never reported as labels
    assert {"speech", "clatter", "background"} <= set(head.labels)
    assert head.feature_classes == list(FEATURE_CLASSES)
    probs = head.per_label(np.zeros((1, head.mean.size), np.float32))[0]
    assert probs and not set(probs) & set(NEGATIVES)
    assert reports[0]["train"]["windows"] > 100 and reports[0]["held_out"]["split"] == "calib"
