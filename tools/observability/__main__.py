"""``python -m tools.observability [--check] [--root DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .generate import ROOT, check, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.observability",
        description="Generate switchgear's alert rules, promtool tests, Grafana dashboards, "
        "provisioning example, runbooks and dashboard docs.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing every file that differs from a fresh generation",
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="repository root (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = check(args.root)
        if stale:
            print("generated files are out of date (run `python -m tools.observability`):")
            for rel in stale:
                print(f"  {rel}")
            return 1
        print("generated files are up to date")
        return 0
    changed = write(args.root)
    for rel in changed:
        print(f"wrote {rel}")
    if not changed:
        print("generated files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
