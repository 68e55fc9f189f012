"""The toy model's closed-form loss and gradients as one fused CPU pass (a small C++ library).

The math is :meth:`replication.toy.model.ToyModel.loss_and_grads`'s. Per instance k and per block
of :data:`LANES` examples (the SIMD lanes; a short last block is padded with zero-weight
examples), with the decoder D = W (tied) or W_out, factor 2 I_f w_b (w_b = 1/batch unless example
weights are given) and y the target (x unless given):

1. h = W x (ReLU'd for the neuron model), one vector of lanes per hidden unit;
2. per feature f: pre = D[:, f] · h + b_f, out = ReLU(pre) (or pre), r = out − y, the loss
   Σ I w r², g = 2 I w r [pre > 0] (∂loss/∂pre), and at once the sums that need g:
   ∂b_f += g, ∂D[:, f] += h g and ∂h += D[:, f] g;
3. ∂h masked by the hidden ReLU, then the encoder gradient ∂W[:, f] += ∂h x_f.

Sums over examples are kept per lane across the instance's blocks and added up once per
instance, in a fixed order: the results do not depend on the thread count. Between them the
(features × batch) intermediates never leave registers and L1, where the torch path writes
each to memory (about ten passes over a (inst, feats, batch) tensor per step).

Built and cached by :mod:`replication.native`; where it cannot be built, off the CPU, or above
:data:`MAX_HIDDEN` (where torch's matrix products are faster), the torch path of
:class:`~replication.toy.model.ToyModel` runs. The source lives in this module so
that the artifact cache key (the builder's code version) changes with it.
"""

from __future__ import annotations

import ctypes
import functools

import torch
from jaxtyping import Float
from torch import Tensor

from replication import native

LANES = 16  # examples per block: one AVX-512 vector of float32
# Above this hidden size the (hidden × feats) matrix products dominate a step and torch's batched
# GEMMs beat the per-lane sums here. Measured per closed-form step (1 thread, same process):
# fused/torch 0.14-0.29 at m = 1 and 5 (phase diagram, basic sweep), 0.66 at m = 20 (n = 200),
# 2.1 at m = 40 (the absolute-value model, n = 100).
MAX_HIDDEN = 20

SOURCE = r"""
#include <algorithm>
#include <cstdint>
#include <vector>

constexpr int L = """ + str(LANES) + r""";

// x[k * x_stride + f * batch + b]: feature-major examples (y likewise; y == x for the input).
// D == W when tied; then grad_D == grad_W, to which both gradients are added.
extern "C" void toy_loss_and_grads(
    int64_t k0, int64_t k1, int64_t n, int64_t m, int64_t batch, int relu_out, int relu_hidden,
    const float* W, const float* D, const float* bias, const float* x, int64_t x_stride,
    const float* y, int64_t y_stride, const float* importance, const float* example_weight,
    float* loss, float* grad_W, float* grad_b, float* grad_D) {
  std::vector<float> xs(n * L), ys(n * L), h(m * L), gh(m * L);
  std::vector<float> acc_b(n * L), acc_D(m * n * L), acc_W(m * n * L);
  for (int64_t k = k0; k < k1; ++k) {
    const float *Wk = W + k * m * n, *Dk = D + k * m * n, *bk = bias + k * n;
    const float *Ik = importance + k * n;
    std::fill(acc_b.begin(), acc_b.end(), 0.f);
    std::fill(acc_D.begin(), acc_D.end(), 0.f);
    std::fill(acc_W.begin(), acc_W.end(), 0.f);
    float acc_loss[L] = {};
    for (int64_t b0 = 0; b0 < batch; b0 += L) {
      const int lanes = static_cast<int>(std::min<int64_t>(L, batch - b0));
      float w[L];
      for (int l = 0; l < L; ++l)
        w[l] = l >= lanes ? 0.f
             : 2.f * (example_weight ? example_weight[k * batch + b0 + l] : 1.f / batch);
      for (int64_t f = 0; f < n; ++f)
        for (int l = 0; l < L; ++l) {
          xs[f * L + l] = l < lanes ? x[k * x_stride + f * batch + b0 + l] : 0.f;
          ys[f * L + l] = l < lanes ? y[k * y_stride + f * batch + b0 + l] : 0.f;
        }
      std::fill(h.begin(), h.end(), 0.f);
      std::fill(gh.begin(), gh.end(), 0.f);
      for (int64_t j = 0; j < m; ++j)
        for (int64_t f = 0; f < n; ++f) {
          const float weight = Wk[j * n + f];
          #pragma omp simd
          for (int l = 0; l < L; ++l) h[j * L + l] += weight * xs[f * L + l];
        }
      if (relu_hidden)
        for (int64_t i = 0; i < m * L; ++i) h[i] = std::max(h[i], 0.f);
      for (int64_t f = 0; f < n; ++f) {
        float pre[L], g[L];
        #pragma omp simd
        for (int l = 0; l < L; ++l) pre[l] = bk[f];
        for (int64_t j = 0; j < m; ++j) {
          const float d = Dk[j * n + f];
          #pragma omp simd
          for (int l = 0; l < L; ++l) pre[l] += d * h[j * L + l];
        }
        #pragma omp simd
        for (int l = 0; l < L; ++l) {
          const float out = relu_out ? std::max(pre[l], 0.f) : pre[l];
          const float r = out - ys[f * L + l], factor = Ik[f] * w[l];
          acc_loss[l] += 0.5f * factor * r * r;
          g[l] = (relu_out && pre[l] <= 0.f) ? 0.f : factor * r;
          acc_b[f * L + l] += g[l];
        }
        for (int64_t j = 0; j < m; ++j) {
          const float d = Dk[j * n + f];
          float* acc = &acc_D[(j * n + f) * L];
          #pragma omp simd
          for (int l = 0; l < L; ++l) {
            acc[l] += h[j * L + l] * g[l];
            gh[j * L + l] += d * g[l];
          }
        }
      }
      if (relu_hidden)
        for (int64_t i = 0; i < m * L; ++i) gh[i] = h[i] > 0.f ? gh[i] : 0.f;
      for (int64_t j = 0; j < m; ++j)
        for (int64_t f = 0; f < n; ++f) {
          float* acc = &acc_W[(j * n + f) * L];
          #pragma omp simd
          for (int l = 0; l < L; ++l) acc[l] += gh[j * L + l] * xs[f * L + l];
        }
    }
    float total = 0.f;
    for (int l = 0; l < L; ++l) total += acc_loss[l];
    loss[k] = total;
    for (int64_t f = 0; f < n; ++f) {
      float sum = 0.f;
      for (int l = 0; l < L; ++l) sum += acc_b[f * L + l];
      grad_b[k * n + f] = sum;
    }
    for (int64_t i = 0; i < m * n; ++i) {
      float decoder = 0.f, encoder = 0.f;
      for (int l = 0; l < L; ++l) {
        decoder += acc_D[i * L + l];
        encoder += acc_W[i * L + l];
      }
      if (grad_D == grad_W) {
        grad_W[k * m * n + i] = decoder + encoder;
      } else {
        grad_D[k * m * n + i] = decoder;
        grad_W[k * m * n + i] = encoder;
      }
    }
  }
}
"""


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled library (:func:`replication.native.load`); None where it cannot be built."""
    lib = native.load("toy_loss_and_grads", SOURCE, "the torch closed form")
    if lib is not None:
        lib.toy_loss_and_grads.restype = None
        lib.toy_loss_and_grads.argtypes = [
            *[ctypes.c_int64] * 5, ctypes.c_int, ctypes.c_int, *[ctypes.c_void_p] * 4,
            ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, *[ctypes.c_void_p] * 6]
    return lib


def feature_major(x: Float[Tensor, "inst batch feats"]) -> tuple[Tensor, int]:
    """``x`` as (inst, feats, batch) storage with unit stride along the batch, and its instance
    stride. The samplers' batches already are (a transposed view): no copy then."""
    x_t = x.transpose(1, 2)
    if x_t.stride(2) != 1 or x_t.stride(1) != x_t.shape[2]:
        x_t = x_t.contiguous()
    return x_t, x_t.stride(0)


def fused_available(device: torch.device, n_hidden: int) -> bool:
    """Whether :func:`fused_loss_and_grads` serves (and pays off for) this model."""
    return device.type == "cpu" and n_hidden <= MAX_HIDDEN and library() is not None


def fused_loss_and_grads(
    W: Float[Tensor, "inst hidden feats"], W_out: Float[Tensor, "inst hidden feats"] | None,
    b: Float[Tensor, "inst 1 feats"], relu_out: bool, relu_hidden: bool,
    x: Float[Tensor, "inst batch feats"], importance: Float[Tensor, "inst feats"],
    example_weight: Float[Tensor, "inst batch"] | None = None,
    target: Float[Tensor, "inst batch feats"] | None = None,
) -> tuple[Tensor, ...]:
    """The loss ``(inst,)`` and the gradients of W, b and (untied) W_out, as
    :meth:`~replication.toy.model.ToyModel.loss_and_grads` returns them (module docstring)."""
    lib = library()
    if lib is None:
        raise RuntimeError("the fused toy kernel is not available here; check fused_available()")
    n_inst, m, n = W.shape
    batch = x.shape[1]
    x_t, x_stride = feature_major(x)
    y_t, y_stride = (x_t, x_stride) if target is None else feature_major(target)
    W, b, importance = W.detach().contiguous(), b.detach().contiguous(), importance.contiguous()
    D = W if W_out is None else W_out.detach().contiguous()
    weight = None if example_weight is None else example_weight.contiguous()
    loss = torch.empty(n_inst)
    grad_W, grad_b = torch.empty(n_inst, m, n), torch.empty(n_inst, 1, n)
    grad_D = grad_W if W_out is None else torch.empty(n_inst, m, n)
    arguments = (native.pointer(W), native.pointer(D), native.pointer(b),
                 native.pointer(x_t, contiguous=False), x_stride,
                 native.pointer(y_t, contiguous=False), y_stride,
                 native.pointer(importance), native.pointer(weight),
                 loss.data_ptr(), grad_W.data_ptr(), grad_b.data_ptr(), grad_D.data_ptr())

    def run(k0: int, k1: int) -> int:
        lib.toy_loss_and_grads(k0, k1, n, m, batch, relu_out, relu_hidden, *arguments)
        return 0

    native.over_instances(run, torch.arange(n_inst + 1))
    if W_out is None:
        return loss, grad_W, grad_b
    return loss, grad_W, grad_b, grad_D
