"""Presets: a language model with one SAE per layer, and how to read its features.

A :class:`Preset` names the transformer-lens model, the SAE source (a sae-lens release, or a
hub repository with a loader for releases outside sae-lens's list), the hook each layer's SAE
reads, the activation threshold above which a feature counts as active (0.2 for ReLU SAEs, 0
for JumpReLU/TopK SAEs, which carry their own) and the default layers. The two local presets
are built here (tokenizer, model and SAEs, all cached); the real ones load from the hub and
raise :class:`~replication.locality.hub.Unavailable` within seconds when they cannot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Int
from sae_lens import SAE
from sae_lens.loading.pretrained_sae_loaders import sparsify_huggingface_loader
from torch import Tensor
from transformer_lens import HookedTransformer

from replication.cache import ArtifactCache
from replication.locality.bpe import END_OF_TEXT, BPEConfig, stdlib_tokens
from replication.locality.hub import Unavailable, prepare_hub
from replication.locality.local_saes import LocalSAEConfig, local_saes, resid_hook
from replication.locality.tiny_lm import TinyLMConfig, tiny_lm
from replication.settings import check_choice

SAE_CONVERTERS = {"sparsify": sparsify_huggingface_loader}


@dataclass(frozen=True)
class Preset:
    """A model and its per-layer SAEs.

    Args:
        name: registry key.
        model: transformer-lens model name (``local`` for the presets built here).
        sae_release: sae-lens release name or hub repository of the SAEs.
        sae_id: the SAE id of a layer, a template with ``{layer}``.
        hook: the hook the layer's SAE reads, a template with ``{layer}``.
        threshold: activation above which a feature counts as active.
        n_layers: layers of the model.
        default_layers: layers a sweep covers unless told otherwise.
        converter: sae-lens loader for releases outside its list (key of ``SAE_CONVERTERS``).
        dtype: model dtype.
        needs_gpu: too slow on a CPU for a claim run.
        token_probes: Gaussian probes of the token-vector influence R (an unbiased Hutchinson
            estimate; None: exact, one gradient row per residual dimension).
        chunk: most gradient rows per backward pass.
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
    converter: str | None = None
    dtype: str = "float32"
    needs_gpu: bool = False
    token_probes: int | None = None
    chunk: int | None = None
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
            threshold=0.2),
    _preset(name="local-stdlib-untrained", model="local", sae_release="local", sae_id="{layer}",
            threshold=0.2, trained=False),
    _preset(name="pythia-70m-deduped", model="pythia-70m-deduped",
            sae_release="pythia-70m-deduped-res-sm", sae_id="blocks.{layer}.hook_resid_post",
            threshold=0.2, n_layers=6, token_probes=128, chunk=128),
    _preset(name="gpt2-small", model="gpt2-small", sae_release="gpt2-small-resid-post-v5-32k",
            sae_id="blocks.{layer}.hook_resid_post", n_layers=12, needs_gpu=True,
            token_probes=128, chunk=128),
    _preset(name="qwen2-0.5b", model="qwen2-0.5b", sae_release="chanind/sae-qwen2-0.5b-res",
            sae_id="blocks.{layer}.hook_resid_post", n_layers=24,
            default_layers=tuple(range(12)), needs_gpu=True, token_probes=256, chunk=128),
    _preset(name="llama-3.2-1b", model="meta-llama/Llama-3.2-1B",
            sae_release="chanind/sae-llama-3.2-1b-res", sae_id="blocks.{layer}.hook_resid_post",
            n_layers=16, default_layers=tuple(range(9)), needs_gpu=True, token_probes=256,
            chunk=128),
    _preset(name="gemma-2-2b", model="gemma-2-2b", sae_release="gemma-scope-2b-pt-res-canonical",
            sae_id="layer_{layer}/width_16k/canonical", n_layers=26, needs_gpu=True,
            token_probes=256, chunk=128),
    _preset(name="llama-3-8b", model="meta-llama/Meta-Llama-3-8B",
            sae_release="EleutherAI/sae-llama-3-8b-32x", sae_id="layers.{layer}",
            converter="sparsify", n_layers=32, default_layers=tuple(range(0, 31, 2)),
            dtype="bfloat16", needs_gpu=True, token_probes=256, chunk=64),
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
        separator=tokens.tokenizer.token_to_id(END_OF_TEXT), stdlib_heldout=tokens.heldout,
        details={"lm": lm_meta, "saes": sae_meta,
                 "key": saes_key},
    )


def load_real_preset(name: str, layers: str | Sequence[int], device: torch.device) -> LoadedPreset:
    """Load a real preset's model and SAEs through transformer-lens and sae-lens.

    Raises :class:`Unavailable` (with the reason) when the weights cannot be had here: the hub
    is checked first and put into offline mode when unreachable, so this fails within seconds.
    """
    preset = get_preset(name)
    if preset.is_local:
        raise ValueError(f"{name!r} is a local preset; use load_local_preset")
    layers = resolve_layers(preset, layers)
    mode = prepare_hub()
    converter = SAE_CONVERTERS.get(preset.converter)
    try:
        saes = {layer: SAE.from_pretrained(preset.sae_release, preset.sae_id.format(layer=layer),
                                           device=str(device), converter=converter).eval()
                for layer in layers}
        kwargs = dict(saes[layers[0]].cfg.metadata.model_from_pretrained_kwargs or {})
        model = HookedTransformer.from_pretrained_no_processing(
            preset.model, **{**kwargs, "device": str(device),
                             "dtype": getattr(torch, preset.dtype)})
    except OSError as err:
        raise Unavailable(f"{name}: model or SAE weights not available ({mode}): "
                          f"{type(err).__name__}: {str(err).splitlines()[0]}") from err
    model.eval()
    tokenizer = model.tokenizer
    return LoadedPreset(
        preset=preset, model=model.requires_grad_(False),
        saes={layer: sae.requires_grad_(False) for layer, sae in saes.items()},
        hooks={layer: preset.hook.format(layer=layer) for layer in layers},
        encode=lambda text: tokenizer.encode(text, add_special_tokens=False),
        separator=tokenizer.eos_token_id if tokenizer.eos_token_id is not None
        else tokenizer.bos_token_id,
    )
