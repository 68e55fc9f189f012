"""Write the claim report: ``claims.json`` (machine-readable), ``claims.md``, ``index.html``.

Claims are grouped by paper, then by section, with a verdict count per paper at the top.
Claims that did not run are collapsed by reason (one line per reason, e.g. per missing model).
In a robustness run (``--seeds``) each claim aggregates its seeds: "held for k of N seeds",
each seed's numbers side by side, and the verdict *seed-dependent* when only some held.

A run of some claims updates their entries in the existing report (same scale) and keeps the
others, each marked with the run it came from; entries of claims that no longer exist go.
The HTML is self-contained apart from the PNG figures beside it (no scripts, no CDN).
"""

from __future__ import annotations

import datetime
import html
import json
import os
import platform
from collections import Counter
from pathlib import Path

import torch

from replication.report.records import VERDICTS
from replication.settings import RunSettings, machine

FORMAT = 2  # bump when the layout of claims.json changes: older reports are not merged
FAMILY_ORDER = ("tms", "dd", "sae", "locality")
COLOURS = {
    "replicated": "#1a7f37",
    "not replicated": "#cf222e",
    "known divergence": "#9a6700",
    "seed-dependent": "#bc4c00",
    "unexpected pass": "#8250df",
    "not run": "#6e7781",
    "error": "#a40e26",
    "smoke run": "#0969da",
}
HELD = ("replicated", "unexpected pass")  # the seed's numbers met every threshold


def format_value(value, limit: int = 12) -> str:
    """Short human form of a metric value: 4 significant digits, long lists elided."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        items = [format_value(v, limit) for v in value[:limit]]
        return "[" + ", ".join(items) + (", …" if len(value) > limit else "") + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v, limit)}" for k, v in value.items()) + "}"
    return "NaN" if value is None else str(value)


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def aggregate_verdict(verdicts: list[str]) -> str:
    """One claim's verdict over its seeds (see the module docstring)."""
    judged = [v for v in verdicts if v != "not run"]
    if not judged:
        return "not run"
    if "error" in judged:
        return "error"
    if len(judged) == 1:
        return judged[0]
    held = sum(v in HELD for v in judged)
    if held == len(judged):
        return "unexpected pass" if "unexpected pass" in judged else "replicated"
    if held:
        return "seed-dependent"
    return "known divergence" if set(judged) == {"known divergence"} else "not replicated"


def aggregate(entries: list[dict], run: str) -> list[dict]:
    """Per-test entries (one per claim and seed) → one record per claim with ``per_seed``."""
    grouped: dict[str, list[dict]] = {}
    for entry in entries:
        grouped.setdefault(entry["id"], []).append(entry)
    claims = []
    for runs in grouped.values():
        runs.sort(key=lambda e: e["seed"])
        first = runs[0]
        per_seed = [{
            "seed": e["seed"], "verdict": e["verdict"] or "error", "reason": e["reason"],
            "metrics": e["metrics"], "figures": e["figures"], "notes": e["notes"],
            "links": e.get("links", []),
            "runtime_s": round(e["runtime_s"], 2), "artifacts": e.get("artifacts", []),
            "training_s": round(sum(a["seconds"] for a in e.get("artifacts", []) if a["built"]), 2),
            "nodeid": e["nodeid"],
        } for e in runs]
        verdicts = [s["verdict"] for s in per_seed]
        judged = [v for v in verdicts if v != "not run"]
        held = sum(v in HELD for v in judged)
        verdict = aggregate_verdict(verdicts)
        reason = per_seed[0]["reason"] if len(per_seed) == 1 else (
            f"held for {held} of {len(judged)} seeds" + (
                f" ({', '.join(str(s['seed']) for s in per_seed if s['verdict'] in HELD)})"
                if 0 < held < len(judged) else ""))
        if verdict == "not run":
            reason = per_seed[0]["reason"]
        claims.append({
            **{k: first[k] for k in ("id", "paper", "section", "source", "quote", "statement",
                                     "scale", "device", "markers", "divergence")},
            "verdict": verdict, "reason": reason, "held": held, "judged": len(judged),
            "seeds": [s["seed"] for s in per_seed], "run": run, "per_seed": per_seed,
        })
    return claims


def still_exists(claim: dict, rootdir: Path) -> bool:
    """True while the test function behind every seed of ``claim`` is still in the tree."""
    for seed in claim["per_seed"]:
        path, _, name = seed["nodeid"].partition("::")
        file = rootdir / path
        function = name.split("[")[0]
        if not file.exists() or f"def {function}(" not in file.read_text(encoding="utf-8"):
            return False
    return True


def previous_claims(path: Path, settings: RunSettings, rootdir: Path) -> list[dict]:
    """The claims of the report already in ``path`` (same scale and format), if any."""
    if not path.exists():
        return []
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return []
    if (previous.get("format") != FORMAT or previous.get("scale") != settings.scale
            or previous.get("smoke", False) != settings.smoke):
        return []
    return [c for c in previous["claims"] if still_exists(c, rootdir)]


def family_rank(claim_id: str) -> int:
    family = claim_id.split(".")[0]
    return FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)


def order(claims: list[dict]) -> list[dict]:
    """Claims sorted by paper (in the families' order), then section, then id."""
    paper_rank = {}
    for c in claims:
        paper_rank[c["paper"]] = min(paper_rank.get(c["paper"], 99), family_rank(c["id"]))
    return sorted(claims, key=lambda c: (paper_rank[c["paper"]], c["paper"], c["section"], c["id"]))


def write_report(entries: list[dict], settings: RunSettings, rootdir: Path = Path(".")) -> Path:
    """Write the three report files for this run's ``entries`` into ``settings.report_dir``,
    keeping the entries of an earlier report for claims this run did not touch."""
    out = settings.report_dir
    out.mkdir(parents=True, exist_ok=True)
    run = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    fresh = aggregate(entries, run)
    ran = {c["id"] for c in fresh}
    kept = [c for c in previous_claims(out / "claims.json", settings, rootdir) if c["id"] not in ran]
    claims = order(fresh + kept)
    summary = Counter(c["verdict"] for c in claims)
    document = {
        "format": FORMAT,
        "generated": run,
        "scale": settings.scale,
        "device": str(settings.device),
        "seeds": list(settings.seeds or (settings.seed,)),
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "machine": machine()},
        "summary": {v: summary[v] for v in VERDICTS if summary[v]},
        "smoke": settings.smoke,
        "costs": smoke_costs(claims) if settings.smoke else [],
        "claims": claims,
    }
    atomic_write(out / "claims.json", json.dumps(document, indent=1))
    atomic_write(out / "claims.md", render_markdown(document))
    atomic_write(out / "index.html", render_html(document))
    remove_stale_figures(out / "figures",
                         {f for c in claims for s in c["per_seed"] for f in s["figures"]})
    return out / "index.html"


def remove_stale_figures(figure_dir: Path, referenced: set[str]) -> None:
    """Delete figures that no claim of this report refers to."""
    for png in figure_dir.glob("*.png"):
        if f"{figure_dir.name}/{png.name}" not in referenced:
            png.unlink()


def smoke_costs(claims: list[dict]) -> list[dict]:
    """Each artifact a smoke run built, once: its fixture, device, peak memory and projected
    full-run time (``replication.smoke``), with the claims that use it."""
    costs: dict[str, dict] = {}
    for c in claims:
        for seed in c["per_seed"]:
            for a in seed["artifacts"]:
                if a["built"] and a.get("smoke"):
                    cost = costs.setdefault(a["key"], {"kind": a["kind"], "fixture": a["fixture"],
                                                       **a["smoke"], "claims": []})
                    cost["claims"].append(c["id"])
    return sorted(costs.values(), key=lambda cost: -cost["projected_seconds"])


def cost_rows(doc: dict) -> list[list[str]]:
    """The smoke-cost table: artifact, device, peak memory, smoke seconds, projected run, claims;
    the last row totals the builds run one after another (the largest peak, the summed times)."""
    costs = doc["costs"]
    if not costs:
        return []
    rows = [[f"{c['kind']} ({c['fixture']})", c["device"], gib(c["peak_bytes"]),
             f"{c['seconds']:.1f} s", f"{c['projected_seconds'] / 3600:.2f} h",
             ", ".join(sorted(set(c["claims"])))] for c in costs]
    total = ["all builds, one after another", ", ".join(sorted({c["device"] for c in costs})),
             f"{gib(max(c['peak_bytes'] for c in costs))} (largest)",
             f"{sum(c['seconds'] for c in costs):.1f} s",
             f"{sum(c['projected_seconds'] for c in costs) / 3600:.2f} h", ""]
    return [*rows, total]


def gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


COST_HEADER = ["artifact (fixture)", "device", "peak memory", "smoke run", "projected full run",
               "claims"]


def columns(doc: dict) -> tuple[str, ...]:
    """The verdicts the overview table has a column for (*smoke run* only in a smoke run)."""
    return tuple(v for v in VERDICTS if v != "smoke run" or doc["smoke"])


def by_paper(claims: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """``{paper: {section: [claims]}}`` in report order."""
    papers: dict[str, dict[str, list[dict]]] = {}
    for c in claims:
        papers.setdefault(c["paper"], {}).setdefault(c["section"], []).append(c)
    return papers


def not_run_by_reason(claims: list[dict]) -> dict[str, list[str]]:
    reasons: dict[str, list[str]] = {}
    for c in claims:
        if c["verdict"] == "not run":
            reasons.setdefault(c["reason"] or "no reason given", []).append(c["id"])
    return reasons


def training_text(seed: dict) -> str:
    built = [a for a in seed["artifacts"] if a["built"]]
    if built:
        kinds = ", ".join(sorted({f"{a['kind']} ({a['fixture']})" for a in built}))
        return f"its fixtures trained {seed['training_s']} s: {kinds}"
    return "its fixtures' artifacts came from the cache" if seed["artifacts"] else "no cached artifacts"


def seeds_text(c: dict) -> str:
    if c["judged"] > 1:
        return f"held for {c['held']} of {c['judged']} seeds"
    return f"seed {c['seeds'][0]}" if c["seeds"] else ""


def metric_rows(c: dict) -> list[tuple[str, dict | None, str, list[str]]]:
    """(metric name, its check (threshold, provenance, why) or None, unit, value per seed)."""
    names: dict[str, tuple[dict | None, str]] = {}
    for seed in c["per_seed"]:
        for m in seed["metrics"]:
            names.setdefault(m["name"], (m.get("check"), m.get("unit") or ""))
    rows = []
    for name, (check, unit) in names.items():
        cells = []
        for seed in c["per_seed"]:
            m = next((m for m in seed["metrics"] if m["name"] == name), None)
            if m is None:
                cells.append("")
                continue
            mark = "" if not m.get("check") else (" ✓" if m["check"]["passed"] else " ✗")
            cells.append(format_value(m["value"]) + mark)
        rows.append((name, check, unit, cells))
    return rows


def render_markdown(doc: dict) -> str:
    lines = [
        "# Superposition replication report", "",
        f"Scale `{doc['scale']}`, device `{doc['device']}`, seeds {doc['seeds']}, "
        f"generated {doc['generated']} (torch {doc['environment']['torch']}, "
        f"{doc['environment']['machine']}).", "",
        "Summary: " + ", ".join(f"{n} {v}" for v, n in doc["summary"].items()), "",
        "| paper | " + " | ".join(columns(doc)) + " |", "|---" * (len(columns(doc)) + 1) + "|",
    ]
    papers = by_paper(doc["claims"])
    for paper, sections in papers.items():
        counts = Counter(c["verdict"] for cs in sections.values() for c in cs)
        lines.append(f"| {paper} | " + " | ".join(str(counts[v] or "") for v in columns(doc))
                     + " |")
    if doc["costs"]:
        lines += ["", "## Smoke run: what each configuration costs at full length", "",
                  "| " + " | ".join(COST_HEADER) + " |", "|---" * len(COST_HEADER) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cost_rows(doc)]
    for paper, sections in papers.items():
        lines += ["", f"## {paper}"]
        claims = [c for cs in sections.values() for c in cs]
        for reason, ids in not_run_by_reason(claims).items():
            lines += ["", f"*Not run ({len(ids)}):* {reason} — " + ", ".join(f"`{i}`" for i in ids)]
        for section, cs in sections.items():
            shown = [c for c in cs if c["verdict"] != "not run"]
            if not shown:
                continue
            lines += ["", f"### {section}"]
            for c in shown:
                lines += ["", f"#### `{c['id']}` — **{c['verdict']}** ({seeds_text(c)})", "",
                          f"*Source:* {c['source']}", "", f"> {c['quote']}", "",
                          f"*Statement:* {c['statement']}"]
                if c["reason"]:
                    lines += ["", f"*Outcome:* {c['reason']}"]
                if c["divergence"]:
                    d = c["divergence"]
                    lines += ["", f"*Divergence register* ({d['scale']}, seeds {d['seeds']}): "
                                  f"{d['measured']} *Lift:* {d['lift']}"]
                seeds = [s["seed"] for s in c["per_seed"]]
                header = ["measured"] if len(seeds) == 1 else [f"seed {s}" for s in seeds]
                lines += ["", "| metric | threshold | provenance | " + " | ".join(header) + " |",
                          "|---" * (3 + len(header)) + "|"]
                for name, check, unit, cells in metric_rows(c):
                    cells = [v.replace("|", "\\|") + (f" {unit}" if unit and v else "") for v in cells]
                    lines.append(f"| {name} | {check['describe'] if check else ''} | "
                                 f"{check['provenance'] if check else ''} | " + " | ".join(cells) + " |")
                first = c["per_seed"][0]
                lines += [""] + [f"- {n}" for n in first["notes"]]
                lines += [f"- [{link['text']}]({link['href']})" for link in first.get("links", [])]
                lines += [f"![{c['id']}]({f})" for f in first["figures"]]
                lines.append(f"\n{c['scale']}, {c['device']}, {first['runtime_s']} s "
                             f"({training_text(first)}), run {c['run']}")
    return "\n".join(lines) + "\n"


CSS = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#1f2328}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}.badge{color:#fff;border-radius:10px;
padding:2px 8px;font-size:.85em;white-space:nowrap}.card{border:1px solid #d0d7de;border-radius:6px;
padding:1em;margin:1.2em 0}.reason{background:#fff8c5;padding:.5em;border-radius:4px}
.register{background:#fbefff;padding:.5em;border-radius:4px}.why{color:#656d76;font-size:.8em}
.meta{color:#656d76;font-size:.85em}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
code{background:#f6f8fa;padding:1px 4px}blockquote{border-left:4px solid #d0d7de;margin:.5em 0;
padding:.2em 1em;color:#424a53}.fail{color:#cf222e;font-weight:600}.pass{color:#1a7f37}
details{margin:.3em 0}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:2em}
"""


def badge(verdict: str) -> str:
    return (f'<span class="badge" style="background:{COLOURS[verdict]}">'
            f"{html.escape(verdict)}</span>")


def html_cell(text: str) -> str:
    e = html.escape(text)
    return (f'<span class="fail">{e}</span>' if text.endswith("✗") else
            f'<span class="pass">{e}</span>' if text.endswith("✓") else e)


def render_card(c: dict) -> str:
    e = html.escape
    seeds = [s["seed"] for s in c["per_seed"]]
    header = ["measured"] if len(seeds) == 1 else [f"seed {s}" for s in seeds]
    rows = "".join(
        f"<tr><td>{e(name)}{' (' + e(unit) + ')' if unit else ''}</td>"
        f"<td>{e(check['describe']) if check else ''}</td>"
        f"<td>{e(check['provenance']) + '<div class=why>' + e(check['why']) + '</div>' if check else ''}"
        "</td>" + "".join(f"<td>{html_cell(v)}</td>" for v in cells) + "</tr>"
        for name, check, unit, cells in metric_rows(c))
    table = ("<table><tr><th>metric</th><th>threshold</th><th>provenance</th>"
             + "".join(f"<th>{e(h)}</th>" for h in header) + f"</tr>{rows}</table>") if rows else ""
    register = ""
    if c["divergence"]:
        d = c["divergence"]
        register = (f'<div class="register"><b>Divergence register</b> ({e(d["scale"])} scale; '
                    f"diverges for seeds {d['seeds']}"
                    + (f", holds for {d['holds_for']}" if d["holds_for"] else "")
                    + f"): {e(d['measured'])}<br><b>What would lift it:</b> {e(d['lift'])}</div>")
    first = c["per_seed"][0]
    others = "".join(f' <a href="{e(f)}">seed {s["seed"]}</a>' for s in c["per_seed"][1:]
                     for f in s["figures"][:1])
    return (
        f'<div class="card" id="{e(c["id"])}"><h4><code>{e(c["id"])}</code> {badge(c["verdict"])}'
        f' <span class="meta">{e(seeds_text(c))}</span></h4>'
        f"<p><b>Source:</b> {e(c['source'])}</p><blockquote>{e(c['quote'])}</blockquote>"
        f"<p><b>Statement:</b> {e(c['statement'])}</p>"
        + (f'<p class="reason">{e(c["reason"])}</p>' if c["reason"] else "")
        + register + table
        + "".join(f"<p>{e(n)}</p>" for n in first["notes"])
        + "".join(f'<p><a href="{e(link["href"])}">{e(link["text"])}</a></p>'
                  for link in first.get("links", []))
        + "".join(f'<img src="{e(f)}" alt="{e(c["id"])}">' for f in first["figures"])
        + (f"<p class=meta>Other seeds' figures:{others}</p>" if others else "")
        + f'<p class="meta">{e(c["scale"])} · {e(c["device"])} · {first["runtime_s"]} s · '
          f'{e(training_text(first))} · run {e(c["run"])} · <code>{e(first["nodeid"])}</code></p></div>'
    )


def render_html(doc: dict) -> str:
    e = html.escape
    papers = by_paper(doc["claims"])
    overview = "".join(
        f'<tr><td><a href="#{e(paper)}">{e(paper)}</a></td>'
        + "".join(f"<td>{n or ''}</td>" for n in (
            Counter(c["verdict"] for cs in sections.values() for c in cs)[v] for v in columns(doc)))
        + "</tr>" for paper, sections in papers.items())
    body = []
    for paper, sections in papers.items():
        claims = [c for cs in sections.values() for c in cs]
        body.append(f'<h2 id="{e(paper)}">{e(paper)}</h2>')
        body += [f"<details><summary>{badge('not run')} {len(ids)} claims: {e(reason)}</summary>"
                 + ", ".join(f"<code>{e(i)}</code>" for i in ids) + "</details>"
                 for reason, ids in not_run_by_reason(claims).items()]
        for section, cs in sections.items():
            shown = [c for c in cs if c["verdict"] != "not run"]
            if not shown:
                continue
            rows = "".join(f'<tr><td><a href="#{e(c["id"])}"><code>{e(c["id"])}</code></a></td>'
                           f"<td>{badge(c['verdict'])}</td><td>{e(seeds_text(c))}</td></tr>"
                           for c in shown)
            body.append(f"<h3>{e(section)}</h3><table>{rows}</table>"
                        + "".join(render_card(c) for c in shown))
    summary = " · ".join(f"{badge(v)} {n}" for v, n in doc["summary"].items())
    costs = "" if not doc["costs"] else (
        "<h2>Smoke run: what each configuration costs at full length</h2><table><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in COST_HEADER) + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>"
                  for row in cost_rows(doc)) + "</table>")
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>Superposition replication report'
        f"</title><style>{CSS}</style></head><body><h1>Superposition replication report</h1>"
        f'<p class="meta">scale {e(doc["scale"])} · device {e(doc["device"])} · seeds {doc["seeds"]}'
        f" · generated {e(doc['generated'])} · torch {e(doc['environment']['torch'])}"
        f" · {e(doc['environment']['machine'])}</p>"
        f"<p>{summary}</p><table><tr><th>paper</th>"
        + "".join(f"<th>{badge(v)}</th>" for v in columns(doc))
        + f"</tr>{overview}</table>{costs}{''.join(body)}</body></html>\n"
    )
