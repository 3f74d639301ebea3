"""``python -m tools.observability [--check] [--root DIR]``, or
``python -m tools.observability --runbook-base-url URL --rules-to FILE``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from urllib.parse import urlsplit

from .config import DEFAULT
from .generate import ROOT, check, write
from .rules import render_rules


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
    parser.add_argument(
        "--runbook-base-url",
        help="absolute URL of your hosted runbooks page; with --rules-to, the alert rules "
        "link there (runbook_url = URL#<alert>) instead of the repository-relative default",
    )
    parser.add_argument(
        "--rules-to", type=Path, help="write only the alert rules, to this file (needs the URL)"
    )
    args = parser.parse_args(argv)
    if args.runbook_base_url is not None or args.rules_to is not None:
        url = args.runbook_base_url or ""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or args.rules_to is None:
            parser.error("--runbook-base-url needs an absolute http(s) URL, and --rules-to FILE")
        config = dataclasses.replace(DEFAULT, runbook_base_url=url)
        args.rules_to.write_text(render_rules(config), encoding="utf-8", newline="\n")
        print(f"wrote {args.rules_to} (runbooks at {url})")
        return 0
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
