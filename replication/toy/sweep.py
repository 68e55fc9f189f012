"""A sweep: many toy-model configurations × replicates trained as the instances of one model.

Instances are laid out configuration-major (instance = config * replicates + replicate). After
training, each instance is scored on one fresh evaluation batch and the best replicate of every
configuration is kept, as the papers do for the optimisation-prone small models.

:class:`ToySweep` is the config of a :mod:`replication.artifact` and :class:`TrainedSweep` its
artifact: ``load_or_train(sweep, cache, device)`` trains or loads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from replication.toy.data import SparseFeatureSampler
from replication.toy.model import ToyModel
from replication.toy.train import TrainConfig
from replication.toy.train import train as train_instances

EVAL_BATCH = 16_384


def geometric_importance(n_features: int, decay: float) -> tuple[float, ...]:
    """Importance I_i = decay**i (decay 1: every feature equally important)."""
    return tuple(float(decay**i) for i in range(n_features))


@dataclass(frozen=True)
class ToySweep:
    """The configurations of one batched toy-model run.

    Args:
        n_features: n, features per input.
        n_hidden: m, hidden dimensions.
        feature_probability: one density 1 − S per configuration.
        importance: one importance vector per configuration, or a single one for all.
        activation: ``relu`` (ReLU-output model) or ``linear``.
        replicates: instances trained per configuration; the lowest-loss one is kept.
        training: optimisation settings.
        seed: seeds initialisation and data.
    """

    kind: ClassVar[str] = "toy-sweep"

    n_features: int
    n_hidden: int
    feature_probability: tuple[float, ...]
    importance: tuple[tuple[float, ...], ...]
    activation: str = "relu"
    replicates: int = 1
    training: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    def __post_init__(self):
        if len(self.importance) not in (1, self.n_configs):
            raise ValueError(f"importance needs 1 or {self.n_configs} rows, got {len(self.importance)}")
        if any(len(row) != self.n_features for row in self.importance):
            raise ValueError(f"every importance row needs {self.n_features} values")

    @property
    def n_configs(self) -> int:
        return len(self.feature_probability)

    @property
    def n_instances(self) -> int:
        return self.n_configs * self.replicates

    def to_dict(self) -> dict:
        return asdict(self)

    def instance_tensors(self, device) -> tuple[Float[Tensor, " inst"], Float[Tensor, "inst feats"]]:
        """Per-instance feature probability and importance."""
        p = torch.tensor(self.feature_probability, device=device)
        importance = torch.tensor(self.importance, device=device).expand(self.n_configs, -1)
        return (p.repeat_interleave(self.replicates),
                importance.repeat_interleave(self.replicates, dim=0).contiguous())


    def train(self, device: torch.device | str = "cpu") -> TrainedSweep:
        """Train every instance in one loop and keep the best replicate per configuration."""
        generator = torch.Generator(device).manual_seed(self.seed)
        p, importance = self.instance_tensors(device)
        model = ToyModel(self.n_instances, self.n_features, self.n_hidden, self.activation,
                         generator=generator, device=device)
        sampler = SparseFeatureSampler(p, self.n_features, self.training.batch_size, generator)
        description = f"toy n={self.n_features} m={self.n_hidden} ×{self.n_instances}"
        history = train_instances(model, lambda: (sampler(), None), importance, self.training,
                                  description)
        evaluation = SparseFeatureSampler(p, self.n_features, EVAL_BATCH, generator)()
        with torch.no_grad():
            final = model.loss(evaluation, importance).view(self.n_configs, self.replicates)
        best = final.argmin(1)
        kept = torch.arange(self.n_configs, device=device) * self.replicates + best
        return TrainedSweep(
            config=self,
            W=model.W.detach()[kept].cpu(),
            b=model.b.detach()[kept, 0].cpu(),
            loss=final.gather(1, best[:, None]).squeeze(1).cpu(),
            replicate_W=model.W.detach().view(self.n_configs, self.replicates,
                                              self.n_hidden, self.n_features).cpu(),
            replicate_loss=final.cpu(),
            loss_history=history.view(-1, self.n_configs, self.replicates).cpu(),
        )

    def from_tensors(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> TrainedSweep:
        return TrainedSweep(config=self, **tensors)


@dataclass
class TrainedSweep:
    """The best replicate of every configuration, and every replicate's weights and loss.

    Attributes:
        W: ``(configs, hidden, feats)``; b: ``(configs, feats)`` of the kept replicate.
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

    def tensors(self) -> dict[str, Tensor]:
        return {"W": self.W, "b": self.b, "loss": self.loss, "replicate_W": self.replicate_W,
                "replicate_loss": self.replicate_loss, "loss_history": self.loss_history}

    def meta(self) -> dict[str, Any]:
        return {"n_instances": self.config.n_instances}

    def model(self) -> ToyModel:
        """The kept models as one batched :class:`ToyModel` (one instance per configuration)."""
        return ToyModel.from_tensors(self.W, self.b, self.config.activation)
