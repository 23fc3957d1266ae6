"""simulate(config) -> Metrics: builds the workload, cost model, policy and engine, then runs SimPy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import simpy

from core.config import RunConfig
from core.cost import FittedCostModel, profile_path
from core.metrics import Metrics
from core.policy import make_policy
from core.scale import scale_cost
from core.types import RequestSpec
from core.workload import make_workload, tool_means_s
from sim.engine import Engine


def load_cost(cfg: RunConfig) -> FittedCostModel:
    """The cost model a config names: ``profile`` (a file) or the shipped ``<gpu>-<model>-tp<N>``, its
    numbers scaled by ``profile_scale``."""
    path = Path(cfg.profile) if cfg.profile else profile_path(cfg.model, cfg.gpu, cfg.tp)
    return scale_cost(FittedCostModel.from_profile(path, cfg.engine), cfg.profile_scale)


def build_workload(cfg: RunConfig, cost: FittedCostModel) -> tuple[list[RequestSpec], dict[str, int]]:
    """The run's requests, capped to the model's context."""
    return make_workload(cfg.workload, cfg.rate_rps, cfg.duration_s, cfg.seed, cost.max_context_tokens,
                         cfg.max_requests or None)


def simulate(cfg: RunConfig, specs: list[RequestSpec] | None = None, cost: FittedCostModel | None = None,
             progress: Callable[[float], None] | None = None,
             policy_cost: FittedCostModel | None = None, env: simpy.Environment | None = None) -> Metrics:
    """Run one simulation. ``specs``/``cost`` may be passed in to share them across runs; ``progress`` is
    called now and then with the simulated time (s); ``policy_cost``: the cost model the policy decides with,
    where it differs from the engine's clock (a re-simulation at a fitted speed: the real policy saw the
    profile as measured); ``env``: a fresh SimPy environment to run in (default: a new one), for a ``cost``
    that reads its clock (``experiments.wander``: a machine whose speed wanders)."""
    cost = cost or load_cost(cfg)
    notes: dict[str, int] = {}
    if specs is None:
        specs, notes = build_workload(cfg, cost)
    policy = make_policy(cfg.policy, policy_cost or cost, tool_means_s(cfg.workload, specs), **cfg.policy_options)
    metrics = Metrics(cfg.duration_s, cost.gpu_kv_blocks)
    metrics.notes.update(notes)
    env = env or simpy.Environment()
    engine = Engine(env, specs, cost, policy, metrics, cfg.batching, cfg.duration_s, cfg.drain, cfg.jump,
                    cfg.check, progress)
    env.process(engine.run())
    env.run()
    metrics.notes["steps"] = int(metrics.steps["count"].sum())
    metrics.notes["step_rows"] = len(metrics.steps["count"])
    return metrics
