"""A sweep file: a base run configuration, a grid over dotted keys, optional named variants.

    [sweep]                      description, and an optional [sweep.knee] (target_ms, refine, metrics)
    [base]                       keys of core.config.RunConfig (tables for policy_options and engine)
    [grid]                       dotted key -> non-empty list of values; the runs are their product
    [[variants]]                 name = "...", description = "...", then dotted keys (several at once)

Every run is base <- variant <- grid point, validated before anything runs; each policy gets the share of
``policy_options`` it accepts (an option that no run's policy accepts is an error). Errors name the file and
the key. A run's id (experiments/runid.py) digests its resolved configuration, the content of its profile
(and of a workload file) and the simulator's source, so a finished run is reused whenever it would give the
same result and never when code or profile changed.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import ConfigError, RunConfig, build_config, check_policy_options
from core.cost import ProfileError
from core.policy import POLICY_OPTIONS, expand_policies
from core.summary import METRICS
from experiments.runid import inputs, run_id

SECTIONS = ("sweep", "base", "grid", "variants")
SWEEP_KEYS = ("description", "knee")
KNEE_KEYS = {"target_ms": "a positive number (ms/token)", "refine": "an integer >= 0 (bisection rounds)",
             "metrics": "a list of metric names"}
KNEE_METRIC_NAMES = tuple(m for m in METRICS if m.startswith("norm_latency"))
"""The metrics a knee is taken on: the normalized latencies (ms/token)."""
LABELS = ("workload", "model", "gpu", "tp", "profile", "batching", "duration_s", "policy", "rate_rps", "seed")
"""Columns every run carries in runs.parquet (with every grid key and every key a variant sets)."""


class SweepError(ConfigError):
    """A sweep file that cannot be run; the message names the file and the key."""


@dataclass(frozen=True)
class KneeSpec:
    """Knee analysis of a sweep: the target, how often each crossing interval is bisected, the metrics."""

    target_ms: float = 100.0
    refine: int = 0
    metrics: tuple[str, ...] = ("norm_latency_ms", "norm_latency_p50_ms", "norm_latency_p90_ms",
                                "norm_latency_corrected_ms")


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its stable id, its validated configuration, its label columns, and where it came
    from (the grid point and the variant)."""

    run_id: str
    config: RunConfig
    labels: dict[str, Any]
    point: dict[str, Any]
    variant: dict[str, Any] | None
    inputs: dict[str, str] = field(default_factory=dict)  # digests of the files it reads

    @property
    def key(self) -> str:
        """The run and its labels: two variants may resolve to one run id, each keeps its own row."""
        return self.run_id + json.dumps(self.labels, sort_keys=True, default=str)


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file."""

    name: str
    description: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    variants: list[dict[str, Any]] = field(default_factory=list)
    knee: KneeSpec | None = None
    source: str = ""  # the file it was read from, named in every error

    @property
    def label_keys(self) -> list[str]:
        """The label columns: 'variant' when there are variants, LABELS, the grid's and variants' keys."""
        keys = (["variant"] if self.variants else []) + list(LABELS) + list(self.grid)
        keys += [k for v in self.variants for k in v if k not in ("name", "description")]
        return list(dict.fromkeys(keys))


def _nest(flat: Mapping[str, Any], into: dict[str, Any], where: str) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in into.items()}
    for key, value in flat.items():
        top, _, sub = key.partition(".")
        if top not in RunConfig.__dataclass_fields__:
            raise SweepError(f"{where}.{key}: unknown config key {top!r}; known: "
                             f"{sorted(RunConfig.__dataclass_fields__)}")
        if sub:
            if not isinstance(getattr(RunConfig(), top), dict):
                raise SweepError(f"{where}.{key}: {top!r} is not a table")
            out[top] = {**out.get(top, {}), sub: value}
        elif isinstance(value, dict) and isinstance(out.get(top), dict):
            out[top] = {**out[top], **value}
        else:
            out[top] = value
    return out


def _get(cfg: RunConfig, key: str) -> Any:
    top, _, sub = key.partition(".")
    value = getattr(cfg, top)
    return value.get(sub) if sub else value


def load_sweep(path: str | Path) -> Sweep:
    """Parse and check a sweep file's structure; SweepError names the file and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SweepError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return _parse(path.stem, data, str(path))
    except SweepError as exc:
        raise SweepError(f"{path}: {exc}") from exc


def _parse(name: str, data: dict[str, Any], source: str) -> Sweep:
    for key in data:
        if key not in SECTIONS:
            raise SweepError(f"unknown section {key!r}; expected {list(SECTIONS)}")
    for key in ("sweep", "base", "grid"):
        if not isinstance(data.get(key, {}), dict):
            raise SweepError(f"{key} = {data[key]!r}: expected a table ([{key}])")
    if not isinstance(data.get("variants", []), list) or not all(
            isinstance(v, dict) for v in data.get("variants", [])):
        raise SweepError("variants: expected an array of tables ([[variants]], each with a name)")
    meta = data.get("sweep", {})
    for key in meta:
        if key not in SWEEP_KEYS:
            raise SweepError(f"sweep.{key}: unknown key; expected {list(SWEEP_KEYS)}")
    knee = None
    if "knee" in meta:
        knee = _knee(meta["knee"])
    grid = data.get("grid", {})
    if not grid:
        raise SweepError("grid: empty; give at least one key with a list of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid.{key} = {values!r}: expected a non-empty list of values")
        for v in values:
            if not isinstance(v, str | int | float | bool):
                raise SweepError(f"grid.{key}: value {v!r} is a {type(v).__name__}; expected a number, a "
                                 "string or true/false (use dotted keys for tables)")
        if len(set(values)) != len(values):
            raise SweepError(f"grid.{key} = {values!r}: repeated values")
    if "policy" in grid:  # group names (all, recent, every) expand in place
        try:
            grid = {**grid, "policy": expand_policies(grid["policy"])}
        except ValueError as exc:
            raise SweepError(f"grid.policy: {exc}") from exc
    variants = data.get("variants", [])
    names = [v.get("name") for v in variants]
    for i, (v, vname) in enumerate(zip(variants, names)):
        if not isinstance(vname, str) or not vname:
            raise SweepError(f"variants[{i}].name: every variant needs a name")
    if len(set(names)) != len(names):
        raise SweepError(f"variants: duplicate names in {names}")
    return Sweep(name, str(meta.get("description", "")), data.get("base", {}), grid, variants, knee, source)


def _check_distinct(sweep: Sweep, runs: list[SweepRun]) -> None:
    """Two different runs with the same labels would be one curve in every table: refuse them."""
    seen: dict[str, str] = {}
    for r in runs:
        labels = json.dumps(r.labels, sort_keys=True, default=str)
        if seen.setdefault(labels, r.run_id) != r.run_id:
            raise SweepError(f"{sweep.source}: two different runs have the same labels {r.labels} (e.g. two "
                             "workload or profile files with the same name): give them distinct names")


def _knee(table: Any) -> KneeSpec:
    if not isinstance(table, dict):
        raise SweepError(f"sweep.knee = {table!r}: expected a table (target_ms, refine, metrics)")
    for key, value in table.items():
        if key not in KNEE_KEYS:
            raise SweepError(f"sweep.knee.{key}: unknown key; expected {list(KNEE_KEYS)}")
        if key == "metrics":
            if not isinstance(value, list) or not value or any(v not in KNEE_METRIC_NAMES for v in value):
                raise SweepError(f"sweep.knee.metrics = {value!r}: expected a non-empty list of "
                                 f"{list(KNEE_METRIC_NAMES)}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (
                key == "refine" and not isinstance(value, int)) or (key == "target_ms" and value == 0):
            raise SweepError(f"sweep.knee.{key} = {value!r}: expected {KNEE_KEYS[key]}")
    return KneeSpec(float(table.get("target_ms", 100.0)), int(table.get("refine", 0)),
                    tuple(table.get("metrics", KneeSpec.metrics)))


def _label(cfg: RunConfig, key: str) -> Any:
    if key in ("model", "gpu", "tp") and cfg.profile:
        return None  # the profile file names the hardware and model
    if key in ("profile", "workload"):
        value = getattr(cfg, key)
        return Path(value).stem if value and Path(value).suffix else value  # a name, never a path
    return _get(cfg, key)


def resolve(sweep: Sweep, points: Mapping[str, Any], variant: dict[str, Any] | None,
            revision: str) -> SweepRun:
    """One run: base <- variant <- grid point; the policy's share of the options; validated."""
    where = f"variants[{variant['name']!r}]" if variant else "grid"
    try:
        merged = _nest(sweep.base, {}, "base")
        try:
            build_config(merged, policy_options=False)
        except ConfigError as exc:  # a bad value of the base itself: say so, not which grid point met it
            raise SweepError(f"base: {exc}") from exc
        if variant:
            merged = _nest({k: v for k, v in variant.items() if k not in ("name", "description")}, merged, where)
        merged = _nest(points, merged, "grid")
        cfg = build_config(merged, policy_options=False)
        opts = {k: v for k, v in cfg.policy_options.items() if k in POLICY_OPTIONS[cfg.policy]}
        check_policy_options(cfg.policy, opts)
        cfg = RunConfig(**{**cfg.to_dict(), "policy_options": opts})
        digests = inputs(cfg)
        rid = run_id(cfg, revision, digests)
    except SweepError as exc:
        raise SweepError(f"{sweep.source}: {exc}") from exc
    except (ConfigError, ProfileError, OSError) as exc:
        point = ", ".join(f"{k}={v!r}" for k, v in points.items())
        raise SweepError(f"{sweep.source}: {where} ({point}): {exc}") from exc
    labels = {"variant": variant["name"]} if variant else {}
    labels |= {k: _label(cfg, k) for k in sweep.label_keys if k != "variant"}
    return SweepRun(rid, cfg, labels, dict(points), variant, digests)


def expand(sweep: Sweep, revision: str, extra: Mapping[str, list[Any]] | None = None) -> list[SweepRun]:
    """Every run of the sweep, variants outermost, then the grid's product in file order. ``extra`` replaces
    grid lists (knee refinement adds rates this way). Each option in ``policy_options`` must be accepted by
    some run's policy."""
    grid = {**sweep.grid, **(extra or {})}
    runs = []
    variants: list[dict[str, Any] | None] = list(sweep.variants) or [None]
    for variant in variants:
        for values in itertools.product(*grid.values()):
            runs.append(resolve(sweep, dict(zip(grid, values)), variant, revision))
    runs = list({r.key: r for r in runs}.values())  # a grid key that some policies ignore repeats runs
    _check_distinct(sweep, runs)
    given = {k for src in (sweep.base, *sweep.variants) for k in src.get("policy_options", {})}
    given |= {k.split(".", 1)[1] for src in (sweep.base, sweep.grid, *sweep.variants) for k in src
              if k.startswith("policy_options.")}
    taken = {k for r in runs for k in r.config.policy_options}
    for key in sorted(given - taken):
        raise SweepError(f"{sweep.source}: policy_options.{key}: no run's policy accepts it")
    return runs
