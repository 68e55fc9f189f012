"""Compare two reports: ``python -m replication.report diff OLD.json NEW.json``.

Lists the claims whose verdict changed (or that appear in one report only), the checks that
flipped between holding and failing, and the judged metrics that moved beyond their tolerance:
the threshold's own tolerance for ``≈`` checks, otherwise ``--rtol`` of the larger magnitude.
Exit status 0, or 1 with ``--fail-on-change`` when any verdict changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def checks_of(claim: dict) -> dict[tuple[int, str], dict]:
    """The judged metrics of a claim, by (seed, metric name)."""
    return {(seed["seed"], m["name"]): m for seed in claim["per_seed"] for m in seed["metrics"]
            if m.get("check")}


def moved(old: dict, new: dict, rtol: float) -> float | None:
    """The largest change of a metric's elements, if beyond its tolerance; else None."""
    try:
        a = np.asarray(old["value"], dtype=float).ravel()
        b = np.asarray(new["value"], dtype=float).ravel()
    except (TypeError, ValueError):
        return None if old["value"] == new["value"] else float("inf")
    if a.shape != b.shape:
        return float("inf")
    change = np.abs(a - b)
    tolerance = new["check"].get("tolerance") if new["check"]["op"] == "≈" else None
    limit = tolerance if tolerance is not None else rtol * np.maximum(np.abs(a), np.abs(b))
    beyond = change > limit
    beyond |= np.isnan(a) != np.isnan(b)
    return float(np.nanmax(np.where(beyond, change, np.nan))) if beyond.any() else None


def diff(old: dict, new: dict, rtol: float) -> tuple[list[str], int]:
    """Lines describing what changed from ``old`` to ``new``, and the number of verdict changes."""
    before = {c["id"]: c for c in old["claims"]}
    after = {c["id"]: c for c in new["claims"]}
    lines, changed = [], 0
    for claim_id in sorted(before.keys() | after.keys()):
        if claim_id not in after or claim_id not in before:
            changed += 1
            where = "new" if claim_id in after else "removed"
            lines.append(f"{claim_id}: {where} ({(after.get(claim_id) or before[claim_id])['verdict']})")
            continue
        a, b = before[claim_id], after[claim_id]
        if a["verdict"] != b["verdict"]:
            changed += 1
            lines.append(f"{claim_id}: {a['verdict']} -> {b['verdict']}")
        old_checks, new_checks = checks_of(a), checks_of(b)
        for key in sorted(old_checks.keys() & new_checks.keys()):
            m_old, m_new = old_checks[key], new_checks[key]
            label = f"{claim_id} seed {key[0]}: {key[1]}"
            if m_old["check"]["passed"] != m_new["check"]["passed"]:
                state = "now holds" if m_new["check"]["passed"] else "no longer holds"
                lines.append(f"  {label} {state} ({m_new['check']['describe']})")
            amount = moved(m_old, m_new, rtol)
            if amount is not None:
                lines.append(f"  {label} moved by {amount:.4g}: {m_old['value']} -> {m_new['value']}")
    return lines, changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m replication.report")
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser("diff", help="verdicts and metrics that changed between reports")
    compare.add_argument("old", type=Path, help="the earlier claims.json")
    compare.add_argument("new", type=Path, help="the later claims.json")
    compare.add_argument("--rtol", type=float, default=0.05,
                         help="relative change that counts as moved, for checks without a tolerance")
    compare.add_argument("--fail-on-change", action="store_true",
                         help="exit 1 when any claim's verdict changed")
    args = parser.parse_args(argv)
    reports = []
    for path in (args.old, args.new):
        if not path.exists():
            parser.error(f"no report at {path}")
        reports.append(json.loads(path.read_text(encoding="utf-8")))
    lines, changed = diff(*reports, rtol=args.rtol)
    print("\n".join(lines) if lines else "no verdict changed and no judged metric moved")
    print(f"{changed} verdict change(s)")
    return 1 if args.fail_on_change and changed else 0


if __name__ == "__main__":
    sys.exit(main())
