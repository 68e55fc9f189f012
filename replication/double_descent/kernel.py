"""The packed double-descent loss and gradients as one fused CPU pass (a small C++ library).

The math is that of :mod:`replication.double_descent.model`. Per instance k, per slot s of its chunks
 (a training point with example weight w, skipped if padding), with K = m + 1:

1. the hidden vector [h; 1] = [Σ_entries x_e W_k[:, f_e]; 1] from the slot's non-zero entries;
2. one pass over the features: r_f = ReLU([h; 1] · [W; b]_k[:, f]) is computed once, in
   registers, and added to both sums that need it, M = Σ_f I_kf [W; b]_k[:, f] r_f and the
   decoder gradient G_k[:, f] += w [h; 1] r_f (in units of 2 I_kf). The (slots × n)
   outputs are never stored: the step is arithmetic-bound, not memory-bound;
3. the corrections at the slot's entries: r at each entry (live if > 0), the loss
   w (Σ_f I r_f² − Σ_e I_e x_e (2 r_e − x_e)), with Σ_f I r_f² = [h; 1] · M; the decoder's x
   term G_k[:, f_e] −= w x_e [r_e > 0] [h; 1]; and ∂L/∂h = 2 w (M[:m] − Σ_e I_e [r_e > 0] x_e
   W_k[:, f_e]), whose encoder gradient (∂L/∂h) x_e goes to E_k[:, f_e].

The feature loop is written out per K with K named scalar accumulators and rows: GCC vectorises
that shape over features and not a loop over k inside it (measured 3–5x apart).

The library is plain C++ called through ctypes, built and cached by :mod:`replication.native`.
Instances are split over threads; each instance is one thread's and sums its slots in a fixed
order, so the results do not depend on the thread count. Where the library cannot be built the
portable path of :mod:`replication.double_descent.model` serves, with a warning. The source lives
in this module so that the artifact cache key (the builder's code version) changes with it.
"""

from __future__ import annotations

import ctypes
import functools

import torch
from jaxtyping import Float
from torch import Tensor

from replication import native
from replication.double_descent.packing import PackedSets

MAX_HIDDEN = 10  # hidden sizes m = 1 … MAX_HIDDEN have a compiled specialisation

SLOT_BLOCK = 4  # slots sharing one pass over the features (a quarter of the traffic of W, b, G)

SPECIALISATION = """
static void packed_step_{K}(const float* dec, const float* dec_imp, const float* importance,
                            const float* slot_weight, const int64_t* slot_entries,
                            const int64_t* entry_column, const float* entry_value,
                            const int64_t* instance_chunks, int64_t k0, int64_t k1, int64_t C,
                            int64_t n, float* loss, float* G, float* E) {{
  constexpr int K = {K}, m = K - 1, B = {B};
  for (int64_t k = k0; k < k1; ++k) {{
    const float* d = dec + k * K * n;
    const float* e = dec_imp + k * K * n;
    const float* imp = importance + k * n;
    float* g = G + k * K * n;
    float* enc = E + k * m * n;
    {rows}
    double instance_loss = 0.0;
    const int64_t end = instance_chunks[k + 1] * C;
    for (int64_t s0 = instance_chunks[k] * C; s0 < end; s0 += B) {{
      float h[B][K] = {{}}, w[B], M[B][K];
      bool any = false;
      for (int b = 0; b < B; ++b) {{
        w[b] = 0.f;  // slots past the instance's last are padding
        if (s0 + b >= end) continue;
        w[b] = slot_weight[s0 + b];
        any = any || w[b] != 0.f;
        h[b][m] = 1.f;
        for (int64_t i = slot_entries[s0 + b]; i < slot_entries[s0 + b + 1]; ++i) {{
          const int64_t f = entry_column[i] - k * n;
          for (int j = 0; j < m; ++j) h[b][j] += entry_value[i] * d[j * n + f];
        }}
      }}
      if (!any) continue;  // padding
      {inputs}
      #pragma omp simd reduction(+:{accumulators})
      for (int64_t f = 0; f < n; ++f) {{
        {outputs}
        {sums}
      }}
      {store}
      for (int b = 0; b < B; ++b) {{  // the corrections at each slot's entries
        if (w[b] == 0.f) continue;
        const int64_t first = slot_entries[s0 + b], last = slot_entries[s0 + b + 1];
        float slot_loss = 0.f, grad_h[m];
        for (int j = 0; j < K; ++j) slot_loss += h[b][j] * M[b][j];
        for (int j = 0; j < m; ++j) grad_h[j] = M[b][j];
        for (int64_t i = first; i < last; ++i) {{
          const int64_t f = entry_column[i] - k * n;
          const float x = entry_value[i];
          float r = 0.f;
          for (int j = 0; j < K; ++j) r += h[b][j] * d[j * n + f];
          r = std::max(r, 0.f);
          slot_loss -= imp[f] * x * (2.f * r - x);
          if (r > 0.f) {{
            for (int j = 0; j < K; ++j) g[j * n + f] -= w[b] * x * h[b][j];
            for (int j = 0; j < m; ++j) grad_h[j] -= imp[f] * x * d[j * n + f];
          }}
        }}
        for (int j = 0; j < m; ++j) grad_h[j] *= 2.f * w[b];
        for (int64_t i = first; i < last; ++i) {{
          const int64_t f = entry_column[i] - k * n;
          for (int j = 0; j < m; ++j) enc[j * n + f] += grad_h[j] * entry_value[i];
        }}
        instance_loss += w[b] * slot_loss;
      }}
    }}
    loss[k] = static_cast<float>(instance_loss);
  }}
}}
"""


def specialisation(K: int, B: int = SLOT_BLOCK) -> str:
    """The C++ of one fused step for K = m + 1, B slots per pass over the features."""
    ks, bs = range(K), range(B)
    return SPECIALISATION.format(
        K=K, B=B,
        rows=" ".join(f"const float* __restrict__ d{j} = d + {j} * n; "
                      f"const float* __restrict__ e{j} = e + {j} * n; "
                      f"float* __restrict__ g{j} = g + {j} * n;" for j in ks),
        inputs=" ".join(f"const float h{b}_{j} = h[{b}][{j}], a{b}_{j} = w[{b}] * h[{b}][{j}]; "
                        f"float m{b}_{j} = 0.f;" for b in bs for j in ks),
        accumulators=", ".join(f"m{b}_{j}" for b in bs for j in ks),
        outputs=" ".join(f"const float r{b} = std::max("
                         + " + ".join(f"h{b}_{j} * d{j}[f]" for j in ks) + ", 0.f);" for b in bs),
        sums=" ".join(f"m{b}_{j} += e{j}[f] * r{b};" for b in bs for j in ks) + " " + " ".join(
            f"g{j}[f] += " + " + ".join(f"a{b}_{j} * r{b}" for b in bs) + ";" for j in ks),
        store=" ".join(f"M[{b}][{j}] = m{b}_{j};" for b in bs for j in ks),
    )


SOURCE = r"""
#include <algorithm>
#include <cstdint>
""" + "".join(specialisation(m + 1) for m in range(1, MAX_HIDDEN + 1)) + r"""
extern "C" int packed_step(int64_t K, const float* dec, const float* dec_imp,
                           const float* importance, const float* slot_weight,
                           const int64_t* slot_entries, const int64_t* entry_column,
                           const float* entry_value, const int64_t* instance_chunks, int64_t k0,
                           int64_t k1, int64_t C, int64_t n, float* loss, float* G, float* E) {
  switch (K) {
""" + "".join(f"    case {m + 1}: packed_step_{m + 1}(dec, dec_imp, importance, slot_weight, "
              "slot_entries, entry_column, entry_value, instance_chunks, k0, k1, C, n, loss, G, "
              "E); return 0;\n" for m in range(1, MAX_HIDDEN + 1)) + r"""
    default: return 1;
  }
}
"""

@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled library (:func:`replication.native.load`); None where it cannot be built."""
    lib = native.load("dd_packed_step", SOURCE,
                      "batched matrix products instead (several times slower on CPU)")
    if lib is not None:
        lib.packed_step.restype = ctypes.c_int
        lib.packed_step.argtypes = [ctypes.c_int64, *[ctypes.c_void_p] * 8,
                                    *[ctypes.c_int64] * 4, *[ctypes.c_void_p] * 3]
    return lib


def fused_available(device: torch.device, n_hidden: int) -> bool:
    """Whether :func:`fused_packed_step` serves a model of ``n_hidden`` on ``device``."""
    return device.type == "cpu" and 1 <= n_hidden <= MAX_HIDDEN and library() is not None


def fused_packed_step(
    decoder: Float[Tensor, "inst K feats"], importance: Float[Tensor, "inst feats"],
    sets: PackedSets,
) -> tuple[Float[Tensor, " inst"], Float[Tensor, "inst K feats"],
           Float[Tensor, "inst hidden feats"]]:
    """Per instance: its loss, its decoder gradient in units of 2 I and its encoder gradient
    (module docstring). ``decoder`` is [W; b] of every instance (float32, CPU)."""
    lib = library()
    if lib is None:
        raise RuntimeError("the fused kernel is not available here; check fused_available()")
    instances, K, n = decoder.shape
    decoder = decoder.contiguous()
    loss = torch.empty(instances)
    G = torch.zeros(instances, K, n)
    E = torch.zeros(instances, K - 1, n)
    # every tensor is bound to a name here: a pointer must not outlive its tensor
    inputs = (decoder, decoder * importance[:, None, :], importance.contiguous(),
              sets.slot_weight.reshape(-1).contiguous(), sets.inputs.crow_indices(),
              sets.inputs.col_indices(), sets.inputs.values(), sets.instance_chunks)
    dtypes = (torch.float32,) * 4 + (torch.int64, torch.int64, torch.float32, torch.int64)
    pointers = [native.pointer(t, dtype) for t, dtype in zip(inputs, dtypes, strict=True)]
    outputs = [loss.data_ptr(), G.data_ptr(), E.data_ptr()]

    def run(k0: int, k1: int) -> int:
        return lib.packed_step(K, *pointers, k0, k1, sets.chunk_size, n, *outputs)

    if any(native.over_instances(run, sets.instance_chunks)):
        raise ValueError(f"no fused specialisation for m = {K - 1} (have 1 … {MAX_HIDDEN})")
    return loss, G, E
