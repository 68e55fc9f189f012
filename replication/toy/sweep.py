"""A sweep: many toy-model configurations × replicates trained as the instances of one model.

Instances are laid out configuration-major (instance = config * replicates + replicate). After
training, each instance is scored on one fresh evaluation batch and the best replicate of every
configuration is kept, as the papers do for the optimisation-prone small models.

:class:`ToySweep` is the config of a :mod:`replication.artifact` and :class:`TrainedSweep` its
artifact: ``load_or_train(sweep, cache, device)`` trains or loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from replication.settings import check_choice
from replication.toy.data import SET_KINDS, FeatureSetSampler, SparseFeatureSampler, signed
from replication.toy.kernel import fused_available
from replication.toy.model import ACTIVATIONS, ToyModel
from replication.toy.train import (
    TrainConfig,
    logged_loop,
    lr_factor,
    make_optimizer,
    train_drawn_in_kernel,
)

EVAL_BATCH = 16_384
# reconstruct: x ≥ 0, target x (the paper's autoencoding toy model); absolute-value: x ∈ [−1, 1],
# target |x| ('Computation in Superposition').
TASKS = ("reconstruct", "absolute-value")


def geometric_importance(n_features: int, decay: float) -> tuple[float, ...]:
    """Importance I_i = decay**i (decay 1: every feature equally important)."""
    return tuple(float(decay**i) for i in range(n_features))


@dataclass(frozen=True)
class FeatureSets:
    """How one configuration's features co-occur: consecutive sets of ``size`` features of
    ``kind`` (see :class:`~replication.toy.data.FeatureSetSampler`); the density of a set is
    its members' (the configuration's density, or each member's)."""

    kind: str = "independent"
    size: int = 1

    def __post_init__(self):
        check_choice("feature set kind", self.kind, SET_KINDS)


Batches = Callable[[], tuple[Float[Tensor, "inst batch feats"], Float[Tensor, "inst batch feats"] | None]]


def fit(model: ToyModel, next_batch: Batches, importance: Float[Tensor, "inst feats"],
        config: TrainConfig, description: str = "toy models") -> Float[Tensor, "logs inst"]:
    """Train every instance of ``model`` in place (any parameters: its ``loss_and_grads`` gives
    one gradient per parameter); ``next_batch()`` gives ``(x, target)``, target ``None`` for x.

    Returns: the mean loss per log interval. For a tied model this is the step of
    :func:`replication.toy.train.train`, number for number.
    """
    optimizer = make_optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    parameters = list(model.parameters())

    def step(_: int) -> dict[str, Tensor]:
        x, target = next_batch()
        loss, *grads = model.loss_and_grads(x, importance, None, target)
        for parameter, grad in zip(parameters, grads, strict=True):
            parameter.grad = grad
        return {"loss": loss}

    return logged_loop(config.steps, step, optimizer, (schedule,), description)["loss"]


@dataclass(frozen=True)
class ToySweep:
    """The configurations of one batched toy-model run.

    Args:
        n_features: n, features per input.
        n_hidden: m, hidden dimensions.
        feature_probability: one density 1 − S per configuration: a number for every feature,
            or one per feature (0: never active).
        importance: one importance vector per configuration, or a single one for all.
        activation: ``relu`` (ReLU-output model) or ``linear``.
        replicates: instances trained per configuration; the lowest-loss one is kept.
        training: optimisation settings.
        seed: seeds initialisation and data.
        hidden_activation: ``linear`` (h = W x) or ``relu`` (h = ReLU(W x), the neuron model).
        tied: decode with W (default) or with a separate W_out.
        task: a name in :data:`TASKS`.
        feature_sets: how features co-occur, per configuration or a single one for all.
        shared_evaluation: score every replicate of a configuration on the same evaluation
            sample (common random numbers), so that the kept replicate is the lowest-loss one
            rather than the luckiest draw when solutions differ by about 1%; off (the default,
            and the earlier sweeps' numbers), each instance draws its own.
    """

    kind: ClassVar[str] = "toy-sweep"

    n_features: int
    n_hidden: int
    feature_probability: tuple[float | tuple[float, ...], ...]
    importance: tuple[tuple[float, ...], ...]
    activation: str = "relu"
    replicates: int = 1
    training: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    hidden_activation: str = "linear"
    tied: bool = True
    task: str = "reconstruct"
    feature_sets: tuple[FeatureSets, ...] = (FeatureSets(),)
    shared_evaluation: bool = False

    def __post_init__(self):
        for name in ("importance", "feature_sets"):
            if len(getattr(self, name)) not in (1, self.n_configs):
                raise ValueError(f"{name} needs 1 or {self.n_configs} rows, got "
                                 f"{len(getattr(self, name))}")
        if any(len(row) != self.n_features for row in self.importance):
            raise ValueError(f"every importance row needs {self.n_features} values")
        if any(isinstance(p, tuple) and len(p) != self.n_features for p in self.feature_probability):
            raise ValueError(f"a per-feature density needs {self.n_features} values")
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("hidden activation", self.hidden_activation, ACTIVATIONS)
        check_choice("task", self.task, TASKS)

    @property
    def n_configs(self) -> int:
        return len(self.feature_probability)

    @property
    def n_instances(self) -> int:
        return self.n_configs * self.replicates

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def iid(self) -> bool:
        """Whether every configuration has independent features of one density (drawn by the
        faster :class:`~replication.toy.data.SparseFeatureSampler`)."""
        return all(sets.kind == "independent" for sets in self.feature_sets) and \
            not any(isinstance(p, tuple) for p in self.feature_probability)

    def drawn_in_kernel(self, device: torch.device) -> bool:
        """Whether training draws its data in the fused CPU kernel
        (:func:`~replication.toy.train.train_drawn_in_kernel`): independent features (one
        density per configuration or per feature) to reconstruct, on a model it serves. Its
        numbers then come from the kernel's generator, not from ``batches``."""
        return (self.task == "reconstruct" and fused_available(device, self.n_hidden)
                and all(sets.kind == "independent" for sets in self.feature_sets))

    def per_config(self, rows: tuple) -> tuple:
        """``rows`` (one, or one per configuration) as one per configuration."""
        return rows * self.n_configs if len(rows) == 1 else rows

    def instance_tensors(self, device) -> tuple[Float[Tensor, "inst ..."], Float[Tensor, "inst feats"]]:
        """Per-instance feature probability (``(inst,)`` when :attr:`iid`, else ``(inst, feats)``)
        and importance."""
        p = torch.tensor(self.feature_probability if self.iid else [
            p if isinstance(p, tuple) else (p,) * self.n_features for p in self.feature_probability],
            device=device)
        importance = torch.tensor(self.importance, device=device).expand(self.n_configs, -1)
        return (p.repeat_interleave(self.replicates, dim=0),
                importance.repeat_interleave(self.replicates, dim=0).contiguous())

    def batches(self, batch_size: int, generator: torch.Generator, device) -> Batches:
        """A source of ``(x, target)`` batches for every instance, as the task asks."""
        p, _ = self.instance_tensors(device)
        if self.iid:
            sampler = SparseFeatureSampler(p, self.n_features, batch_size, generator)
        else:
            sets = [s for s in self.per_config(self.feature_sets) for _ in range(self.replicates)]
            sampler = FeatureSetSampler(p, tuple(s.kind for s in sets), tuple(s.size for s in sets),
                                        batch_size, generator)
        if self.task == "reconstruct":
            return lambda: (sampler(), None)

        def signed_batch():
            x = signed(sampler())
            return x, x.abs()

        return signed_batch

    def evaluation_batch(self, generator: torch.Generator, device, size: int = EVAL_BATCH):
        """``(x, target)`` the replicates are scored on: ``size`` inputs per instance, drawn once
        per configuration and repeated for its replicates when :attr:`shared_evaluation`."""
        if not self.shared_evaluation:
            return self.batches(size, generator, device)()
        one = replace(self, replicates=1).batches(size, generator, device)()
        return tuple(None if t is None else t.repeat_interleave(self.replicates, 0) for t in one)

    def train(self, device: torch.device | str = "cpu") -> TrainedSweep:
        """Train every instance in one loop and keep the best replicate per configuration."""
        generator = torch.Generator(device).manual_seed(self.seed)
        _, importance = self.instance_tensors(device)
        model = ToyModel(self.n_instances, self.n_features, self.n_hidden, self.activation,
                         generator=generator, device=device,
                         hidden_activation=self.hidden_activation, tied=self.tied)
        description = f"toy n={self.n_features} m={self.n_hidden} ×{self.n_instances}"
        if self.drawn_in_kernel(torch.device(device)):
            p, _ = self.instance_tensors(device)
            history = train_drawn_in_kernel(model, p.reshape(len(p), -1).expand(-1, self.n_features),
                                            importance, self.training, generator, description)
        else:
            history = fit(model, self.batches(self.training.batch_size, generator, device),
                          importance, self.training, description)
        evaluation, target = self.evaluation_batch(generator, device)
        with torch.no_grad():
            final = model.loss(evaluation, importance, target=target).view(self.n_configs,
                                                                          self.replicates)
        best = final.argmin(1)
        kept = torch.arange(self.n_configs, device=device) * self.replicates + best
        shape = (self.n_configs, self.replicates, self.n_hidden, self.n_features)
        return TrainedSweep(
            config=self,
            W=model.W.detach()[kept].cpu(),
            b=model.b.detach()[kept, 0].cpu(),
            loss=final.gather(1, best[:, None]).squeeze(1).cpu(),
            replicate_W=model.W.detach().view(shape).cpu(),
            replicate_loss=final.cpu(),
            loss_history=history.view(-1, self.n_configs, self.replicates).cpu(),
            W_out=None if self.tied else model.W_out.detach()[kept].cpu(),
        )

    def from_tensors(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> TrainedSweep:
        return TrainedSweep(config=self, **tensors)


@dataclass
class TrainedSweep:
    """The best replicate of every configuration, and every replicate's weights and loss.

    Attributes:
        W: ``(configs, hidden, feats)``; b: ``(configs, feats)`` of the kept replicate.
        W_out: ``(configs, hidden, feats)`` decoder of the kept replicate (untied models only).
        loss: ``(configs,)`` evaluation loss of the kept replicate.
        replicate_W: ``(configs, replicates, hidden, feats)`` every trained instance.
        replicate_loss: ``(configs, replicates)`` evaluation loss of every replicate.
        loss_history: ``(logs, configs, replicates)`` training loss per log interval.
        cache_key: set by :func:`replication.artifact.load_or_train` (absent on an artifact
            trained without the cache); artifacts built on this one name it in their key.
    """

    config: ToySweep
    W: Float[Tensor, "configs hidden feats"]
    b: Float[Tensor, "configs feats"]
    loss: Float[Tensor, " configs"]
    replicate_W: Float[Tensor, "configs replicates hidden feats"]
    replicate_loss: Float[Tensor, "configs replicates"]
    loss_history: Float[Tensor, "logs configs replicates"]
    W_out: Float[Tensor, "configs hidden feats"] | None = None

    def tensors(self) -> dict[str, Tensor]:
        tensors = {"W": self.W, "b": self.b, "loss": self.loss, "replicate_W": self.replicate_W,
                   "replicate_loss": self.replicate_loss, "loss_history": self.loss_history}
        return tensors if self.W_out is None else {**tensors, "W_out": self.W_out}

    def meta(self) -> dict[str, Any]:
        return {"n_instances": self.config.n_instances}

    def model(self) -> ToyModel:
        """The kept models as one batched :class:`ToyModel` (one instance per configuration)."""
        return ToyModel.from_tensors(self.W, self.b, self.config.activation,
                                     self.config.hidden_activation, self.W_out)
