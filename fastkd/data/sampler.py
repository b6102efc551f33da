"""Seeded epoch sampler: the batch at (epoch, i) and its augmentation seed are pure functions of the run seed."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across runs, machines and Python versions."""
    digest = hashlib.blake2b(b",".join(str(p).encode() for p in parts), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class EpochSampler:
    """Batches of sample indices per epoch; with shards, each global batch of B*num_shards is split k::num_shards.

    Every sample is seen exactly once per epoch across shards, and every shard gets the same number of batches.
    """

    def __init__(self, num_samples: int, batch_size: int, *, seed: int, shuffle: bool = True,
                 drop_last: bool = False, shard_id: int = 0, num_shards: int = 1):
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id {shard_id} must be in 0..{num_shards - 1}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.shard_id = shard_id
        self.num_shards = num_shards
        self._cached: tuple[int, torch.Tensor] | None = None

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.num_shards

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.global_batch)
        return full + (1 if rest and not self.drop_last else 0)

    def permutation(self, epoch: int) -> torch.Tensor:
        if self._cached is None or self._cached[0] != epoch:
            if self.shuffle:
                gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 0xDA7A))
                perm = torch.randperm(self.num_samples, generator=gen)
            else:
                perm = torch.arange(self.num_samples)
            self._cached = (epoch, perm)
        return self._cached[1]

    def batch(self, epoch: int, i: int) -> torch.Tensor:
        """This shard's indices of batch i of the epoch (int64, CPU)."""
        start = i * self.global_batch
        return self.permutation(epoch)[start:start + self.global_batch][self.shard_id::self.num_shards]

    def batch_seed(self, epoch: int, i: int) -> int:
        """The augmentation seed of this shard's batch i (per shard, so ranks draw independent augmentations);
        replays store it with the indices and regenerate identical pixels."""
        return derive_seed(self.seed, epoch, i, self.shard_id, 0xA116)
