"""``compt report SWEEP_DIR [SWEEP_DIR ...] --out DIR``: tables, paper comparison, plots and report.html.

Argument wiring only (the library: :mod:`compt.report.build`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="summarise sweeps: tables (mean ± std over seeds), paper comparison, plots, report.html",
        description="Read every results.json under the sweep folders, group the runs by their overrides "
        "minus the seed, and write tables (Markdown, CSV, LaTeX), the comparison with the paper's numbers, "
        "the plots the data supports and a self-contained report.html.",
    )
    parser.add_argument(
        "sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR", help="sweep or run folder(s)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: SWEEP_DIR/report)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--quiet", action="store_true", help="do not print the Markdown report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from compt.report.build import build_report

    out = args.out or args.sweep_dirs[0] / "report"
    report = build_report(args.sweep_dirs, out, plots=not args.no_plots)
    if not args.quiet:
        print(report.markdown)
    left_out = [*report.scan.missing, *report.scan.diverged]
    if left_out:  # named even with --quiet: a mean over fewer runs than launched must never pass unnoticed
        print(f"left out of the tables: {len(left_out)} job(s) or run(s):", file=sys.stderr)
        for item in left_out:
            print(f"  {item.path}: {item.reason}", file=sys.stderr)
    print(f"wrote {len(report.files)} files to {report.out} (open {report.html})", file=sys.stderr)
    return 0
