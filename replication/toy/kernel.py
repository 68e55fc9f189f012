"""The toy model's closed-form loss and gradients, and whole training steps, as fused CPU
passes (a small C++ library).

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
each to memory (about ten passes over a (inst, feats, batch) tensor per step). The hidden size
is a template argument (one compiled copy per m up to :data:`MAX_HIDDEN`), so that h and ∂h
stay in registers.

:func:`fused_train_steps` goes further for independent features: it draws each step's inputs
block by block from a counter-based generator (below) and takes Adam's step, many steps per
call, so that a training step has no per-step work in Python and no input tensor at all.

Built and cached by :mod:`replication.native`; where it cannot be built, off the CPU, or above
:data:`MAX_HIDDEN` (where torch's matrix products are faster), the torch path of
:class:`~replication.toy.model.ToyModel` runs. The source lives in this module so
that the artifact cache key (the builder's code version) changes with it.
"""

from __future__ import annotations

import ctypes
import functools

import torch
from jaxtyping import Float, Float64, Int
from torch import Tensor

from replication import native

LANES = 16  # examples per block: one AVX-512 vector of float32
# Above this hidden size the (hidden × feats) matrix products dominate a step and torch's batched
# GEMMs beat the per-lane sums here. Measured per closed-form step (1 thread, same process):
# fused/torch 0.14-0.29 at m = 1 and 5 (phase diagram, basic sweep), 0.66 at m = 20 (n = 200),
# 2.1 at m = 40 (the absolute-value model, n = 100).
MAX_HIDDEN = 20

# The data of :func:`fused_train_steps` come from a counter-based generator: entry u of instance
# k's stream, u = (step · feats + feature) · batch + example, is splitmix64's output
# mix(key_k + (u + 1) · GOLDEN) (Steele, Lea & Flood 2014; GOLDEN = 0x9E3779B97F4A7C15). Its high
# 32 bits make the feature active when below ⌊p · 2³²⌋, its low 23 bits i give the value
# (i + ½) · 2⁻²³, uniform on (0, 1). Any entry is a function of its indices alone: the numbers
# do not depend on the thread count or on how the steps are split between calls.


def dispatch(call: str) -> str:
    """C++ that runs ``call`` (which names the template argument ``<M>``) with M = m, the
    hidden size: one compiled copy per size up to :data:`MAX_HIDDEN`."""
    cases = "".join(f"    case {m}: return {call.replace('<M>', f'<{m}>')};\n"
                    for m in range(1, MAX_HIDDEN + 1))
    return f"  switch (m) {{\n{cases}  }}\n"


SOURCE = r"""
#pragma GCC target("prefer-vector-width=512")  // one register per block of lanes where AVX-512 is
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

constexpr int L = """ + str(LANES) + r""";

// An instance's sums over its blocks of examples, kept per lane.
struct Lanes {
  std::vector<float> b, D, W;
  float loss[L];
  Lanes(int64_t n, int64_t m) : b(n * L), D(m * n * L), W(m * n * L) {}
  void clear() {
    std::fill(b.begin(), b.end(), 0.f);
    std::fill(D.begin(), D.end(), 0.f);
    std::fill(W.begin(), W.end(), 0.f);
    std::fill(loss, loss + L, 0.f);
  }
  // The loss and the gradients (grad_D == grad_W when tied: both are added to it).
  void reduce(int64_t n, int64_t m, float* total, float* grad_W, float* grad_b,
              float* grad_D) const {
    float sum = 0.f;
    for (int l = 0; l < L; ++l) sum += loss[l];
    *total = sum;
    for (int64_t f = 0; f < n; ++f) {
      float s = 0.f;
      for (int l = 0; l < L; ++l) s += b[f * L + l];
      grad_b[f] = s;
    }
    for (int64_t i = 0; i < m * n; ++i) {
      float decoder = 0.f, encoder = 0.f;
      for (int l = 0; l < L; ++l) {
        decoder += D[i * L + l];
        encoder += W[i * L + l];
      }
      if (grad_D == grad_W) {
        grad_W[i] = decoder + encoder;
      } else {
        grad_D[i] = decoder;
        grad_W[i] = encoder;
      }
    }
  }
};

// One block of L examples, feature-major (xs[f * L + l]; ys likewise), with weights 2 w:
// h = W x (ReLU'd for the neuron model) and its gradient stay in registers.
template <int M>
void add_block(int64_t n, int relu_out, int relu_hidden, const float* W, const float* D,
               const float* bias, const float* importance, const float* xs, const float* ys,
               const float* w, Lanes& acc) {
  float h[M][L] = {}, gh[M][L] = {};
  for (int64_t f = 0; f < n; ++f)
    for (int j = 0; j < M; ++j) {
      const float weight = W[j * n + f];
      #pragma omp simd
      for (int l = 0; l < L; ++l) h[j][l] += weight * xs[f * L + l];
    }
  if (relu_hidden)
    for (int j = 0; j < M; ++j)
      for (int l = 0; l < L; ++l) h[j][l] = std::max(h[j][l], 0.f);
  for (int64_t f = 0; f < n; ++f) {
    float pre[L], g[L];
    #pragma omp simd
    for (int l = 0; l < L; ++l) pre[l] = bias[f];
    for (int j = 0; j < M; ++j) {
      const float d = D[j * n + f];
      #pragma omp simd
      for (int l = 0; l < L; ++l) pre[l] += d * h[j][l];
    }
    #pragma omp simd
    for (int l = 0; l < L; ++l) {
      const float out = relu_out ? std::max(pre[l], 0.f) : pre[l];
      const float r = out - ys[f * L + l], factor = importance[f] * w[l];
      acc.loss[l] += 0.5f * factor * r * r;
      g[l] = (relu_out && pre[l] <= 0.f) ? 0.f : factor * r;
      acc.b[f * L + l] += g[l];
    }
    for (int j = 0; j < M; ++j) {
      const float d = D[j * n + f];
      float* sum = &acc.D[(j * n + f) * L];
      #pragma omp simd
      for (int l = 0; l < L; ++l) {
        sum[l] += h[j][l] * g[l];
        gh[j][l] += d * g[l];
      }
    }
  }
  if (relu_hidden)
    for (int j = 0; j < M; ++j)
      for (int l = 0; l < L; ++l) gh[j][l] = h[j][l] > 0.f ? gh[j][l] : 0.f;
  for (int64_t f = 0; f < n; ++f)
    for (int j = 0; j < M; ++j) {
      float* sum = &acc.W[(j * n + f) * L];
      #pragma omp simd
      for (int l = 0; l < L; ++l) sum[l] += gh[j][l] * xs[f * L + l];
    }
}

// x[k * x_stride + f * batch + b]: feature-major examples (y likewise; y == x for the input).
template <int M>
void loss_and_grads(int64_t k0, int64_t k1, int64_t n, int64_t batch, int relu_out,
                    int relu_hidden, const float* W, const float* D, const float* bias,
                    const float* x, int64_t x_stride, const float* y, int64_t y_stride,
                    const float* importance, const float* example_weight, float* loss,
                    float* grad_W, float* grad_b, float* grad_D) {
  std::vector<float> xs(n * L), ys(n * L);
  Lanes acc(n, M);
  for (int64_t k = k0; k < k1; ++k) {
    acc.clear();
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
      add_block<M>(n, relu_out, relu_hidden, W + k * M * n, D + k * M * n, bias + k * n,
                   importance + k * n, xs.data(), ys.data(), w, acc);
    }
    acc.reduce(n, M, loss + k, grad_W + k * M * n, grad_b + k * n,
               grad_D == grad_W ? grad_W + k * M * n : grad_D + k * M * n);
  }
}

extern "C" void toy_loss_and_grads(
    int64_t k0, int64_t k1, int64_t n, int64_t m, int64_t batch, int relu_out, int relu_hidden,
    const float* W, const float* D, const float* bias, const float* x, int64_t x_stride,
    const float* y, int64_t y_stride, const float* importance, const float* example_weight,
    float* loss, float* grad_W, float* grad_b, float* grad_D) {
""" + dispatch(
    "loss_and_grads<M>(k0, k1, n, batch, relu_out, relu_hidden, W, D, bias, x, x_stride, y, "
    "y_stride, importance, example_weight, loss, grad_W, grad_b, grad_D)") + r"""}

constexpr uint64_t GOLDEN = 0x9E3779B97F4A7C15ull;

inline uint64_t splitmix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// torch.optim.Adam's update (AdamW's with decay > 0) of `size` parameters.
void adam(int64_t size, const float* grad, float* param, float* mean, float* square, float lr,
          float beta1, float beta2, float eps, float decay, double step) {
  const float step_size = lr / (1. - std::pow(beta1, step));
  const float root_correction = std::sqrt(1. - std::pow(beta2, step));
  for (int64_t i = 0; i < size; ++i) {
    param[i] *= 1.f - lr * decay;
    mean[i] += (grad[i] - mean[i]) * (1.f - beta1);
    square[i] = beta2 * square[i] + (1.f - beta2) * grad[i] * grad[i];
    param[i] -= step_size * mean[i] / (std::sqrt(square[i]) / root_correction + eps);
  }
}

// Steps [first, first + steps) of Adam on the mean loss of `batch` examples drawn per step, for
// instances [k0, k1). Parameters per instance: W, (D, untied), b; the optimizer's two moments
// of each follow them in `moments` (2 × that many per instance). Adds each instance's summed
// loss over the steps to loss_sum[k].
template <int M>
void train_steps(int64_t k0, int64_t k1, int64_t n, int64_t batch, int relu_out,
                 int relu_hidden, int64_t first, int64_t steps, const float* lr, float beta1,
                 float beta2, float eps, float decay, const uint64_t* keys, const float* p,
                 const float* importance, float* W, float* D, float* bias, float* moments,
                 double* loss_sum) {
  const bool tied = D == W;
  const int64_t size = (tied ? 1 : 2) * M * n + n;
  std::vector<float> xs(n * L), grad(size);
  std::vector<uint64_t> threshold(n);
  Lanes acc(n, M);
  float w[L];
  for (int64_t k = k0; k < k1; ++k) {
    float *Wk = W + k * M * n, *Dk = D + k * M * n, *bk = bias + k * n;
    float *mean = moments + 2 * k * size, *square = mean + size;
    for (int64_t f = 0; f < n; ++f)  // active when the high 32 bits lie below p · 2^32
      threshold[f] = static_cast<uint64_t>(static_cast<double>(p[k * n + f]) * 4294967296.);
    for (int64_t t = first; t < first + steps; ++t) {
      acc.clear();
      const uint64_t step_key = keys[k] + static_cast<uint64_t>(t * n * batch + 1) * GOLDEN;
      for (int64_t b0 = 0; b0 < batch; b0 += L) {
        const int lanes = static_cast<int>(std::min<int64_t>(L, batch - b0));
        for (int l = 0; l < L; ++l) w[l] = l < lanes ? 2.f / batch : 0.f;
        for (int64_t f = 0; f < n; ++f) {
          const uint64_t key = step_key + static_cast<uint64_t>(f * batch + b0) * GOLDEN;
          const uint64_t below = threshold[f];
          float* x = &xs[f * L];
          #pragma omp simd
          for (int l = 0; l < L; ++l) {
            const uint64_t r = splitmix(key + static_cast<uint64_t>(l) * GOLDEN);
            const float value = (static_cast<float>(r & 0x7FFFFF) + 0.5f) * (1.f / 8388608.f);
            x[l] = l < lanes && (r >> 32) < below ? value : 0.f;
          }
        }
        add_block<M>(n, relu_out, relu_hidden, Wk, Dk, bk, importance + k * n, xs.data(),
                     xs.data(), w, acc);
      }
      float *grad_W = grad.data(), *grad_D = tied ? grad_W : grad_W + M * n;
      float *grad_b = grad.data() + size - n, loss;
      acc.reduce(n, M, &loss, grad_W, grad_b, grad_D);
      loss_sum[k] += loss;
      // W, (D) and b lie at those offsets of the parameter, gradient and moment vectors alike.
      const float rate = lr[t - first];
      adam(M * n, grad_W, Wk, mean, square, rate, beta1, beta2, eps, decay, t + 1.);
      if (!tied)
        adam(M * n, grad_D, Dk, mean + M * n, square + M * n, rate, beta1, beta2, eps, decay,
             t + 1.);
      adam(n, grad_b, bk, mean + size - n, square + size - n, rate, beta1, beta2, eps, decay,
           t + 1.);
    }
  }
}

extern "C" void toy_train_steps(
    int64_t k0, int64_t k1, int64_t n, int64_t m, int64_t batch, int relu_out, int relu_hidden,
    int64_t first, int64_t steps, const float* lr, float beta1, float beta2, float eps,
    float decay, const uint64_t* keys, const float* p, const float* importance, float* W,
    float* D, float* bias, float* moments, double* loss_sum) {
""" + dispatch(
    "train_steps<M>(k0, k1, n, batch, relu_out, relu_hidden, first, steps, lr, beta1, beta2, "
    "eps, decay, keys, p, importance, W, D, bias, moments, loss_sum)") + r"""}
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
        lib.toy_train_steps.restype = None
        lib.toy_train_steps.argtypes = [
            *[ctypes.c_int64] * 5, ctypes.c_int, ctypes.c_int, *[ctypes.c_int64] * 2,
            ctypes.c_void_p, *[ctypes.c_float] * 4, *[ctypes.c_void_p] * 8]
    return lib


def required_library() -> ctypes.CDLL:
    """:func:`library`, or a clear error where it cannot be built."""
    lib = library()
    if lib is None:
        raise RuntimeError("the fused toy kernel is not available here; check fused_available()")
    return lib


def feature_major(x: Float[Tensor, "inst batch feats"]) -> tuple[Tensor, int]:
    """``x`` as (inst, feats, batch) storage with unit stride along the batch, and its instance
    stride. The samplers' batches already are (a transposed view): no copy then."""
    x_t = x.transpose(1, 2)
    if x_t.stride(2) != 1 or x_t.stride(1) != x_t.shape[2]:
        x_t = x_t.contiguous()
    return x_t, x_t.stride(0)


def fused_available(device: torch.device, n_hidden: int) -> bool:
    """Whether the fused kernels (:func:`fused_loss_and_grads`, :func:`fused_train_steps`) serve
    (and pay off for) this model."""
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
    lib = required_library()
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


def moments_shape(model_shape: tuple[int, int, int], tied: bool) -> tuple[int, int, int]:
    """``(inst, 2, size)``: Adam's two moments of an instance's W, (W_out) and b, for
    :func:`fused_train_steps`, from the model's ``(inst, hidden, feats)``."""
    n_inst, m, n = model_shape
    return n_inst, 2, (1 if tied else 2) * m * n + n


def fused_train_steps(
    W: Float[Tensor, "inst hidden feats"], W_out: Float[Tensor, "inst hidden feats"] | None,
    b: Float[Tensor, "inst 1 feats"], relu_out: bool, relu_hidden: bool, batch: int,
    feature_probability: Float[Tensor, "inst feats"], importance: Float[Tensor, "inst feats"],
    keys: Int[Tensor, " inst"], first_step: int, lr: Float[Tensor, " steps"],
    adam: tuple[float, float, float, float], moments: Float[Tensor, "inst 2 size"],
    loss_sum: Float64[Tensor, " inst"],
) -> None:
    """Adam steps ``first_step … first_step + len(lr) − 1`` of every instance, in place, each on
    ``batch`` inputs drawn in the kernel (the generator above :data:`SOURCE`; instance k's stream
    is keyed by ``keys[k]``, so a step's data depend on its number, not on how the steps are
    split into calls). ``adam`` is (β₁, β₂, ε, weight decay); ``lr`` the rate of each step.
    ``moments`` (see :func:`moments_shape`, zero before step 0) and the parameters carry over
    between calls; each instance's loss, summed over the steps, is added to ``loss_sum``."""
    lib = required_library()
    n_inst, m, n = W.shape
    if moments.shape != moments_shape(W.shape, W_out is None):
        raise ValueError(f"moments need shape {moments_shape(W.shape, W_out is None)}, "
                         f"got {tuple(moments.shape)}")
    D = W if W_out is None else W_out
    lr = lr.to(torch.float32).contiguous()
    p, importance = feature_probability.contiguous(), importance.contiguous()
    arguments = (len(lr), native.pointer(lr), *adam, native.pointer(keys, torch.int64),
                 native.pointer(p), native.pointer(importance), native.pointer(W),
                 native.pointer(D), native.pointer(b), native.pointer(moments),
                 native.pointer(loss_sum, torch.float64))

    def run(k0: int, k1: int) -> int:
        lib.toy_train_steps(k0, k1, n, m, batch, relu_out, relu_hidden, first_step, *arguments)
        return 0

    native.over_instances(run, torch.arange(n_inst + 1))
