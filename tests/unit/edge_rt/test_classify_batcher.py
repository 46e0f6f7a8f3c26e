"""`classify`'s batcher scores windows of several recordings together and hands each group back whole, in order;
`deal` splits the files for `--jobs` into runs of about equal size, keeping their order."""
from __future__ import annotations

import numpy as np
import pytest

from edge_rt import config
from edge_rt.classify import Batcher, classify_items, deal
from edgert.errors import ModelError
from edgert.yamnet.backends import FakeBackend


class Counting(FakeBackend):
    def __init__(self, fail_after: int | None = None):
        super().__init__()
        self.sizes: list[int] = []
        self.fail_after = fail_after

    def _infer(self, patches):
        if self.fail_after is not None and len(self.sizes) >= self.fail_after:
            raise ModelError("the model fell over")
        self.sizes.append(len(patches))
        return super()._infer(patches)


def patches(n: int, value: float) -> np.ndarray:
    return np.full((n, 96, 64), value, np.float32)


def test_groups_come_back_whole_and_in_order_from_calls_of_exactly_batch_windows():
    be = Counting()
    b = Batcher(be, batch=4)
    got: list[tuple[str, np.ndarray]] = []
    for name, n in [("a", 3), ("b", 6), ("c", 1), ("d", 2)]:
        b.submit(lambda s, e, name=name: got.append((name, s[:, 0])), patches(n, -float(len(got) + n)))
    assert be.sizes == [4, 4, 4] and [g for g, _ in got] == ["a", "b", "c", "d"][:len(got)]
    b.flush()
    assert be.sizes == [4, 4, 4] and [g for g, _ in got] == ["a", "b", "c", "d"]
    assert [len(s) for _, s in got] == [3, 6, 1, 2]
    b.submit(lambda s, e: got.append(("e", s[:, 0])), patches(1, -3.0))
    b.flush()
    assert be.sizes[-1] == 1 and got[-1][0] == "e"


def test_a_batch_of_one_scores_each_window_alone():
    be = Counting()
    b = Batcher(be, batch=1)
    b.submit(lambda s, e: None, patches(5, -1.0))
    assert be.sizes == [1] * 5


def test_a_batch_below_one_window_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        Batcher(Counting(), batch=0)


def test_a_model_failure_fails_every_file_waiting_on_it_and_the_rest_go_on(tmp_path, monkeypatch):
    import soundfile as sf

    monkeypatch.setenv("EDGE_RT_MODEL_DIR", str(tmp_path / "no-models"))
    names = [f"class {i}" for i in range(521)]
    from edgert import labels

    named = sorted({c for lc in labels.scoring().labels.values() for c in lc.classes})
    names = named + names[len(named):]
    cfg = config.load(env={}, calibrated=False)
    files = []
    for i in range(5):
        path = tmp_path / f"{i}.wav"
        sf.write(path, np.full(16000, 0.1 * (i + 1), np.float32), 16000, subtype="FLOAT")
        files.append((str(path), None))
    be = Counting(fail_after=1)  # the first call (batch 4: files 0 and 1) works, the second raises
    out = list(classify_items(files, cfg, be, names, None, batch=4))
    assert [o.path for o in out] == [p for p, _ in files]
    assert [o.failed for o in out] == [False, False, True, True, True]
    assert all(o.line is None and "fell over" in o.messages[0] for o in out[2:])


def test_deal_keeps_the_order_and_splits_by_seconds_of_audio(tmp_path):
    import soundfile as sf

    items = []
    for i, seconds in enumerate([1, 1, 1, 1, 4, 1, 1]):
        p = tmp_path / f"{i}.wav"
        sf.write(p, np.zeros(seconds * 8000, np.float32), 8000)
        items.append((str(p), None))
    items.insert(3, (str(tmp_path), "warning: skipping something"))
    items.append((str(tmp_path / "missing.wav"), None))
    runs = deal(items, 4)
    assert [x for run in runs for x in run] == items and 2 <= len(runs) <= 4
    assert all(run for run in runs)
    assert any(run == [items[5]] for run in runs), "the 4 s file is a quarter of the work: a run of its own"
    assert deal([], 3) == [[]] and deal(items[:1], 8) == [items[:1]]


def test_a_cuda_backend_starts_its_workers_from_a_fresh_process_with_the_same_output(tmp_path, model_dir,
                                                                                        monkeypatch):
    """A CUDA context does not survive fork(): such a backend's --jobs workers come from a forkserver (here the
    CPU backend stands in, marked as using CUDA), and the output is the one process's."""
    import io

    import soundfile as sf

    from edge_rt.classify import classify_files, worker_context
    from edgert.yamnet import backends
    from edgert.yamnet.backends.ort import OnnxRuntimeBackend
    from edgert.yamnet.classmap import class_names
    from edgert.yamnet.head import Head

    rng = np.random.default_rng(2)
    for i in range(4):
        sf.write(tmp_path / f"{i}.wav", (0.2 * rng.standard_normal(int((1.5 + i) * 16000))).astype(np.float32), 16000)
    cfg = config.load(overrides={"runtime.model_dir": str(model_dir)})
    be = backends.load("onnxruntime", model_dir)
    parts = (cfg, be, class_names(model_dir), Head.load_optional(model_dir))
    assert worker_context(be).get_start_method() == "fork"
    one, many = io.StringIO(), io.StringIO()
    assert classify_files([str(tmp_path)], *parts, out=one) == 0
    monkeypatch.setattr(OnnxRuntimeBackend, "USES_CUDA", True)
    assert worker_context(be).get_start_method() == "forkserver"
    assert classify_files([str(tmp_path)], *parts, out=many, jobs=2) == 0
    assert many.getvalue() == one.getvalue() and len(one.getvalue().splitlines()) == 4
