"""Training SAEs on toy-model activations drawn on the fly, every SAE of a sweep in one loop.

A :class:`ToySAESweep` puts one SAE on every configuration of a trained toy sweep for each
L1 coefficient. Each step draws fresh inputs x from every toy configuration's data distribution,
takes its hidden activations h = W x, and gives every SAE the batch of its toy model; the SAEs
of one toy model share their batches. The step is sae-lens's own: its ``training_forward_pass``
(through :class:`~replication.sae.batched.SAEStack`), Adam with the library's betas, each SAE's
gradient norm clipped at 1.0 as ``SAETrainer`` does, its learning-rate and coefficient schedules,
run by the loop the toy models train in (:func:`replication.toy.train.logged_loop`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from jaxtyping import Float, Int
from sae_lens.training.optim import CoefficientScheduler, get_lr_scheduler
from torch import Tensor

from replication.sae.batched import SAEArchitecture, SAEStack
from replication.toy.data import SparseFeatureSampler
from replication.toy.sweep import ToySweep, TrainedSweep
from replication.toy.train import logged_loop

MAX_GRAD_NORM = 1.0  # sae-lens SAETrainer clips every SAE's gradient norm at 1.0


@dataclass(frozen=True)
class SAETrainConfig:
    """Optimisation settings of every SAE in a sweep (sae-lens ``SAETrainerConfig`` names).

    Args:
        steps: optimizer steps.
        batch_size: activations per SAE per step (``train_batch_size_samples``).
        lr: Adam learning rate.
        lr_warm_up_steps: linear warm-up of the learning rate.
        lr_decay_steps: linear decay of the learning rate to zero over the last steps.
        l1_warm_up_steps: linear warm-up of the L1 coefficient (standard SAEs).
        adam_beta1, adam_beta2: Adam's betas (sae-lens defaults).
    """

    steps: int = 4_000
    batch_size: int = 1024
    lr: float = 3e-3
    lr_warm_up_steps: int = 0
    lr_decay_steps: int = 0
    l1_warm_up_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999

    def __post_init__(self):
        if self.lr_warm_up_steps + self.lr_decay_steps > self.steps:
            raise ValueError(
                f"warm-up {self.lr_warm_up_steps} + decay {self.lr_decay_steps} steps "
                f"exceed the {self.steps} training steps"
            )


class ToyActivations:
    """Hidden activations h = W x of trained toy models, drawn fresh on every call.

    Args:
        W: ``(configs, hidden, feats)`` the toy models' feature directions.
        feature_probability: ``(configs,)`` each model's feature density 1 − S.
        batch_size: inputs per configuration per call.
        generator: the torch generator the inputs come from.
    """

    def __init__(
        self,
        W: Float[Tensor, "configs hidden feats"],
        feature_probability: Float[Tensor, " configs"],
        batch_size: int,
        generator: torch.Generator,
    ):
        self.W = W
        self.sampler = SparseFeatureSampler(feature_probability, W.shape[2], batch_size, generator)

    def __call__(self) -> Float[Tensor, "configs batch hidden"]:
        return torch.bmm(self.sampler(), self.W.transpose(1, 2))


@dataclass(frozen=True)
class ToySAESweep:
    """SAEs on the hidden activations of (some) configurations of a toy sweep: the config of a
    :mod:`replication.artifact` whose upstream artifact is the trained toy sweep, so
    ``load_or_train(sweep, cache, device, upstream=(toy,))`` trains or loads it.

    Instances are laid out configuration-major: SAE ``k * variants + v`` reads the k-th chosen
    toy configuration with the v-th L1 coefficient.

    Args:
        toy: the toy sweep whose trained (kept) models produce the activations.
        architecture: the sae-lens SAE every instance uses; ``d_in`` must equal ``toy.n_hidden``.
        l1_coefficients: standard SAEs: one SAE per toy configuration and value; TopK: empty.
        training: optimisation settings.
        seed: seeds the SAEs' initialisation and the activation stream.
        configs: the toy configurations that get SAEs (``None``: all of them).
    """

    kind: ClassVar[str] = "toy-sae"

    toy: ToySweep
    architecture: SAEArchitecture
    l1_coefficients: tuple[float, ...] = ()
    training: SAETrainConfig = field(default_factory=SAETrainConfig)
    seed: int = 0
    configs: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.architecture.d_in != self.toy.n_hidden:
            raise ValueError(
                f"SAE d_in {self.architecture.d_in} != toy hidden size {self.toy.n_hidden}"
            )
        if (self.architecture.kind == "standard") != bool(self.l1_coefficients):
            raise ValueError(
                "standard SAEs need at least one L1 coefficient and TopK SAEs none; got "
                f"kind={self.architecture.kind!r}, l1_coefficients={self.l1_coefficients}"
            )
        if self.configs is not None and (
            not self.configs or not set(self.configs) <= set(range(self.toy.n_configs))
        ):
            raise ValueError(
                f"configs {self.configs} must be a non-empty subset of the toy sweep's "
                f"configurations 0..{self.toy.n_configs - 1}"
            )

    @property
    def toy_configs(self) -> tuple[int, ...]:
        return tuple(range(self.toy.n_configs)) if self.configs is None else self.configs

    @property
    def n_variants(self) -> int:
        return max(1, len(self.l1_coefficients))

    @property
    def n_instances(self) -> int:
        return len(self.toy_configs) * self.n_variants

    def toy_index(self, device=None) -> Int[Tensor, " inst"]:
        """The toy configuration each SAE reads."""
        return torch.tensor(self.toy_configs, device=device).repeat_interleave(self.n_variants)

    def activations(
        self, toy: TrainedSweep, batch_size: int, generator: torch.Generator
    ) -> Callable[[], Float[Tensor, "inst batch hidden"]]:
        """A source of fresh activations, each SAE's batch from its toy model (shared by the SAEs
        of one toy model)."""
        if toy.config != self.toy:
            raise ValueError(
                "the trained toy sweep does not match the SAE sweep's toy configuration"
            )
        device = generator.device
        configs = torch.tensor(self.toy_configs, device=device)
        p = torch.tensor(self.toy.feature_probability, device=device)[configs]
        source = ToyActivations(toy.W.to(device)[configs], p, batch_size, generator)
        local = torch.arange(len(configs), device=device).repeat_interleave(self.n_variants)
        return lambda: source()[local]

    def build_stack(self) -> SAEStack:
        """Freshly initialised SAEs (on the CPU), seeded by ``seed``."""
        coefficients = self.l1_coefficients or (0.0,)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            saes = [
                self.architecture.build(l1, self.training.l1_warm_up_steps)
                for _ in self.toy_configs
                for l1 in coefficients
            ]
        return SAEStack(saes)

    def to_dict(self) -> dict:
        return asdict(self)

    def train(self, device: torch.device | str, toy: TrainedSweep) -> TrainedToySAEs:
        """Train every SAE on activations of ``toy``'s models, in one loop."""
        stack = self.build_stack().to(device)
        generator = torch.Generator(device).manual_seed(self.seed)
        history = train_stack(
            stack,
            self.activations(toy, self.training.batch_size, generator),
            self.training,
            description=f"SAEs {self.architecture.kind} d_sae={self.architecture.d_sae} "
            f"×{self.n_instances}",
        )
        weights = {k: v.detach().cpu() for k, v in stack.params.items()}
        return TrainedToySAEs(self, weights, {k: v.cpu() for k, v in history.items()})

    def from_tensors(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> TrainedToySAEs:
        split = {
            prefix: {
                k.removeprefix(f"{prefix}."): v
                for k, v in tensors.items()
                if k.startswith(f"{prefix}.")
            }
            for prefix in ("weights", "history")
        }
        return TrainedToySAEs(self, split["weights"], split["history"])


def clip_grad_norm_per_instance(params: list[Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` applied to each instance's slice of stacked parameters."""
    norms = torch.stack([p.grad.flatten(1).norm(dim=1) for p in params]).norm(dim=0)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale.view(-1, *[1] * (p.dim() - 1)))


def train_stack(
    stack: SAEStack,
    next_batch: Callable[[], Float[Tensor, "inst batch d_in"]],
    config: SAETrainConfig,
    description: str = "SAEs",
    log_every: int = 250,
) -> dict[str, Float[Tensor, "logs inst"]]:
    """Train every SAE of ``stack`` in place; returns each loss term averaged per log interval."""
    params = list(stack.params.values())
    optimizer = torch.optim.Adam(params, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2))
    lr_schedule = get_lr_scheduler(
        "constant",
        optimizer=optimizer,
        training_steps=config.steps,
        lr=config.lr,
        warm_up_steps=config.lr_warm_up_steps,
        decay_steps=config.lr_decay_steps,
        lr_end=config.lr,
        num_cycles=1,
    )
    coefficient_schedules = {
        name: CoefficientScheduler(warm_up, 1.0)
        for name, warm_up in stack.coefficient_warm_up.items()
    }

    def step(i: int) -> dict[str, Tensor]:
        coefficients = {
            name: stack.coefficient_values[name] * schedule.value
            for name, schedule in coefficient_schedules.items()
        }
        loss, losses, _, _ = stack.training_forward_pass(next_batch(), coefficients, i)
        loss.sum().backward()
        clip_grad_norm_per_instance(params, MAX_GRAD_NORM)
        return {"loss": loss, **losses}

    schedules = (lr_schedule, *coefficient_schedules.values())
    return logged_loop(config.steps, step, optimizer, schedules, description, log_every)


@dataclass
class TrainedToySAEs:
    """The trained SAEs of a :class:`ToySAESweep`.

    Attributes:
        weights: sae-lens parameter name → ``(inst, ...)`` stacked tensor.
        loss_history: loss term (``loss``, ``mse_loss``, ``l1_loss`` …) → ``(logs, inst)``.
    """

    config: ToySAESweep
    weights: dict[str, Tensor]
    loss_history: dict[str, Tensor]

    def stack(self, device: torch.device | str = "cpu") -> SAEStack:
        """The SAEs as a :class:`SAEStack` holding the trained weights."""
        stack = self.config.build_stack()
        with torch.no_grad():
            for name, value in self.weights.items():
                stack.params[name].copy_(value)
        return stack.to(device)

    def tensors(self) -> dict[str, Tensor]:
        return {
            **{f"weights.{k}": v for k, v in self.weights.items()},
            **{f"history.{k}": v for k, v in self.loss_history.items()},
        }

    def meta(self) -> dict[str, Any]:
        return {"n_instances": self.config.n_instances}
