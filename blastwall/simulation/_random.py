"""Counter-based randomness and the event-id permutation.

Most randomness comes from ``numpy.random.default_rng([seed, day, stream])`` so
every day is generated independently of the others. Some quantities, however,
must agree between two UTC days (a person's *local* day straddles two UTC days:
whether they are on leave, how busy they are). Those come from a stateless hash
of their keys instead of a generator's state.
"""

from __future__ import annotations

import numpy as np

_MASK32 = np.uint64(0xFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, element-wise over ``uint64`` arrays."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash64(*keys: np.ndarray | int) -> np.ndarray:
    """Hash broadcastable integer keys into well-mixed ``uint64`` values.

    Parameters
    ----------
    *keys : array_like of int
        Keys combined in order; arrays broadcast against each other.

    Returns
    -------
    numpy.ndarray
        ``uint64`` hash per broadcast element.
    """
    h = np.asarray(np.uint64(0x632BE59BD9B4E019))
    for key in keys:
        # Negative keys (e.g. relative day -1) wrap to uint64 on purpose.
        k = np.asarray(key).astype(np.int64).astype(np.uint64)
        h = _splitmix64(h ^ _splitmix64(k))
    return h


def hash_uniform(*keys: np.ndarray | int) -> np.ndarray:
    """Uniform floats in [0, 1) that depend only on the keys.

    Parameters
    ----------
    *keys : array_like of int
        See :func:`hash64`.

    Returns
    -------
    numpy.ndarray
        ``float64`` values in [0, 1).
    """
    return (hash64(*keys) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def hash_normal(*keys: np.ndarray | int) -> np.ndarray:
    """Standard-normal floats that depend only on the keys (Box–Muller)."""
    u1 = hash_uniform(*keys, 1)
    u2 = hash_uniform(*keys, 2)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def permute32(index: np.ndarray, key: int) -> np.ndarray:
    """A keyed bijection of the 32-bit integers.

    Event ids are ``permute32(position)``: unique within a day because the map
    is a bijection, and attack rows (numbered from ``2**31``) become
    indistinguishable from benign ones.

    Parameters
    ----------
    index : numpy.ndarray
        Values below ``2**32``.
    key : int
        Any integer; different keys give unrelated permutations.

    Returns
    -------
    numpy.ndarray
        ``uint64`` array of permuted values below ``2**32``.
    """
    x = np.asarray(index).astype(np.uint64) & _MASK32
    round_keys = hash64(np.arange(4), key) & _MASK32
    with np.errstate(over="ignore"):
        for r in range(4):
            # Each step (xor a constant, multiply by an odd constant modulo
            # 2**32, xor-shift) is invertible, so the composition is a bijection.
            x = x ^ round_keys[r]
            x = (x * np.uint64(0x9E3779B1 | 1)) & _MASK32
            x = x ^ (x >> np.uint64(16))
            x = (x * np.uint64(0x85EBCA6B)) & _MASK32
            x = x ^ (x >> np.uint64(13))
    return x


def event_id_key(seed: int, day: int) -> int:
    """Key of the event-id permutation of one day (shared by benign and attack rows)."""
    return int(hash64(seed, day, 0xE1D)[()])


def day_rng(seed: int, day: int, stream: int) -> np.random.Generator:
    """The generator of one (day, stream): independent of every other day."""
    return np.random.default_rng([seed, day, stream])
