"""ONNX Runtime's session settings: its pool threads spin only where they have cores of their own."""
from __future__ import annotations

import os
import subprocess
import sys

from edgert.yamnet.backends.ort import session_config


def test_threads_that_would_spin_against_the_loop_block_instead():
    assert session_config(1, 1)["session.intra_op.allow_spinning"] == "0"  # taskset -c 0
    assert session_config(2, 2)["session.intra_op.allow_spinning"] == "0"
    assert session_config(4, 2)["session.intra_op.allow_spinning"] == "0"
    assert session_config(2, 8)["session.intra_op.allow_spinning"] == "1"
    assert all(session_config(t, c)["session.inter_op.allow_spinning"] == "0" for t in (1, 4) for c in (1, 8))


def test_a_session_pinned_to_one_core_is_built_without_spinning(model_dir):
    code = ("from edgert.yamnet import backends; o = backends.load('onnxruntime')._session.get_session_options(); "
            "print(o.get_session_config_entry('session.intra_op.allow_spinning'), o.intra_op_num_threads)")
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True,
                         text=True, check=True, env={**os.environ, "EDGE_RT_MODEL_DIR": str(model_dir)}).stdout
    assert out.split() == ["0", "1"]
