"""The cloud's detector config on the edge: validated, applied without a restart, persisted beside the outbox.

The cloud pushes (on every connect) a versioned set of per-label thresholds. `PushedConfig.offer` checks it
against the running config (known labels, thresholds in (0, 1]); a valid push of a new version is laid over the
edge's own config, handed to the pipeline (which retunes its detector between two batches) and written to
`pushed_config.json` in the spool folder, so a restart runs it from the first window. An invalid push is refused
with its reason, logged, reported in the heartbeat, and the running config stays. Version 0 means "nothing
pushed": the edge keeps its own thresholds.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from pydantic import ValidationError

from edge_rt.config import DetectorConfig, EdgeConfig
from edge_rt.errors import ConfigError

log = logging.getLogger("edge_rt.pushed")
FILE = "pushed_config.json"


@dataclass(frozen=True)
class Push:
    version: int
    thresholds: dict[str, float]

    @classmethod
    def from_message(cls, msg) -> "Push":
        """An edgert.v1.ConfigPush; its float32 thresholds rounded to the 6 digits they hold (0.999, not
        0.9990000128746033)."""
        return cls(int(msg.version), {str(k): round(float(v), 6) for k, v in msg.thresholds.items()})


def laid_over(cfg: EdgeConfig, push: Push) -> EdgeConfig:
    """`cfg` with the push's thresholds; ConfigError naming what is wrong with the push."""
    unknown = sorted(set(push.thresholds) - set(cfg.detector.labels))
    if unknown:
        raise ConfigError(f"config version {push.version} names labels this edge does not have: {unknown}; "
                          f"known: {sorted(cfg.detector.labels)}")
    data = cfg.model_dump()
    for label, threshold in push.thresholds.items():
        data["detector"]["labels"][label]["threshold"] = threshold
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:  # say which value is out of range, in one line
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"config version {push.version} is not valid: {problems}") from None


class PushedConfig:
    """The pushed config of one edge: the version it runs, the last refusal, and the file that survives restarts."""

    def __init__(self, folder: Path, base: EdgeConfig):
        self.path = Path(folder) / FILE
        self.base = base  # the edge's own config; every push is laid over it, not over the previous push
        self.version = 0
        self.error = ""
        self._apply: Optional[Callable[[DetectorConfig], None]] = None
        self._lock = threading.Lock()

    def startup(self) -> EdgeConfig:
        """The config to start with: the base with the persisted push over it (the base if none, or if the
        file no longer fits the base, which is then logged and reported)."""
        if not self.path.is_file():
            return self.base
        try:
            raw = json.loads(self.path.read_text())
            push = Push(int(raw["version"]), {str(k): float(v) for k, v in raw["thresholds"].items()})
            cfg = laid_over(self.base, push)
        except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
            self.error = f"the saved config {self.path} is not used: {exc}"
            log.error("%s", self.error)
            return self.base
        self.version = push.version
        log.info("running the cloud's config version %d (saved in %s)", push.version, self.path)
        return cfg

    def bind(self, apply: Callable[[DetectorConfig], None]) -> None:
        """Where valid pushes go (the pipeline's `retune`)."""
        self._apply = apply

    def offer(self, push: Push) -> bool:
        """A push from the cloud: True when it was applied; a repeat of the running version changes nothing."""
        with self._lock:
            if push.version == self.version or push.version == 0:
                return False
            try:
                cfg = laid_over(self.base, push)
            except ConfigError as exc:
                self.error = str(exc)
                log.error("refused the cloud's config: %s; keeping version %d", exc, self.version)
                return False
            self._save(push)
            if self._apply is not None:
                self._apply(cfg.detector)
            self.version, self.error = push.version, ""
            log.warning("applied the cloud's config version %d: thresholds %s", push.version, push.thresholds)
            return True

    def _save(self, push: Push) -> None:
        tmp = self.path.with_suffix(".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as fh:
            json.dump({"version": push.version, "thresholds": push.thresholds}, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path)

    def heartbeat(self) -> dict:
        """What the heartbeat reports: the version running and, after a refusal, why."""
        return {"config_version": self.version, **({"config_error": self.error} if self.error else {})}
