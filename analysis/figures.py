"""The plot of `infercept compare` (rows of its summary table); PNG.

The figures of sweep folders (`infercept figures`) are in analysis/fig_rate.py, fig_ablation.py and
fig_estimator.py, drawn by analysis/make_figures.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from analysis.style import policy_style


def latency_vs_rate(rows: list[dict[str, Any]], out: str | Path, title: str = "",
                    target_ms: float | None = None) -> Path:
    """Normalized latency (ms/token, log scale) against request rate, one line per policy with 95% bars."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for policy in dict.fromkeys(r["policy"] for r in rows):
        pts = sorted((r["rate"], r["norm_latency_ms"], r.get("norm_latency_ms_ci95", 0.0))
                     for r in rows if r["policy"] == policy)
        style = policy_style(policy)
        low = [min(p[2], 0.9 * p[1]) for p in pts]  # keep the lower bar above zero on the log axis
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[low, [p[2] for p in pts]], label=policy,
                    capsize=3, color=style["color"], marker=style["marker"])
    if target_ms:
        ax.axhline(target_ms, color="grey", linestyle=":", linewidth=1, label=f"target {target_ms:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("request rate (req/s)")
    ax.set_ylabel("normalized latency (ms/token)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    return out
