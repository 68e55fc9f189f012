"""Write the claim report: ``claims.json`` (machine-readable), ``claims.md``, ``index.html``.

The HTML is self-contained apart from the PNG figures beside it (no scripts, no CDN), so it
reads offline in any browser.
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
from replication.settings import RunSettings

COLOURS = {
    "replicated": "#1a7f37",
    "not replicated": "#cf222e",
    "known divergence": "#9a6700",
    "seed-dependent": "#bc4c00",
    "unexpected pass": "#8250df",
    "not run": "#6e7781",
    "error": "#cf222e",
}


def format_value(value, limit: int = 16) -> str:
    """Short human form of a metric value: 4 significant digits, long lists elided."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        items = [format_value(v, limit) for v in value[:limit]]
        return "[" + ", ".join(items) + (", …" if len(value) > limit else "") + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v, limit)}" for k, v in value.items()) + "}"
    return str(value)


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(claims: list[dict], settings: RunSettings) -> Path:
    """Write the three report files for ``claims`` into ``settings.report_dir``."""
    out = settings.report_dir
    out.mkdir(parents=True, exist_ok=True)
    claims = sorted(claims, key=lambda c: c["id"])
    for claim in claims:
        claim["runtime_s"] = round(claim["runtime_s"], 2)
        claim["verdict"] = claim["verdict"] or "error"
    summary = Counter(c["verdict"] for c in claims)
    document = {
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "scale": settings.scale,
        "device": str(settings.device),
        "seed": settings.seed,
        "environment": {"python": platform.python_version(), "torch": torch.__version__},
        "summary": {v: summary[v] for v in VERDICTS if summary[v]},
        "claims": claims,
    }
    atomic_write(out / "claims.json", json.dumps(document, indent=1))
    atomic_write(out / "claims.md", render_markdown(document))
    atomic_write(out / "index.html", render_html(document))
    remove_stale_figures(out / "figures", {f for c in claims for f in c["figures"]})
    return out / "index.html"


def remove_stale_figures(figure_dir: Path, referenced: set[str]) -> None:
    """Delete figures a previous run left that no claim of this report refers to."""
    for png in figure_dir.glob("*.png"):
        if f"{figure_dir.name}/{png.name}" not in referenced:
            png.unlink()


def render_markdown(doc: dict) -> str:
    lines = [
        "# Superposition replication report",
        "",
        f"Scale `{doc['scale']}`, device `{doc['device']}`, seed {doc['seed']}, "
        f"generated {doc['generated']}.",
        "",
        "Summary: " + ", ".join(f"{n} {v}" for v, n in doc["summary"].items()),
        "",
        "| claim | paper | verdict | runtime (s) |",
        "|---|---|---|---|",
    ]
    for c in doc["claims"]:
        lines.append(f"| `{c['id']}` | {c['paper']} | **{c['verdict']}** | {c['runtime_s']} |")
    for c in doc["claims"]:
        lines += ["", f"## {c['id']} — {c['verdict']}", "", f"*{c['paper']}*", "", c["statement"]]
        if c["reason"]:
            lines += ["", f"> {c['reason']}"]
        if c["metrics"]:
            lines += ["", "| metric | value | threshold | provenance | holds |", "|---|---|---|---|---|"]
            for m in c["metrics"]:
                unit = f" {m['unit']}" if m.get("unit") else ""
                value = format_value(m["value"]).replace("|", "\\|")
                check = m.get("check") or {}
                lines.append(f"| {m['name']} | {value}{unit} | {check.get('describe', '')} | "
                             f"{check.get('provenance', '')} | "
                             f"{'' if not check else ('yes' if check['passed'] else '**no**')} |")
        lines += [""] + [f"- {n}" for n in c["notes"]] if c["notes"] else []
        lines += [f"![{c['id']}]({f})" for f in c["figures"]]
        lines.append(f"\nseeds {c['seeds']}, scale {c['scale']}, device {c['device']}, "
                     f"{c['runtime_s']} s, `{c['nodeid']}`")
    return "\n".join(lines) + "\n"


CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1f2328}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}.badge{color:#fff;border-radius:10px;
padding:2px 8px;font-size:.85em;white-space:nowrap}.card{border:1px solid #d0d7de;border-radius:6px;
padding:1em;margin:1.5em 0}.reason{background:#fff8c5;padding:.5em;border-radius:4px}
.meta{color:#656d76;font-size:.85em}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
code{background:#f6f8fa;padding:1px 4px}
"""


def badge(verdict: str) -> str:
    return (f'<span class="badge" style="background:{COLOURS[verdict]}">'
            f"{html.escape(verdict)}</span>")


def render_html(doc: dict) -> str:
    e = html.escape
    rows = "".join(
        f'<tr><td><a href="#{e(c["id"])}"><code>{e(c["id"])}</code></a></td>'
        f"<td>{e(c['paper'])}</td><td>{badge(c['verdict'])}</td><td>{c['runtime_s']}</td></tr>"
        for c in doc["claims"]
    )
    cards = []
    for c in doc["claims"]:
        metrics = "".join(
            f"<tr><td>{e(m['name'])}</td><td>{e(format_value(m['value']))}"
            f"{' ' + e(m['unit']) if m.get('unit') else ''}</td>"
            f"<td>{e((m.get('check') or {}).get('describe', ''))}</td></tr>"
            for m in c["metrics"]
        )
        cards.append(
            f'<div class="card" id="{e(c["id"])}"><h2><code>{e(c["id"])}</code> {badge(c["verdict"])}</h2>'
            f"<p><em>{e(c['paper'])}</em>{' — ' + e(c['section']) if c['section'] else ''}</p>"
            f"<p>{e(c['statement'])}</p>"
            + (f'<p class="reason">{e(c["reason"])}</p>' if c["reason"] else "")
            + (f"<table><tr><th>metric</th><th>measured</th><th>expected</th></tr>{metrics}</table>"
               if metrics else "")
            + "".join(f"<p>{e(n)}</p>" for n in c["notes"])
            + "".join(f'<img src="{e(f)}" alt="{e(c["id"])}">' for f in c["figures"])
            + f'<p class="meta">seeds {c["seeds"]} · scale {e(c["scale"])} · device '
              f'{e(c["device"])} · {c["runtime_s"]} s · <code>{e(c["nodeid"])}</code></p></div>'
        )
    summary = " · ".join(f"{badge(v)} {n}" for v, n in doc["summary"].items())
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>Superposition replication report'
        f"</title><style>{CSS}</style></head><body><h1>Superposition replication report</h1>"
        f'<p class="meta">scale {e(doc["scale"])} · device {e(doc["device"])} · seed {doc["seed"]}'
        f" · generated {e(doc['generated'])} · torch {e(doc['environment']['torch'])}</p>"
        f"<p>{summary}</p><table><tr><th>claim</th><th>paper</th><th>verdict</th>"
        f"<th>runtime (s)</th></tr>{rows}</table>{''.join(cards)}</body></html>\n"
    )
