"""Per-sample deterministic randomness without global generators.

Every sample gets a 64-bit key from a stable hash of (sample id, condition, seed) (``sample_keys``); its random
numbers are a counter-based hash of (key, stream, counter) (``uniform``), so a sample draws the same numbers
alone, in any batch, in any order and on any device.

The hash is computed with exact integer arithmetic on int64 tensors holding 32-bit words: every product is a
32-bit word times a 16-bit constant half (< 2**48), so nothing overflows and CPU and CUDA give the same bits.
The 32-bit mixer is Chris Wellons' ``lowbias32``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def sample_keys(sample_ids: Sequence[str], condition: str, seed: int) -> torch.Tensor:
    """One int64 key per sample: the first 8 bytes of BLAKE2b over (condition, seed, sample id)."""
    keys = []
    for sample_id in sample_ids:
        message = f"fbench-perturb\x1f{condition}\x1f{int(seed)}\x1f{sample_id}".encode()
        digest = hashlib.blake2b(message, digest_size=8).digest()
        keys.append(int.from_bytes(digest, "little", signed=True))
    return torch.tensor(keys, dtype=torch.int64).reshape(len(keys))


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """(x * constant) mod 2**32 for x in [0, 2**32), exactly, without int64 overflow."""
    low, high = constant & 0xFFFF, (constant >> 16) & 0xFFFF
    return (x * low + (((x * high) & 0xFFFF) << 16)) & MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32: a bijective 32-bit integer hash with good avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _mix32_int(x: int) -> int:
    x &= MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def hash32(keys: torch.Tensor, stream: int, counters: torch.Tensor) -> torch.Tensor:
    """32-bit hashes (int64 tensor with values in [0, 2**32)) of (key, stream, counter).

    ``keys`` and ``counters`` broadcast against each other; counters are non-negative integers."""
    keys = keys.to(torch.int64)
    counters = counters.to(device=keys.device, dtype=torch.int64)
    salt = _mix32_int(_mix32_int(int(stream) * _GOLDEN + 0x7F4A7C15) ^ 0x2545F491)
    low, high = keys & MASK32, (keys >> 32) & MASK32
    base = _mix32(_mix32(low ^ salt) ^ high)
    counter_low, counter_high = counters & MASK32, (counters >> 32) & MASK32
    h = _mix32(base ^ counter_low)
    h = _mix32((h + _mix32(counter_high ^ 0x632BE5AB) + salt) & MASK32)
    return h


def uniform_at(keys: torch.Tensor, stream: int, counters: torch.Tensor) -> torch.Tensor:
    """Uniform float32 numbers in [0, 1) (24-bit resolution) for broadcast (key, counter) pairs."""
    return (hash32(keys, stream, counters) >> 8).to(torch.float32) * (1.0 / 16777216.0)


def uniform(keys: torch.Tensor, stream: int, count: int) -> torch.Tensor:
    """``count`` uniform numbers in [0, 1) per key: an (N, count) float32 tensor on the keys' device.

    Column j of a sample depends only on (key, stream, j): never on the batch or on ``count``."""
    keys = keys.reshape(-1).to(torch.int64)
    counters = torch.arange(int(count), dtype=torch.int64, device=keys.device)
    return uniform_at(keys[:, None], stream, counters[None, :])
