"""A reservoir buffer filled during training: what Mammoth's ``utils/buffer.py`` keeps for ER, DER, DER++
and CLS-ER (the strategies that store samples as they arrive, not at the end of an experience).

Avalanche's ``ReservoirSamplingBuffer`` draws the same uniform sample, but only at the end of each
experience (``post_adapt``), so nothing of the current experience is replayed while it is learnt and a
sample's extras (DER's logits) can only be those of the end-of-experience model.
"""
from __future__ import annotations

import random

import torch


class ReservoirBuffer:
    """A uniform sample of at most ``capacity`` of every row ever offered (Vitter's algorithm R, as
    Mammoth's ``reservoir``); each row is a tuple of tensors (e.g. ``x, y, t`` or ``x, y, t, logits``)
    kept on the device they come from."""

    def __init__(self, capacity: int, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"buffer capacity must be positive, got {capacity}")
        self.capacity, self.seen, self.size = int(capacity), 0, 0
        self.rng = random.Random(seed)
        self.fields: list[torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.size

    def add(self, *batch: torch.Tensor) -> None:
        """Offer each row of ``batch`` (tensors of equal length) to the reservoir."""
        if self.fields is None:
            self.fields = [b.new_empty((self.capacity, *b.shape[1:])) for b in batch]
        row_of_slot = {}  # a later row overwrites an earlier one in the same slot
        for i in range(len(batch[0])):
            self.seen += 1
            slot = self.size if self.size < self.capacity else self.rng.randrange(self.seen)
            if slot < self.capacity:
                row_of_slot[slot] = i
                self.size = max(self.size, slot + 1)
        if row_of_slot:
            slots = torch.tensor(list(row_of_slot), device=batch[0].device)
            rows = torch.tensor(list(row_of_slot.values()), device=batch[0].device)
            for field, b in zip(self.fields, batch):
                field[slots] = b[rows].detach()

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """``min(n, len(self))`` distinct stored rows, drawn uniformly."""
        idx = torch.randperm(self.size, generator=generator)[:n].to(self.fields[0].device)
        return tuple(field[idx] for field in self.fields)

    def stored(self) -> tuple[torch.Tensor, ...]:
        """Every stored row."""
        return tuple(field[:self.size] for field in self.fields)

    def to(self, device) -> "ReservoirBuffer":
        if self.fields is not None:
            self.fields = [field.to(device) for field in self.fields]
        return self
