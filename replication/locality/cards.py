"""Feature cards: a static page showing what a few leading features read in their window.

Per layer of a depth sweep, three leading features: the most local (lowest mean H_pos), the
median one and the least local (highest). Each card shows one window where the feature is
active at the read-out (the event whose H_pos is closest to the feature's mean): its tokens,
each tinted by J_a(t') (the square root of J over the window's largest, so that a tenth of the
peak still shows; the read-out token framed),
with the feature's mean H_pos, its mean activation, this event's H_pos and activation and
the feature's activation frequency (the layout of sae-locality-data's ``feature_case_studies``).
The page is self-contained HTML (inline styles, no scripts), readable offline.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from replication.locality.artefacts import atomic_write
from replication.locality.sweep import Sweep, feature_means, leading

PICKS = ("most local", "median", "least local")
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#1f2328}
.card{border:1px solid #d0d7de;border-radius:6px;padding:.6em 1em;margin:.8em 0}
.tokens{font-family:ui-monospace,monospace;font-size:.85em;line-height:1.9;word-break:break-all}
.tok{padding:1px 0;border-radius:2px}.readout{outline:2px solid #cf222e}
.meta{color:#656d76;font-size:.85em}h2{border-bottom:1px solid #d0d7de}"""


def picks(table: pd.DataFrame) -> pd.DataFrame:
    """Per layer, the leading features with the lowest, the median and the highest mean H_pos:
    rows of :func:`~replication.locality.sweep.feature_means` with a ``pick`` column."""
    chosen = []
    for _, group in leading(feature_means(table)).groupby(level="layer"):
        ordered = group.sort_values(["H", "frequency"], kind="stable")
        rows = ordered.iloc[[0, len(ordered) // 2, len(ordered) - 1]]
        chosen.append(rows.assign(pick=list(PICKS)[:len(rows)]))
    return pd.concat(chosen) if chosen else pd.DataFrame()


def token_span(text: str, weight: float, readout: bool, value: float) -> str:
    """One token tinted by ``weight`` in [0, 1] (sqrt of its J over the window's largest J)."""
    shown = html.escape(text.replace("\n", "↵").replace("\t", "⇥")) or "∅"
    return (f'<span class="tok{" readout" if readout else ""}" title="J = {value:.3g}" '
            f'style="background:rgba(207,34,46,{weight:.3f})">{shown}</span>')


def card(sweep: Sweep, row: pd.Series, n: int, layer: int, feature: int,
         decode_token: Callable[[int], str]) -> str:
    """The card of one feature: its representative event's window tinted by J."""
    table = sweep.table
    mine = table[(table.n_tokens == n) & (table.layer == layer) & (table.feature == feature)]
    event = mine.iloc[int(np.argmin(np.abs(mine.H_pos.to_numpy() - row.H)))]
    J = sweep.influence[n][int(event.event)].numpy()
    tokens = sweep.windows[int(event.window), -n:].tolist()
    spans = "".join(token_span(decode_token(t), (j / max(J.max(), 1e-30)) ** 0.5, i == n - 1, j)
                    for i, (t, j) in enumerate(zip(tokens, J, strict=True)))
    return (f'<div class="card"><b>{html.escape(row.pick)}</b>: feature {feature} · mean H_pos '
            f"{row.H:.2f} bits over {int(row.events)} window(s) · mean activation "
            f"{mine.activation.mean():.3g} · frequency {row.frequency:.2%}"
            f'<div class="meta">shown: window {int(event.window)}, H_pos {event.H_pos:.2f} bits, '
            f"activation {event.activation:.3g}, peak at t' = {int(event.peak_pos)} "
            f"(read-out {n - 1})</div><div class=tokens>{spans}</div></div>")


def feature_cards_html(sweep: Sweep, decode_token: Callable[[int], str], title: str) -> str:
    """The page for a one-N sweep (module docstring)."""
    (n,) = sweep.influence
    chosen = picks(sweep.table)
    sections = []
    for layer in sorted(set(chosen.index.get_level_values("layer"))):
        rows = chosen.xs(layer, level="layer").droplevel("n_tokens")
        sections.append(f"<h2>Layer {layer}</h2>" + "".join(
            card(sweep, row, n, layer, int(feature), decode_token) for feature, row in rows.iterrows()))
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p class="meta">Windows of {n} tokens; each token tinted by the square root of '
            "J_a(t') over the window's largest (darker: more influence on the feature at the "
            "framed read-out token); hover a token for its J. Per layer: the leading features "
            "with the lowest, median and highest mean H_pos.</p>" + "".join(sections) + "</body></html>")


def write_feature_cards(sweep: Sweep, decode_token: Callable[[int], str], title: str,
                        path: Path) -> Path:
    """Write :func:`feature_cards_html` to ``path`` atomically; returns the path."""
    page = feature_cards_html(sweep, decode_token, title)
    return atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
