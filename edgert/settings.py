"""The settings base of both processes: the strict pydantic base, and layered loading
(defaults <- YAML file <- PREFIX__A__B env vars <- overrides).

`load_layers` builds the merged mapping and validates it with a model derived from `Strict`; every failure
becomes the caller's own error class (edge_rt's or cloud_svc's ConfigError) with the file or field named,
never a traceback.

An env variable's value is read as a YAML scalar (`true`, `30`, `[a, b]`), except for the fields typed `Verbatim`
(user names, passwords, secrets): those take the variable's text exactly as it was typed, so a password 0123
stays "0123" instead of becoming the number 83.
"""
from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class _VerbatimEnv:
    """The mark of a field whose env variable is taken as typed (see Verbatim)."""

    def __repr__(self) -> str:
        return "VERBATIM_ENV"


VERBATIM_ENV = _VerbatimEnv()


def _text_only(value: Any) -> Any:
    """A number where text is expected came from an unquoted YAML scalar, which has already lost what was typed
    (0123 reads as 83): refuse it, saying how to write it, rather than guess."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("must be text, and YAML read a number here: quote it in the YAML file (\"0123\", "
                         "not 0123, which YAML reads as 83); an env variable is taken as typed")
    return value


# An optional string that an env variable sets to its exact text, never parsed as YAML (credentials, secrets);
# in a YAML file it must be quoted when it looks like a number.
Verbatim = Annotated[Optional[str], VERBATIM_ENV, BeforeValidator(_text_only)]


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


# libyaml's parser under PyYAML's safe constructors where PyYAML was built with it (its wheels are): the same
# objects as yaml.safe_load, parsed several times faster. The shipped taxonomy, labels and defaults are read at
# every start: a `classify` of one short file, pinned to a core, starts in 0.35 s instead of 0.37 s.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str | bytes) -> Any:
    """yaml.safe_load(text), with libyaml's parser where there is one."""
    return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 (a safe loader)


def read_yaml(path: str | os.PathLike, error: type[Exception]) -> dict:
    p = Path(path)
    try:
        data = parse_yaml(p.read_text()) or {}
    except OSError as exc:
        raise error(f"cannot read config {p}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise error(f"config {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"config {p} must be a mapping of keys, got {type(data).__name__}")
    return data


def verbatim(model: type[BaseModel], dotted: str) -> bool:
    """Whether the field at `dotted` (through nested models) is typed Verbatim: its env variable is taken as
    typed."""
    keys = dotted.split(".")
    current: Any = model
    for i, key in enumerate(keys):
        field = current.model_fields.get(key) if isinstance(current, type) and issubclass(current, BaseModel) \
            else None
        if field is None:
            return False
        if i == len(keys) - 1:
            return any(m is VERBATIM_ENV for m in field.metadata)
        current = _model_in(field.annotation)
    return False


def _model_in(annotation: Any) -> Any:
    """The model class an annotation holds (itself, or inside Optional[...]); None when it holds none."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 else None
    return None


def load_layers(model: type[M], *, what: str, error: type[Exception], env_prefix: str, base: Optional[dict] = None,
                path: str | os.PathLike | None = None, overrides: Optional[dict[str, Any]] = None,
                env: Optional[dict[str, str]] = None) -> M:
    """base <- YAML at `path` <- env vars `env_prefix`A__B=value (YAML scalars; the text as typed for Verbatim
    fields) <- overrides {"a.b": value}."""
    data = dict(base or {})
    if path is not None:
        data = merge(data, read_yaml(path, error))
    for key, raw in (os.environ if env is None else env).items():
        if key.startswith(env_prefix):
            dotted = key[len(env_prefix):].lower().replace("__", ".")
            set_path(data, dotted, raw if verbatim(model, dotted) else parse_yaml(raw))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_path(data, dotted, value)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise error(f"invalid {what}{f' in {path}' if path else ''}: {problems}") from None
