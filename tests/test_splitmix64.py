"""Known-answer tests of leadsim's SplitMix64 generator (numba kernels and numpy twins).

SplitMix64 (Steele, Lea & Flood 2014; Vigna's ``splitmix64.c``) from state ``s`` returns
``mix(s + i * GAMMA)`` for ``i = 1, 2, ...``; leadsim's ``word(k, c) = mix(k + (c + 1) * GAMMA)`` is therefore
the ``c``-th output of SplitMix64 seeded with ``k``. The vectors below are the published ones: seed 1234567
(Rosetta Code, "Pseudo-random numbers/Splitmix64") and seed 0 (the first outputs of ``splitmix64.c``).
A pure-Python implementation (unbounded integers, masked to 64 bits) checks the rest of the scheme.
"""

from __future__ import annotations

import numpy as np
import pytest

from leadsim.model import _kernel, rng

MASK = (1 << 64) - 1

PUBLISHED = {
    1234567: [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
              16408922859458223821],
    0: [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, 0xF88BB8A8724C81EC, 0x1B39896A51A8749B],
}


def ref_mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def ref_splitmix64(seed: int, n: int) -> list[int]:
    out, s = [], seed
    for _ in range(n):
        s = (s + 0x9E3779B97F4A7C15) & MASK
        out.append(ref_mix(s))
    return out


def ref_key(seed: int, draw: int, slot: int) -> int:
    return ref_mix(ref_mix(ref_mix(seed ^ 0x243F6A8885A308D3) ^ draw) ^ slot)


@pytest.mark.parametrize("seed", sorted(PUBLISHED))
def test_reference_implementation_reproduces_the_published_vectors(seed):
    assert ref_splitmix64(seed, 5) == PUBLISHED[seed]


@pytest.mark.parametrize("seed", sorted(PUBLISHED))
def test_numba_word_is_splitmix64(seed):
    got = [int(_kernel.word(np.uint64(seed), np.uint64(c))) for c in range(5)]
    assert got == PUBLISHED[seed]


@pytest.mark.parametrize("seed", sorted(PUBLISHED))
def test_numpy_word_is_splitmix64(seed):
    got = rng.word_np(np.uint64(seed), np.arange(5, dtype=np.uint64))
    assert got.dtype == np.uint64
    assert [int(w) for w in got] == PUBLISHED[seed]


def test_mix64_is_the_splitmix64_finaliser():
    states = [(1234567 + i * 0x9E3779B97F4A7C15) & MASK for i in range(1, 6)]
    assert [int(_kernel.mix64(np.uint64(s))) for s in states] == PUBLISHED[1234567]
    assert [int(w) for w in rng.mix64_np(np.array(states, dtype=np.uint64))] == PUBLISHED[1234567]
    assert [int(_kernel.mix64(np.uint64(0)))] == [0]  # the finaliser fixes 0


def test_constants_are_the_published_ones():
    assert int(_kernel.GAMMA) == 0x9E3779B97F4A7C15
    assert int(_kernel._M1) == 0xBF58476D1CE4E5B9 and int(_kernel._M2) == 0x94D049BB133111EB
    assert (int(_kernel._S30), int(_kernel._S27), int(_kernel._S31)) == (30, 27, 31)


def test_key_and_word_match_the_reference_on_many_addresses():
    gen = np.random.default_rng(5)
    seeds = [0, 1, 20270101, 2**63 - 1, *map(int, gen.integers(0, 2**63, 5))]
    for seed in seeds:
        for draw, slot in [(0, 0), (1, 0), (0, 1), (99_999, 12_345), (3, int(rng.MACRO_SLOT))]:
            want_key = ref_key(seed, draw, slot)
            k_nb = int(_kernel.key(np.uint64(seed), np.uint64(draw), np.uint64(slot)))
            k_np = int(rng.key_np(seed, draw, slot))
            assert k_nb == k_np == want_key
            counters = [0, 1, 15, 16, 16 * 11 + 2]
            want = [ref_mix((want_key + (c + 1) * 0x9E3779B97F4A7C15) & MASK) for c in counters]
            assert [int(_kernel.word(np.uint64(want_key), np.uint64(c))) for c in counters] == want
            assert [int(w) for w in rng.word_np(np.uint64(want_key), np.array(counters, np.uint64))] == want


def test_uniforms_split_a_word_into_its_two_halves():
    w = PUBLISHED[1234567][0]
    hi, lo = w >> 32, w & 0xFFFFFFFF
    u1, u2 = _kernel.uniforms(np.uint64(w))
    assert (u1, u2) == ((hi + 1) / 2**32, lo / 2**32)
    v1, v2 = rng.uniforms_np(np.array([w], dtype=np.uint64))
    assert (v1[0], v2[0]) == (u1, u2)
    # extremes: u1 in (0, 1], u2 in [0, 1)
    assert _kernel.uniforms(np.uint64(0)) == (2.0**-32, 0.0)
    assert _kernel.uniforms(np.uint64(MASK)) == (1.0, 1.0 - 2.0**-32)
