"""Presets: a language model with one SAE per layer, and how to read its features.

A :class:`Preset` names the model (its hub repository, one of transformer-lens's official
models), the SAE source (a sae-lens release, or a hub repository outside sae-lens's list),
the SAEs' on-disk format (:mod:`replication.locality.sae_formats`: files and loader), the hook
each layer's SAE reads, the activation threshold above which a feature counts as active (0.2
for ReLU SAEs, 0 for JumpReLU/TopK SAEs, which carry their own) and the default layers. The
two local presets are built here (tokenizer, model and SAEs, all cached). The real ones load
from the hub, or from its local cache (``HF_HUB_CACHE``/``HF_HOME``) with no network: the
model through transformer-lens's ``TransformerBridge`` (the Hugging Face model itself, with
transformer-lens hook names), the SAEs through sae-lens. Offline, every file they need is
looked up in the cache first, and a missing one raises
:class:`~replication.locality.hub.Unavailable` naming it and the cache searched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from replication.cache import ArtifactCache
from replication.locality.bpe import END_OF_TEXT, BPEConfig, stdlib_tokens
from replication.locality.hub import (
    Unavailable,
    hub_cache,
    hub_reachable,
    missing_from_cache,
    prepare_hub,
)
from replication.locality.local_saes import LocalSAEConfig, local_saes, resid_hook
from replication.locality.sae_formats import SAE_FORMATS, sae_location
from replication.locality.tiny_lm import TinyLMConfig, tiny_lm
from replication.settings import check_choice

MODEL_FILES = (("config.json",), ("model.safetensors", "model.safetensors.index.json"),
               ("tokenizer.json", "tokenizer_config.json"))  # each: one of these alternatives
MODEL_PATTERNS = ("*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt")  # what to fetch
PROCESSING = ("fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases")


@dataclass(frozen=True)
class Preset:
    """A model and its per-layer SAEs.

    Args:
        name: registry key.
        model: hub repository of the model, one of transformer-lens's official model names
            (``local`` for the presets built here).
        sae_release: sae-lens release name or hub repository of the SAEs.
        sae_id: the SAE id of a layer, a template with ``{layer}``.
        hook: the hook the layer's SAE reads, a template with ``{layer}``.
        threshold: activation above which a feature counts as active.
        n_layers: layers of the model.
        default_layers: layers a sweep covers unless told otherwise.
        sae_format: the SAEs' on-disk format and loader (key of ``SAE_FORMATS``; ``local`` for
            the presets built here).
        dtype: model dtype.
        needs_gpu: too slow on a CPU for a claim run.
        token_probes: Gaussian probes of the token-vector influence R (an unbiased Hutchinson
            estimate; None: exact, one gradient row per residual dimension).
        chunk: most gradient rows per backward pass.
        window_batch: windows that share one forward and one backward pass per layer.
        trained: for the local presets, whether the model is trained (False: the control).
    """

    name: str
    model: str
    sae_release: str
    sae_id: str
    hook: str = "blocks.{layer}.hook_resid_post"
    threshold: float = 0.0
    n_layers: int = 6
    default_layers: tuple[int, ...] = field(default=())
    sae_format: str = "sae_lens"
    dtype: str = "float32"
    needs_gpu: bool = False
    token_probes: int | None = None
    chunk: int | None = None
    window_batch: int = 8
    trained: bool = True

    @property
    def is_local(self) -> bool:
        return self.model == "local"


def _preset(**kw) -> Preset:
    preset = Preset(**kw)
    return preset if preset.default_layers else replace(
        preset, default_layers=tuple(range(preset.n_layers)))


PRESETS: dict[str, Preset] = {p.name: p for p in (
    _preset(name="local-stdlib", model="local", sae_release="local", sae_id="{layer}",
            threshold=0.2, sae_format="local", window_batch=1),
    _preset(name="local-stdlib-untrained", model="local", sae_release="local", sae_id="{layer}",
            threshold=0.2, sae_format="local", window_batch=1, trained=False),
    _preset(name="pythia-70m-deduped", model="EleutherAI/pythia-70m-deduped",
            sae_release="pythia-70m-deduped-res-sm", sae_id="blocks.{layer}.hook_resid_post",
            threshold=0.2, n_layers=6, token_probes=128, chunk=128),
    _preset(name="gpt2-small", model="gpt2", sae_release="gpt2-small-resid-post-v5-32k",
            sae_id="blocks.{layer}.hook_resid_post", n_layers=12, needs_gpu=True,
            token_probes=128, chunk=128),
    _preset(name="qwen2-0.5b", model="Qwen/Qwen2-0.5B", sae_release="chanind/sae-qwen2-0.5b-res",
            sae_id="blocks.{layer}.hook_resid_post", n_layers=24,
            default_layers=tuple(range(12)), needs_gpu=True, token_probes=256, chunk=128),
    _preset(name="llama-3.2-1b", model="meta-llama/Llama-3.2-1B",
            sae_release="chanind/sae-llama-3.2-1b-res", sae_id="blocks.{layer}.hook_resid_post",
            n_layers=16, default_layers=tuple(range(9)), needs_gpu=True, token_probes=256,
            chunk=128),
    _preset(name="gemma-2-2b", model="google/gemma-2-2b",
            sae_release="gemma-scope-2b-pt-res-canonical", sae_id="layer_{layer}/width_16k/canonical",
            sae_format="gemma_scope", n_layers=26, needs_gpu=True, token_probes=256, chunk=128),
    _preset(name="llama-3-8b", model="meta-llama/Meta-Llama-3-8B",
            sae_release="EleutherAI/sae-llama-3-8b-32x", sae_id="layers.{layer}",
            sae_format="sparsify", n_layers=32, default_layers=tuple(range(0, 31, 2)),
            dtype="bfloat16", needs_gpu=True, token_probes=256, chunk=64, window_batch=2),
)}
REAL_PRESETS = tuple(name for name, p in PRESETS.items() if not p.is_local)


def get_preset(name: str) -> Preset:
    return PRESETS[check_choice("preset", name, tuple(PRESETS))]


def resolve_layers(preset: Preset, layers: str | Sequence[int]) -> list[int]:
    """``"all"``, ``"default"`` or explicit layer indices -> sorted layers; ValueError if bad."""
    accepted = f"'all', 'default' or integers 0..{preset.n_layers - 1}"
    if layers == "all":
        return list(range(preset.n_layers))
    if layers == "default":
        return list(preset.default_layers)
    bad = ([layers] if isinstance(layers, str)
           else [layer for layer in layers if layer not in range(preset.n_layers)])
    if bad or not layers:
        raise ValueError(f"unknown layer(s) {bad or layers!r} for preset {preset.name!r}; "
                         f"accepted: {accepted}")
    return sorted(set(layers))


@dataclass
class LoadedPreset:
    """A preset ready for the influence computation.

    Args:
        preset: its registry entry.
        model: the transformer-lens model.
        saes: SAE by layer; hooks: the hook each reads, by layer.
        encode: text -> token ids of the model's tokenizer; separator: id between documents.
        decode_token: token id -> its text (for the feature cards).
        stdlib_heldout: for the local presets, the held-out stdlib token stream.
        details: what the build measured (LM loss, SAE FVU/L0/dead fraction by layer) and
            ``key``, a hash identifying the built model and SAEs (local presets only).
    """

    preset: Preset
    model: HookedTransformer
    saes: dict[int, SAE]
    hooks: dict[int, str]
    encode: Callable[[str], list[int]]
    separator: int
    decode_token: Callable[[int], str]
    stdlib_heldout: Int[Tensor, " n"] | None = None
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LocalConfig:
    """Everything the local presets are built from (one entry of the per-scale table)."""

    bpe: BPEConfig = BPEConfig()
    lm: TinyLMConfig = TinyLMConfig()
    sae: LocalSAEConfig = LocalSAEConfig()


def load_local_preset(name: str, cache: ArtifactCache, cfg: LocalConfig,
                      device: torch.device) -> LoadedPreset:
    """Build (or load from ``cache``) a local preset: tokenizer, model, one SAE per layer."""
    preset = get_preset(name)
    if not preset.is_local:
        raise ValueError(f"{name!r} is not a local preset; local presets: "
                         f"{', '.join(n for n in PRESETS if PRESETS[n].is_local)}")
    tokens = stdlib_tokens(cache, cfg.bpe)
    lm_cfg = cfg.lm if preset.trained else replace(cfg.lm, steps=0)
    model, lm_meta = tiny_lm(cache, lm_cfg, tokens.tokenizer.get_vocab_size(), tokens.train,
                             tokens.heldout, device, tokens.key)
    saes, sae_meta, saes_key = local_saes(cache, cfg.sae, model, tokens.train, tokens.heldout,
                                          lm_meta["key"])
    return LoadedPreset(
        preset=preset, model=model.requires_grad_(False),
        saes={layer: sae.requires_grad_(False) for layer, sae in saes.items()},
        hooks={layer: resid_hook(layer) for layer in saes}, encode=tokens.encode,
        separator=tokens.tokenizer.token_to_id(END_OF_TEXT),
        decode_token=lambda i: tokens.tokenizer.decode([i]), stdlib_heldout=tokens.heldout,
        details={"lm": lm_meta, "saes": sae_meta,
                 "key": saes_key},
    )


def sae_files(preset: Preset, layer: int) -> tuple[str, list[str]]:
    """``(repo_id, files)``: where a real preset's SAE for ``layer`` lives on the hub."""
    repo, folder = sae_location(preset.sae_release, preset.sae_id.format(layer=layer))
    return repo, [f"{folder}/{name}" for name in SAE_FORMATS[preset.sae_format].files]


def missing_weights(preset: Preset, layers: Sequence[int]) -> list[str]:
    """The files of ``preset`` (model, tokenizer, each layer's SAE) that the local hub cache
    lacks, as ``repo/file`` (a file's alternatives joined by ``or``)."""
    needs = [(preset.model, names) for names in MODEL_FILES]
    needs += [(repo, (name,)) for layer in layers for repo, names in [sae_files(preset, layer)]
              for name in names]
    return missing_from_cache(needs)


def fetch_real_preset(name: str, layers: str | Sequence[int]) -> list[str]:
    """Download a real preset's model (weights, config, tokenizer) and its SAEs for ``layers``
    into the local hub cache (on a connected machine; gated models need ``HF_TOKEN``); returns
    the repositories fetched. Copy the cache (``HF_HOME``) to an offline machine to run there."""
    from huggingface_hub import hf_hub_download, snapshot_download

    preset = get_preset(name)
    if preset.is_local:
        raise ValueError(f"{name!r} is a local preset; it is built here, nothing to fetch")
    snapshot_download(preset.model, allow_patterns=list(MODEL_PATTERNS))
    repos = [preset.model]
    for layer in resolve_layers(preset, layers):
        repo, files = sae_files(preset, layer)
        for filename in files:
            hf_hub_download(repo, filename)
        repos.append(f"{repo}/{files[0].rsplit('/', 1)[0]}")
    return repos


def load_real_preset(name: str, layers: str | Sequence[int], device: torch.device) -> LoadedPreset:
    """Load a real preset's model (transformer-lens ``TransformerBridge``) and SAEs (sae-lens).

    Raises :class:`Unavailable` (with the reason) when the weights cannot be had here: the hub
    is checked first and put into offline mode when unreachable; offline, the files are
    looked up in the local hub cache before anything loads, so this fails within seconds,
    naming what is missing and where it was looked for. Raises ``ValueError`` when an SAE
    reads another hook than the preset says, or its width differs from the model's.
    """
    from transformer_lens.model_bridge import TransformerBridge

    preset = get_preset(name)
    if preset.is_local:
        raise ValueError(f"{name!r} is a local preset; use load_local_preset")
    layers = resolve_layers(preset, layers)
    mode = prepare_hub()
    if not hub_reachable() and (missing := missing_weights(preset, layers)):
        raise Unavailable(f"{name}: {len(missing)} file(s) not in the local hub cache "
                          f"{hub_cache()} ({mode}): {', '.join(missing[:4])}"
                          + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""))
    loader = SAE_FORMATS[preset.sae_format].loader
    try:
        saes = {layer: SAE.from_pretrained(preset.sae_release, preset.sae_id.format(layer=layer),
                                           device=str(device), converter=loader).eval()
                for layer in layers}
        model = TransformerBridge.boot_transformers(preset.model, device=str(device),
                                                    dtype=getattr(torch, preset.dtype))
    except OSError as err:
        raise Unavailable(f"{name}: model or SAE weights not available ({mode}): "
                          f"{type(err).__name__}: {str(err).splitlines()[0]}") from err
    kwargs = saes[layers[0]].cfg.metadata.model_from_pretrained_kwargs or {}
    processing = {flag: bool(kwargs.get(flag, False)) for flag in PROCESSING}
    if any(processing.values()):
        model.enable_compatibility_mode(disable_warnings=True, **processing)
    hooks = {layer: preset.hook.format(layer=layer) for layer in layers}
    check_saes(preset, saes, hooks, model.cfg.d_model)
    tokenizer = model.tokenizer
    return LoadedPreset(
        preset=preset, model=model.eval().requires_grad_(False),
        saes={layer: sae.requires_grad_(False) for layer, sae in saes.items()},
        hooks=hooks, encode=lambda text: tokenizer.encode(text, add_special_tokens=False),
        separator=tokenizer.eos_token_id if tokenizer.eos_token_id is not None
        else tokenizer.bos_token_id,
        decode_token=lambda i: tokenizer.decode([i]),
    )


def check_saes(preset: Preset, saes: dict[int, SAE], hooks: dict[int, str], d_model: int) -> None:
    """ValueError unless every SAE reads the preset's hook and has the model's width."""
    for layer, sae in saes.items():
        read = sae.cfg.metadata.hook_name
        if read != hooks[layer] or sae.cfg.d_in != d_model:
            raise ValueError(f"{preset.name} layer {layer}: the SAE reads {read!r} with d_in "
                             f"{sae.cfg.d_in}; the preset reads {hooks[layer]!r} of a model with "
                             f"d_model {d_model}")
