"""How each SAE release stores its SAEs on the hub, and the loader that reads them.

Three on-disk formats serve the real presets (one folder per SAE inside the release's hub
repository):

- ``sae_lens``: ``cfg.json`` + ``sae_weights.safetensors`` (W_enc ``(d_in, d_sae)``, W_dec
  ``(d_sae, d_in)``, b_enc, b_dec, and ``threshold`` for JumpReLU), read by sae-lens's own
  loader;
- ``gemma_scope``: ``params.npz`` (W_enc, W_dec, b_enc, b_dec, threshold), its config derived
  by sae-lens from the repository and folder names (``gemma_2``);
- ``sparsify`` (EleutherAI, TopK): ``cfg.json`` (d_in, expansion_factor or num_latents, k) +
  ``sae.safetensors`` (encoder.weight ``(d_sae, d_in)``, encoder.bias, W_dec ``(d_sae, d_in)``,
  b_dec); a latent is ``ReLU(encoder(x - b_dec))`` kept among the k largest.

sae-lens 6.54's own sparsify loader does not read that layout: it transposes W_dec (a size
mismatch when the SAE is built), takes ``num_latents: 0`` (the default when the expansion
factor sets the width) as zero latents, does not subtract b_dec before encoding when the
decoder is normalised, and reads ``cfg.json`` beside a weights file it never downloaded.
:func:`sparsify_topk_loader` reads it with sae-lens's config reader and fixes those four
points; ``tests/test_real_presets.py`` checks both against the layout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import hf_hub_download
from sae_lens.loading.pretrained_sae_loaders import (
    get_gemma_2_config_from_hf,
    get_sparsify_config_from_disk,
    load_safetensors_weights,
)
from sae_lens.loading.pretrained_saes_directory import get_repo_id_and_folder_name
from torch import Tensor

SPARSIFY_ACTIVATIONS = ("topk",)


def sparsify_topk_loader(repo_id: str, folder_name: str, device: str = "cpu",
                         force_download: bool = False, cfg_overrides: dict[str, Any] | None = None,
                         ) -> tuple[dict[str, Any], dict[str, Tensor], None]:
    """A sae-lens hub loader (``PretrainedSaeHuggingfaceLoader``) for a sparsify TopK SAE in
    folder ``folder_name`` of ``repo_id``: ``(cfg_dict, state_dict, None)`` with sae-lens's
    shapes (W_enc ``(d_in, d_sae)``, W_dec ``(d_sae, d_in)``)."""
    cfg_path, weights_path = (hf_hub_download(repo_id, f"{folder_name}/{name}",
                                              force_download=force_download)
                              for name in ("cfg.json", "sae.safetensors"))
    folder = Path(cfg_path).parent
    cfg = get_sparsify_config_from_disk(folder, device, cfg_overrides)
    raw = json.loads((folder / "cfg.json").read_text())
    activation = raw.get("activation", "topk")
    if activation not in SPARSIFY_ACTIVATIONS:
        raise ValueError(f"{repo_id}/{folder_name}: sparsify activation {activation!r}; "
                         f"accepted: {', '.join(SPARSIFY_ACTIVATIONS)}")
    cfg["d_sae"] = raw.get("num_latents") or raw["d_in"] * raw["expansion_factor"]
    cfg["apply_b_dec_to_input"] = True          # sparsify encodes x - b_dec
    weights = load_safetensors_weights(Path(weights_path), device=device, dtype=cfg["dtype"])
    state = {"W_enc": weights["encoder.weight"].T.contiguous(), "b_enc": weights["encoder.bias"],
             "W_dec": weights["W_dec"], "b_dec": weights["b_dec"]}
    expected = {"W_enc": (cfg["d_in"], cfg["d_sae"]), "W_dec": (cfg["d_sae"], cfg["d_in"])}
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise ValueError(f"{repo_id}/{folder_name}: {key} has shape "
                             f"{tuple(state[key].shape)}; expected {shape} from cfg.json")
    return cfg, state, None


@dataclass(frozen=True)
class SAEFormat:
    """One on-disk SAE format.

    Args:
        name: registry key.
        files: the files of one SAE, relative to its folder in the release's repository.
        conversion: sae-lens's name for the format in its release list (``conversion_func``;
            None: sae-lens's own format).
        loader: the sae-lens hub loader to read it with (None: the one sae-lens picks for the
            release).
        config_from_names: sae-lens's config getter that derives the config from the
            repository and folder names alone (no download), if the format has one.
    """

    name: str
    files: tuple[str, ...]
    conversion: str | None = None
    loader: Callable | None = None
    config_from_names: Callable | None = None


SAE_FORMATS = {f.name: f for f in (
    SAEFormat("sae_lens", ("cfg.json", "sae_weights.safetensors")),
    SAEFormat("gemma_scope", ("params.npz",), conversion="gemma_2",
              config_from_names=get_gemma_2_config_from_hf),
    SAEFormat("sparsify", ("cfg.json", "sae.safetensors"), conversion="sparsify",
              loader=sparsify_topk_loader),
)}


def sae_location(release: str, sae_id: str) -> tuple[str, str]:
    """``(repo_id, folder)`` of an SAE: from sae-lens's release list, or, for a hub repository
    outside it, the repository itself with the SAE id as the folder."""
    return get_repo_id_and_folder_name(release, sae_id)

