"""Training sets of different sizes in one layout: a flat point list cut into fixed-size chunks.

Instance k trains on the T_k points of its configuration. The points of all instances are laid
end to end and cut into chunks of C slots, every chunk owned by one instance (an instance's last
chunk is padded), so one batched matrix product over chunks serves every training-set size at
once. C is the layout's only knob: C = 1 is the flat point list with an instance index, C ≥ max T
is padding every set to the largest, and in between padding costs at most C − 1 slots per
instance (benchmarks/test_double_descent_speed.py measures the three).

Inputs stay sparse: the packed sets hold their non-zero entries addressed by slot. Where the
dense (chunks × C × features) outputs are written out (the portable path of
:mod:`replication.double_descent.model`), chunks are processed in groups that fit a memory
budget.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from replication.double_descent.data import SparsePoints

# Dense output elements (chunks × C × features) computed at once, per device type. On CPU 2^20
# floats (4 MiB) stay in cache across the three products of a group: twice as fast as one
# 128 MiB group. On a GPU larger groups amortise the kernel launches.
GROUP_ELEMENTS = {"cpu": 1 << 20, "cuda": 1 << 27}


@dataclass(frozen=True)
class PackedSets:
    """Fixed training sets, one per instance, packed into chunks of ``chunk_size`` slots.

    The non-zero input entries appear twice as sparse CSR matrices: ``inputs`` (slots ×
    instances·features), whose product with the stacked encoders gives every hidden vector,
    and its transpose ``inputs_t``, whose products scatter per-slot gradients back onto the
    features. Row k·n + f of an ``(instances · features, …)`` matrix is feature f of instance k.

    Attributes:
        chunk_instance: ``(chunks,)`` the instance owning each chunk (non-decreasing).
        slot_weight: ``(chunks, chunk)`` example weight of each slot: 1/T_k on a point of
            instance k, 0 on padding, so a weighted sum over slots is a mean per instance.
        inputs: CSR ``(slots, instances · features)`` of the entries, in slot order.
        inputs_t: CSR ``(instances · features, slots)`` of the same entries.
        transposed_order: ``(nnz,)`` the slot-order index of each entry of ``inputs_t``.
        entry_instance: ``(nnz,)`` instance of each entry (slot order, as below).
        entry_row: ``(nnz,)`` instance · features + feature of each entry.
        entry_value: ``(nnz,)`` value of each entry.
        entry_weight: ``(nnz,)`` example weight of the entry's slot.
        entry_slot: ``(nnz,)`` slot of each entry.
        groups: ``(first chunk, last chunk + 1)`` of each group of chunks whose dense outputs
            fit the memory budget.
    """

    chunk_instance: Int[Tensor, " chunks"]
    slot_weight: Float[Tensor, "chunks chunk"]
    inputs: Tensor
    inputs_t: Tensor
    transposed_order: Int[Tensor, " nnz"]
    entry_instance: Int[Tensor, " nnz"]
    entry_row: Int[Tensor, " nnz"]
    entry_value: Float[Tensor, " nnz"]
    entry_weight: Float[Tensor, " nnz"]
    entry_slot: Int[Tensor, " nnz"]
    groups: tuple[tuple[int, int], ...]
    n_instances: int
    n_features: int

    @property
    def chunk_size(self) -> int:
        return self.slot_weight.shape[1]

    @property
    def n_slots(self) -> int:
        return self.slot_weight.numel()

    @property
    def instance_chunks(self) -> Int[Tensor, " inst_plus_1"]:
        """Instance k owns chunks ``instance_chunks[k] : instance_chunks[k + 1]``."""
        counts = torch.bincount(self.chunk_instance, minlength=self.n_instances)
        return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


def with_values(matrix: Tensor, values: Float[Tensor, " nnz"]) -> Tensor:
    """The CSR ``matrix`` with its stored values replaced (same sparsity pattern)."""
    return torch.sparse_csr_tensor(matrix.crow_indices(), matrix.col_indices(), values,
                                   matrix.shape, check_invariants=False)


def csr(rows: Int[Tensor, " nnz"], columns: Int[Tensor, " nnz"], values: Float[Tensor, " nnz"],
        shape: tuple[int, int]) -> Tensor:
    """CSR matrix of entries sorted by row (columns ascending within a row)."""
    crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=values.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
    with warnings.catch_warnings():  # torch says once per process that CSR support is beta
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(crow, columns, values, shape, check_invariants=False)


def pack(points: SparsePoints, sizes: Sequence[int], replicates: int, chunk_size: int,
         group_elements: int | None = None) -> PackedSets:
    """Pack the training sets of a sweep.

    Args:
        points: every configuration's training points, configuration c owning the ``sizes[c]``
            rows after those of configurations ``0..c-1``.
        sizes: T per configuration.
        replicates: instances per configuration (instance k = c · replicates + r), all
            trained on their configuration's points.
        chunk_size: C, slots per chunk.
        group_elements: at most this many dense output elements per group of chunks
            (default: :data:`GROUP_ELEMENTS` of the points' device type).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if sum(sizes) != points.count or min(sizes) < 1:
        raise ValueError(
            f"sizes {list(sizes)} must be positive and sum to the {points.count} points")
    device = points.value.device
    n_configs, n = len(sizes), points.n_features
    config_size = torch.tensor(sizes, device=device)
    config_first_row = torch.cumsum(config_size, 0) - config_size

    size = config_size.repeat_interleave(replicates)  # (inst,)
    chunks = (size + chunk_size - 1) // chunk_size
    first_chunk = torch.cumsum(chunks, 0) - chunks
    chunk_instance = torch.arange(len(size), device=device).repeat_interleave(chunks)
    position = ((torch.arange(len(chunk_instance), device=device) - first_chunk[chunk_instance])
                [:, None] * chunk_size + torch.arange(chunk_size, device=device))
    owner_size = size[chunk_instance][:, None]
    slot_weight = torch.where(position < owner_size, 1.0 / owner_size, 0.0).float()

    # Each configuration's entries, repeated once per replicate (instance-major, row order kept).
    entry_config = torch.searchsorted(config_first_row, points.row, right=True) - 1
    config_entries = torch.bincount(entry_config, minlength=n_configs)
    config_first_entry = torch.cumsum(config_entries, 0) - config_entries
    instance_entries = config_entries.repeat_interleave(replicates)
    entry_instance = torch.arange(len(size), device=device).repeat_interleave(instance_entries)
    offset = torch.arange(len(entry_instance), device=device) - (
        torch.cumsum(instance_entries, 0) - instance_entries)[entry_instance]
    source = config_first_entry[entry_instance // replicates] + offset
    row = points.row[source]
    local = row - config_first_row[entry_instance // replicates]
    entry_slot = first_chunk[entry_instance] * chunk_size + local

    group_elements = group_elements or GROUP_ELEMENTS.get(device.type, GROUP_ELEMENTS["cuda"])
    per_group = max(1, group_elements // (chunk_size * n))
    bounds = torch.arange(0, len(chunk_instance) + per_group, per_group, device=device)
    b = bounds.clamp(max=len(chunk_instance)).unique().tolist()
    groups = tuple(zip(b[:-1], b[1:], strict=True))

    entry_row, value = entry_instance * n + points.feature[source], points.value[source]
    n_slots, n_rows = slot_weight.numel(), len(size) * n
    transposed_order = torch.argsort(entry_row, stable=True)  # by row, slots ascending within
    return PackedSets(
        chunk_instance, slot_weight,
        inputs=csr(entry_slot, entry_row, value, (n_slots, n_rows)),
        inputs_t=csr(entry_row[transposed_order], entry_slot[transposed_order],
                     value[transposed_order], (n_rows, n_slots)),
        transposed_order=transposed_order, entry_instance=entry_instance, entry_row=entry_row,
        entry_value=value, entry_weight=slot_weight.view(-1)[entry_slot], entry_slot=entry_slot,
        groups=groups, n_instances=len(size), n_features=n)
