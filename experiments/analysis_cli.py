"""`infercept figures` and `infercept report`: figures and the reproduction report from sweep folders."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_figures(args: argparse.Namespace) -> None:
    """Every figure the given sweeps' runs tables support, as PNG and PDF."""
    from analysis.make_figures import make_figures

    for path in make_figures([Path(d) for d in args.sweep_dirs], Path(args.out)):
        print(f"wrote {path}")


def cmd_report(args: argparse.Namespace) -> None:
    """The reproduction report: each claim of the paper beside our number."""
    from analysis.report import write_report

    out = write_report([Path(d) for d in args.sweep_dirs], Path(args.out), Path(args.figures))
    print(f"wrote {out}")


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `figures` and `report`."""
    f = sub.add_parser("figures", help="the paper's figures from sweep folders (runs.parquet)")
    f.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR", help="folders written by `infercept sweep`")
    f.add_argument("--out", required=True, help="folder for the PNG and PDF files")
    f.set_defaults(fn=cmd_figures)
    r = sub.add_parser("report", help="the reproduction report: the paper's claims beside our numbers")
    r.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR", help="folders written by `infercept sweep`")
    r.add_argument("--out", default="docs/reproduction.md", help="the report (Markdown)")
    r.add_argument("--figures", default="docs/figures", help="where the figures it links to are")
    r.set_defaults(fn=cmd_report)
