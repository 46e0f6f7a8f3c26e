"""YAMNet's 521 AudioSet class names, read from the class map CSV that ships with the model."""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from edgert.errors import ModelMissingError
from edgert.yamnet import paths
from edgert.yamnet.params import PARAMS


@lru_cache(maxsize=4)
def class_names(model_dir: Path | None = None) -> tuple[str, ...]:
    """The display names, index-aligned with the model's score columns."""
    path = paths.model_dir(model_dir) / paths.CLASS_MAP
    if not path.is_file():
        raise ModelMissingError(f"class map {path} does not exist: {paths.BUILD_HINT}")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = tuple(r["display_name"] for r in sorted(rows, key=lambda r: int(r["index"])))
    if len(names) != PARAMS.num_classes:
        raise ModelMissingError(f"{path} has {len(names)} classes, expected {PARAMS.num_classes}: {paths.BUILD_HINT}")
    return names


def top_classes(scores, names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The k best classes of float[521] `scores`, best first, as (name, score)."""
    import numpy as np

    scores = np.asarray(scores)
    return [(names[i], float(scores[i])) for i in np.argsort(scores)[::-1][:k]]
