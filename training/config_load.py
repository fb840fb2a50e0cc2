"""YAML -> TrainConfig: unknown keys (with the closest suggestion), `--set a.b=value` overrides with type
checks, the resume hash and config diffs. Every failure is a `ConfigError` naming the key and the file."""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import typing
from typing import Any, Iterator, Literal, Optional, Sequence

import yaml

from .config import EXTERNAL_DOCS, Bounds, TrainConfig

# Keys that may change between a run and its resume (they do not change the training trajectory).
RESUME_SAFE = frozenset({
    "run.steps", "run.resume", "run.output_dir", "run.log_every", "run.save_every", "run.keep_last",
    "run.progress", "run.tensorboard", "run.export_on_finish", "run.device", "run.max_consecutive_skips", "run.threads",
    "data.path", "text.path", "ode.output", "export", "build", "distributed",
    "vae.output", "vae.stats_clips", "vae.eval_clips", "textenc.output", "textenc.eval_prompts",
})


class ConfigError(ValueError):
    """A configuration that cannot be used; raised before any compute."""


# ---- schema walking ----------------------------------------------------------------------------

def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def iter_options(obj=None, prefix: str = "") -> Iterator[tuple[str, Any, Any, str]]:
    """Every leaf option of a config instance (default: TrainConfig()): (dotted key, type, value, doc)."""
    obj = TrainConfig() if obj is None else obj
    cls = type(obj)
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp, value = hints[f.name], getattr(obj, f.name)
        if dataclasses.is_dataclass(tp):
            yield from iter_options(value, key + ".")
        else:
            doc = f.metadata.get("doc") or EXTERNAL_DOCS.get(cls, {}).get(f.name, "")
            yield key, tp, value, doc


def all_keys() -> list[str]:
    return [k for k, *_ in iter_options()]


def _suggest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list[{type_name(args[0])}]"
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


# ---- value checking ----------------------------------------------------------------------------

def _coerce(value: Any, tp, key: str, where: str) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {key} must be {expected}, got {value!r} ({type(value).__name__})")

    origin = typing.get_origin(tp)
    if origin is typing.Union:
        errors = []
        for alt in typing.get_args(tp):
            try:
                return _coerce(value, alt, key, where)
            except ConfigError as e:
                errors.append(str(e).split(": ", 1)[-1])
        raise ConfigError(f"{where}: {key}: {' or '.join(errors)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = _suggest(str(value), [str(c) for c in choices])
            raise ConfigError(f"{where}: {key} must be one of {list(choices)}, got {value!r}{hint}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad(f"a list ({type_name(tp)})")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value))
        if len(value) != len(args):
            raise bad(f"a list of {len(args)} values ({type_name(tp)})")
        return tuple(_coerce(v, a, f"{key}[{i}]", where) for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad("a mapping")
        return _build(tp, value, key + ".", where)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML reads 2e-6 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    raise ConfigError(f"{where}: {key}: unsupported option type {tp!r}")


def _build(cls, data: dict, prefix: str, where: str):
    names = [f.name for f in dataclasses.fields(cls)]
    for k in data:
        if k not in names:
            raise ConfigError(f"{where}: unknown config key {prefix + str(k)!r}{_suggest(str(k), names)}; "
                              f"valid keys here: {names}")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            # merge onto the field's default so sections can be given partially
            base = dataclasses.asdict(f.default) if dataclasses.is_dataclass(f.default) else {}
            value = _deep_merge(base, value)
        kwargs[f.name] = _coerce(value, tp, prefix + f.name, where)
        _check_bounds(kwargs[f.name], f.metadata.get("bounds"), prefix + f.name, where)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: invalid section {prefix.rstrip('.') or 'top level'!r}: {e}") from None


def _check_bounds(value: Any, bounds: Optional[Bounds], key: str, where: str) -> None:
    """Numbers (each element of a list) against the field's allowed range; words (e.g. 'random') pass."""
    if bounds is None:
        return
    items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
    for i, v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not bounds.allows(v):
            name = key if i is None else f"{key}[{i}]"
            raise ConfigError(f"{where}: {name} must be {bounds}, got {v!r}")


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ---- overrides ---------------------------------------------------------------------------------

def _resolve_key(path: list[str], arg: str):
    """Walk a dotted key through the schema; unknown parts get a suggestion among the full keys."""
    cls = TrainConfig
    for i, part in enumerate(path):
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"--set {arg}: {'.'.join(path[:i])!r} is an option, not a section")
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            full = ".".join(path)
            hint = _suggest(full, all_keys()) or _suggest(part, names)
            raise ConfigError(f"--set {arg}: unknown config key {full!r}{hint}")
        tp = _hints(cls)[part]
        cls = tp if dataclasses.is_dataclass(tp) else None
    return cls


def apply_override(tree: dict, arg: str) -> None:
    if "=" not in arg:
        raise ConfigError(f"--set {arg!r}: expected key=value (e.g. --set optim.student.lr=1e-5)")
    key, raw = arg.split("=", 1)
    path = key.strip().split(".")
    _resolve_key(path, arg)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {arg}: cannot parse the value: {e}") from None
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


# ---- entry points ------------------------------------------------------------------------------

def read_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level of a config must be a mapping, got {type(data).__name__}")
    return data


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Defaults <- YAML file <- `--set` overrides, type-checked."""
    tree = read_yaml(path) if path else {}
    for arg in overrides:
        apply_override(tree, arg)
    where = path or "<defaults>"
    if overrides:
        where += " + --set"
    return config_from_dict(tree, where)


def config_from_dict(tree: dict, where: str = "<config>") -> TrainConfig:
    return _build(TrainConfig, tree, "", where)


def config_to_dict(cfg) -> dict:
    """Plain, JSON/YAML-ready nested dict (tuples as lists)."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(cfg)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _trajectory_items(cfg_dict: dict) -> dict[str, Any]:
    return {k: v for k, v in flatten(cfg_dict).items()
            if k not in RESUME_SAFE and k.split(".")[0] not in RESUME_SAFE}


def config_hash(cfg: TrainConfig, command: str) -> str:
    """Hash of everything that shapes the training trajectory (RESUME_SAFE keys excluded)."""
    items = _trajectory_items(config_to_dict(cfg))
    blob = json.dumps({"command": command, "config": items}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_diff(old: dict, new: dict) -> list[str]:
    """'key: old -> new' for every trajectory-relevant difference. An option the old config lacks is no
    difference while the new one holds its default: options are added with the default that keeps the old
    behaviour, so a run saved before an option existed resumes."""
    a, b = _trajectory_items(old), _trajectory_items(new)
    defaults = flatten(config_to_dict(TrainConfig()))
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
            and not (k not in a and k in defaults and b.get(k) == defaults[k])]


def dump_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
