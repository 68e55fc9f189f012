"""Command line: run an H_pos sweep on one preset and write its tables and figures.

    python -m replication.locality --preset gpt2-small --layers all --windows 50 --device cuda
    python -m replication.locality --preset gpt2-small --layers all --fetch   # connected machine

writes ``<out>/<preset>-<corpus>-depth.csv`` (one row per event: preset, corpus, n_tokens,
layer, window, feature, activation, H_pos, token_H, frequency), the context-length sweep
beside it, ``<preset>-<corpus>-summary.json`` (per-layer statistics over leading features,
depth trend) and the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from replication.cache import ArtifactCache
from replication.locality.artefacts import atomic_write, cards_path, save_sweep, sweep_stem
from replication.locality.cards import write_feature_cards
from replication.locality.corpus import CORPORA, fetch_corpus
from replication.locality.figures import context_figure, depth_figure
from replication.locality.hub import Unavailable
from replication.locality.presets import (
    PRESETS,
    fetch_real_preset,
    get_preset,
    load_local_preset,
    load_real_preset,
    resolve_layers,
)
from replication.locality.scales import LOCALITY_SCALES, with_seed
from replication.locality.sweep import context_sweep, depth_sweep, depth_trend, layer_summary
from replication.settings import DEFAULT_CACHE_DIR, DEVICES, SCALES, for_scale, resolve_device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m replication.locality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True, choices=list(PRESETS))
    parser.add_argument("--layers", default="default",
                        help="'all', 'default' or comma-separated layer indices")
    parser.add_argument("--windows", type=int, default=50,
                        help="windows of the depth sweep, and per length of the context sweep")
    parser.add_argument("--window-length", type=int, default=64, help="tokens per window (N)")
    parser.add_argument("--corpus", choices=CORPORA, default=None,
                        help="default: stdlib for local presets, wikitext for real ones")
    parser.add_argument("--context-lengths", default="8,16,32,64,128",
                        help="comma-separated window lengths of the context sweep ('' to skip)")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", choices=SCALES, default="cpu",
                        help="how the local presets are built")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--out", type=Path, default=Path("reports/locality"))
    parser.add_argument("--fetch", action="store_true",
                        help="download the real preset's model, its SAEs for --layers and the "
                             "corpus into the local caches (HF_HOME), then exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    try:
        layers = resolve_layers(preset, args.layers if args.layers in ("all", "default")
                                else [int(x) for x in args.layers.split(",")])
        lengths = [int(x) for x in args.context_lengths.split(",") if x]
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    corpus = args.corpus or ("stdlib" if preset.is_local else "wikitext")
    if args.fetch:
        if preset.is_local:
            parser.error(f"--fetch takes a real preset; {preset.name} is built here")
        for repo in fetch_real_preset(preset.name, layers):
            print(f"fetched {repo}")
        if corpus != "stdlib":
            fetch_corpus(corpus)
            print(f"fetched corpus {corpus}")
        return 0
    cache = ArtifactCache(args.cache_dir)
    try:
        if preset.is_local:
            local_cfg = with_seed(for_scale(LOCALITY_SCALES, args.scale), args.seed).local
            loaded = load_local_preset(preset.name, cache, local_cfg, device)
            loaded = replace(loaded, saes={layer: loaded.saes[layer] for layer in layers})
        else:
            loaded = load_real_preset(preset.name, layers, device)
        depth = depth_sweep(cache, loaded, corpus, args.windows, args.window_length, args.seed)
        context = (context_sweep(cache, loaded, corpus, lengths, args.windows, args.seed)
                   if lengths else None)
    except Unavailable as err:
        print(f"not available: {err}", file=sys.stderr)
        return 2
    stem = f"{preset.name}-{corpus}"
    out = args.out
    config = {"preset": preset.name, "layers": layers, "device": str(device), "seed": args.seed,
              "corpus": corpus, "windows": args.windows, "build": loaded.details.get("key")}
    depth_stem = sweep_stem(out, preset.name, corpus, "depth", args.seed)
    save_sweep(depth, depth_stem, {**config, "sweep": "depth", "length": args.window_length})
    write_feature_cards(depth, loaded.decode_token, f"{preset.name}: feature cards ({corpus})",
                        cards_path(depth_stem))
    summary = layer_summary(depth.table)
    depth_figure(depth.table, f"{preset.name}: H_pos by layer").savefig(
        out / f"{stem}-depth.png", dpi=110, bbox_inches="tight")
    if context is not None:
        save_sweep(context, sweep_stem(out, preset.name, corpus, "context", args.seed),
                   {**config, "sweep": "context", "lengths": lengths})
        context_figure(context.table, f"{preset.name}: H_pos against window length",
                       for_scale(LOCALITY_SCALES, args.scale).context_layer).savefig(
            out / f"{stem}-context.png", dpi=110, bbox_inches="tight")
    report = {"preset": preset.name, "corpus": corpus, "windows": args.windows,
              "window_length": args.window_length, "seed": args.seed, "device": str(device),
              "trend": depth_trend(summary), "per_layer": summary.reset_index().to_dict("records"),
              "details": loaded.details}
    atomic_write(out / f"{stem}-summary.json",
                 lambda tmp: tmp.write_text(json.dumps(report, indent=1, default=str)))
    print(summary.to_string())
    print(f"trend: {report['trend']}\nwrote {out}/{stem}-*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
