"""Run ids: what a run's result depends on, as a digest.

A run's id digests its resolved configuration (file paths replaced by their content digests), the digests of
the files it reads (its profile, and its workload when that is a file) and the simulator's revision, a digest
of the source of core/ and sim/: the code that decides a run's result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from core.config import ConfigError, RunConfig
from core.cost import FittedCostModel, profile_path
from core.types import KINDS

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD_FILES = (".json", ".jsonl", ".csv")


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (first 16 hex digits)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def code_revision() -> str:
    """Digest of the simulator's source (core/ and sim/): the code that decides a run's results."""
    h = hashlib.sha256()
    for p in sorted([*ROOT.glob("core/*.py"), *ROOT.glob("sim/*.py")]):
        h.update(p.relative_to(ROOT).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def inputs(cfg: RunConfig) -> dict[str, str]:
    """Digests of the files a run reads: its profile (loaded once, so that a bad profile or engine key fails
    before any run starts), and its workload when that is a file."""
    prof = Path(cfg.profile) if cfg.profile else profile_path(cfg.model, cfg.gpu, cfg.tp)
    FittedCostModel.from_profile(prof, cfg.engine)
    out = {"profile": file_digest(prof)}
    if Path(cfg.workload).suffix in WORKLOAD_FILES:
        out["workload"] = file_digest(Path(cfg.workload))
    elif cfg.workload != "mixed" and cfg.workload not in KINDS:
        raise ConfigError(f"workload {cfg.workload!r}: expected 'mixed', one of {list(KINDS)}, or a "
                          f"{'/'.join(WORKLOAD_FILES)} file")
    return out


def run_id(cfg: RunConfig, revision: str, digests: Mapping[str, str] | None = None) -> str:
    """A stable id of a run: its resolved configuration (file paths replaced by their content digests), the
    digests of the files it reads (``inputs(cfg)`` unless given), and the simulator's revision."""
    digests = dict(digests) if digests is not None else inputs(cfg)
    conf = cfg.to_dict()
    conf["profile"] = ""
    if "workload" in digests:
        conf["workload"] = ""
    doc = json.dumps({"config": conf, "inputs": digests, "revision": revision}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]
