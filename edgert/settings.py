"""The settings base of both processes: the strict pydantic base, and layered loading
(defaults <- YAML file <- PREFIX__A__B env vars <- overrides).

`load_layers` builds the merged mapping and validates it with a model derived from `Strict`; every failure
becomes the caller's own error class (edge_rt's or cloud_svc's ConfigError) with the file or field named,
never a traceback.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Every config model's base: unknown keys are errors (a typo never passes silently), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def merge(base: dict, over: dict) -> dict:
    """`over` laid onto `base`, nested mappings merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def set_path(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def read_yaml(path: str | os.PathLike, error: type[Exception]) -> dict:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise error(f"cannot read config {p}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise error(f"config {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"config {p} must be a mapping of keys, got {type(data).__name__}")
    return data


def load_layers(model: type[M], *, what: str, error: type[Exception], env_prefix: str, base: Optional[dict] = None,
                path: str | os.PathLike | None = None, overrides: Optional[dict[str, Any]] = None,
                env: Optional[dict[str, str]] = None) -> M:
    """base <- YAML at `path` <- env vars `env_prefix`A__B=value (YAML scalars) <- overrides {"a.b": value}."""
    data = dict(base or {})
    if path is not None:
        data = merge(data, read_yaml(path, error))
    for key, raw in (os.environ if env is None else env).items():
        if key.startswith(env_prefix):
            set_path(data, key[len(env_prefix):].lower().replace("__", "."), yaml.safe_load(raw))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_path(data, dotted, value)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise error(f"invalid {what}{f' in {path}' if path else ''}: {problems}") from None
