"""Which examples make each step's batch, decided from (seed, epoch) alone.

An epoch: the examples of each bucket (images of one training size) in a shuffled order, cut
into global batches; a bucket's last, short batch is filled up from the start of its order, so
every batch is full and every image is seen each epoch. The batches are then shuffled. Because
the plan is a pure function of the seed, the epoch and the dataset, a resumed run (or every
rank of a data-parallel run) knows batch k without any saved random state.

With data parallelism a global batch of `batch_size * world` examples is cut into `world`
slices; rank r trains on slice r, so only its own images are ever read there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchPlan:
    buckets: list[tuple[int, int]]  # bucket of each example
    global_batch: int
    seed: int

    def batches_per_epoch(self) -> int:
        counts = {}
        for bucket in self.buckets:
            counts[bucket] = counts.get(bucket, 0) + 1
        return sum(-(-n // self.global_batch) for n in counts.values())

    def epoch(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, 7, epoch])  # 7: this stream's number
        batches = []
        for bucket in sorted(set(self.buckets)):
            members = [i for i, b in enumerate(self.buckets) if b == bucket]
            order = [members[i] for i in rng.permutation(len(members))]
            short = -len(order) % self.global_batch
            order += [order[i % len(order)] for i in range(short)]
            batches += [
                order[i : i + self.global_batch] for i in range(0, len(order), self.global_batch)
            ]
        return [batches[i] for i in rng.permutation(len(batches))]

    def batch(self, index: int) -> list[int]:
        """The example indices of global batch `index` (counted from the run's start)."""
        per_epoch = self.batches_per_epoch()
        return self.epoch(index // per_epoch)[index % per_epoch]


def rank_slice(batch: list[int], rank: int, world: int) -> slice:
    per_rank = len(batch) // world
    return slice(rank * per_rank, (rank + 1) * per_rank)
