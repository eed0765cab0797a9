"""``python -m slogate``: the commands that work on reports after (or between) runs.

    python -m slogate report  [--reports-dir DIR] [--serve] [--port N]
    python -m slogate compare DIR_A DIR_B [--out DIR] [--names A,B]

``report`` redraws ``summary.md`` and ``charts/`` from the case files and builds the
Allure HTML report; ``compare`` puts two runs side by side.  Errors a user can cause
(missing directory, Allure not installed) are one message with the fix, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from slogate.errors import ConfigError
from slogate.report import compare as compare_mod
from slogate.report import html
from slogate.report.sweep import write_sweep_report


def _report(args: argparse.Namespace) -> int:
    reports = Path(args.reports_dir)
    if not reports.is_dir():
        raise ConfigError(f"--reports-dir {reports}: no such directory; run the suite first")
    for path in write_sweep_report(reports):
        print(f"wrote {path}")
    index = html.generate(reports / "allure-results", reports / "allure-report")
    print(f"wrote {index.parent}/ (Allure report)")
    if not args.serve:
        print(
            f"view it with: python -m slogate report --reports-dir {reports} --serve "
            f"(the report needs a web server; opening index.html as a file shows nothing)"
        )
        return 0
    with html.serve(index.parent, args.port) as url:
        print(f"serving {url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def _compare(args: argparse.Namespace) -> int:
    names = None
    if args.names:
        names = [n.strip() for n in args.names.split(",")]
        if len(names) != 2:
            raise ConfigError(
                f"--names {args.names!r}: expected two names, e.g. --names vllm,sglang"
            )
    comparison = compare_mod.build(Path(args.dir_a), Path(args.dir_b), names)
    written = compare_mod.write(comparison, Path(args.out))
    print(f"{comparison.names[0]} (A) vs {comparison.names[1]} (B)")
    for s in comparison.statements:
        print(f"  in{s.pair[0]}/out{s.pair[1]}: {s.text}")
    for path in written:
        print(f"wrote {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m slogate", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "report",
        help="build reports/allure-report (HTML) and redraw summary.md and charts/",
    )
    r.add_argument("--reports-dir", default="reports", metavar="DIR", help="default: reports/")
    r.add_argument("--serve", action="store_true", help="then serve it on 127.0.0.1")
    r.add_argument("--port", type=int, default=0, help="port for --serve (default: any free)")
    r.set_defaults(func=_report)
    c = sub.add_parser("compare", help="compare two runs: table, charts and summary")
    c.add_argument("dir_a", metavar="DIR_A", help="reports directory (or its results/) of A")
    c.add_argument("dir_b", metavar="DIR_B", help="reports directory (or its results/) of B")
    c.add_argument(
        "--out", default="reports/compare", metavar="DIR", help="default: reports/compare/"
    )
    c.add_argument("--names", default=None, metavar="A,B", help="names of the two engines")
    c.set_defaults(func=_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, html.ReportError) as exc:
        print(f"python -m slogate {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
