"""Run configuration: a frozen dataclass, loaded from TOML with dotted ``key=value`` overrides.

Errors name the key and what is wrong with its value.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.queue_order import QUEUE_ORDERS

BATCHING = ("v0", "v1")

OptionValues = tuple[str, ...] | type[bool] | type[int] | type[float]
OPTION_VALUES: dict[str, dict[str, OptionValues]] = {
    "infercept": {"estimator": ("paper", "elapsed", "oracle"), "budget": ("step", "saturated"),
                  "chunk_fill": bool, "swap": bool, "pipelined": bool, "preserve": bool,
                  "skip_short_pauses": bool, "heuristic_preserve_s": float},
    "continuum": {"ttl_s": float},
    "continuum_utility": {"eta": float, "eta_rule": ("fixed", "correlation")},
    "saga": {"cold_start_s": float},
    "vllm_offload": {"cpu_tier_gib": float, "offload_prompt_only": bool},
    "mars": {"length_error_sigma": float, "noise_seed": int, "swap_cost": ("stall", "pipelined")},
}
"""Policy -> option -> the strings it takes, ``bool`` (true or false), ``int`` (an integer) or ``float`` (a
number >= 0). Which options a policy accepts is core.policy.POLICY_OPTIONS; this table only checks their values
before a run starts."""


class ConfigError(ValueError):
    """A configuration key or value that cannot be used."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One simulated run. ``profile`` (a path) overrides ``model``/``gpu``/``tp``."""

    policy: str = "infercept"
    workload: str = "mixed"
    rate_rps: float = 1.0
    duration_s: float = 600.0
    seed: int = 0
    model: str = "gptj-6b"
    gpu: str = "a100"
    tp: int = 1
    profile: str = ""
    batching: str = "v0"
    drain: bool = False
    jump: bool = True
    check: bool = False
    max_requests: int = 0
    chrome_trace: bool = False
    policy_options: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    profile_scale: dict[str, Any] = field(default_factory=dict)

    def validate(self, *, policy_options: bool = True) -> RunConfig:
        """Raise ConfigError naming the first bad value; return self. ``policy_options=False`` leaves the
        options unchecked against ``policy`` (compare hands each policy its own share of them)."""
        from core.engine_keys import engine_problem
        from core.policy import POLICIES

        if self.policy not in POLICIES:
            raise ConfigError(f"policy = {self.policy!r}: expected one of {sorted(POLICIES)}")
        if self.batching not in BATCHING:
            raise ConfigError(f"batching = {self.batching!r}: expected one of {BATCHING}")
        if not (self.rate_rps > 0 and math.isfinite(self.rate_rps)):
            raise ConfigError(f"rate_rps = {self.rate_rps}: must be a positive number")
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ConfigError(f"duration_s = {self.duration_s}: must be a positive number")
        for key, low in (("tp", 1), ("max_requests", 0), ("seed", 0)):
            if getattr(self, key) < low:
                raise ConfigError(f"{key} = {getattr(self, key)}: must be >= {low}")
        from core.scale import scale_problem

        problem = engine_problem(self.engine) or scale_problem(self.profile_scale)
        if problem:
            raise ConfigError(problem)
        if policy_options:
            check_policy_options(self.policy, self.policy_options)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (for config.toml)."""
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def _option_value_problem(policy: str, key: str, value: Any) -> str | None:
    allowed = QUEUE_ORDERS if key == "queue_order" else OPTION_VALUES.get(policy, {}).get(key)
    if allowed is None:
        return None
    if allowed is bool:
        ok, expected = isinstance(value, bool), "true or false"
    elif allowed is int:
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif allowed is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < math.inf
        expected = "a number >= 0"
    else:
        ok, expected = isinstance(value, str) and value in allowed, f"one of {list(allowed)}"
    return None if ok else f"policy_options.{key} = {value!r}: policy {policy!r} expects {expected}"


def check_policy_options(policy: str, options: Mapping[str, Any]) -> None:
    """Raise ConfigError naming the first ``policy_options`` key that ``policy`` does not accept, or whose
    value is not one it takes (OPTION_VALUES)."""
    from core.policy import check_options

    try:
        check_options(policy, options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    for key, value in options.items():
        problem = _option_value_problem(policy, key, value)
        if problem:
            raise ConfigError(problem)


def options_by_policy(policies: Sequence[str], options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each of ``policies`` with its share of ``options`` (the keys it accepts, values checked).

    Raises ConfigError naming a key that none of ``policies`` accepts."""
    from core.policy import POLICIES, POLICY_OPTIONS

    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ConfigError(f"policies {unknown}: unknown; expected names from {sorted(POLICIES)}")
    for key in options:
        if not any(key in POLICY_OPTIONS[p] for p in policies):
            takers = sorted(p for p, keys in POLICY_OPTIONS.items() if key in keys)
            raise ConfigError(f"policy_options.{key}: no selected policy ({', '.join(policies)}) accepts it"
                              + (f"; accepted by {', '.join(takers)}" if takers else ""))
    shares = {p: {k: v for k, v in options.items() if k in POLICY_OPTIONS[p]} for p in policies}
    for p, share in shares.items():
        check_policy_options(p, share)
    return shares


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} = {value!r}: expected a table")
        return dict(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: expected true or false")
        return value
    if isinstance(default, int) and not isinstance(value, bool) and isinstance(value, int):
        return value
    if isinstance(default, float) and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, str) and isinstance(value, str):
        return value
    raise ConfigError(f"{key} = {value!r}: expected a {type(default).__name__}")


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML literal (number, bool, quoted string), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def build_config(base: dict[str, Any] | None = None, overrides: list[str] | None = None, *,
                 policy_options: bool = True) -> RunConfig:
    """A validated RunConfig from a dict (e.g. a parsed TOML file) and ``key=value`` overrides.

    Dotted keys reach into tables: ``policy_options.estimator=oracle``, ``engine.token_budget_tokens=4096``.
    ``policy_options=False``: the options are not checked against ``policy`` (see RunConfig.validate).
    """
    values: dict[str, Any] = {}
    for key, value in (base or {}).items():
        if key not in _FIELDS:
            raise ConfigError(f"unknown config key {key!r}; known keys: {sorted(_FIELDS)}")
        values[key] = _coerce(key, value, getattr(RunConfig(), key))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        top, _, sub = key.partition(".")
        if top not in _FIELDS:
            raise ConfigError(f"override {item!r}: unknown config key {top!r}; known keys: {sorted(_FIELDS)}")
        if sub:
            if not isinstance(getattr(RunConfig(), top), dict):
                raise ConfigError(f"override {item!r}: {top!r} is not a table")
            values[top] = {**values.get(top, {}), sub: parse_value(text)}
        else:
            default = getattr(RunConfig(), top)
            raw = parse_value(text) if not isinstance(default, str) else text
            values[top] = _coerce(top, raw, default)
    return RunConfig(**values).validate(policy_options=policy_options)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML run configuration; errors name the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return build_config(data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def to_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for flat keys and one level of tables (what RunConfig and run notes need)."""
    def lit(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    flat = [f"{k} = {lit(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [f"\n[{k}]\n" + "".join(f"{kk} = {lit(vv)}\n" for kk, vv in v.items())
              for k, v in data.items() if isinstance(v, dict)]
    return "\n".join(flat) + "\n" + "".join(tables)
