"""The base-year latent's inversion: the guide-table search finds the bisection's bracket, so the same bits."""

from __future__ import annotations

import numpy as np
import pytest

from leadsim.model._kernel import cdf_guide, inverse_cdf
from leadsim.testing.reference import inverse_cdf_np


def _bisection(nodes: np.ndarray, c: np.ndarray, u: float) -> float:
    """The search the kernel used before the guide table (plain Python, for comparison)."""
    n = nodes.size
    if u <= c[0]:
        return nodes[0]
    if u >= c[n - 1]:
        return nodes[n - 1]
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if c[mid] < u:
            lo = mid
        else:
            hi = mid
    return nodes[lo] + (u - c[lo]) / (c[hi] - c[lo]) * (nodes[hi] - nodes[lo])


def test_hand_worked_guide_and_inverse():
    nodes = np.array([0.0, 1.0, 2.0, 3.0])
    cdf = np.array([[0.0, 0.25, 0.5, 1.0]])
    guide = cdf_guide(cdf)
    # last node with cdf < c/4 for c = 0..4 (0 when none)
    np.testing.assert_array_equal(guide, [[0, 0, 1, 2, 2]])
    assert inverse_cdf(nodes, cdf, guide, 0, 0.6) == 2.0 + (0.6 - 0.5) / 0.5 * 1.0  # 2.2
    assert inverse_cdf(nodes, cdf, guide, 0, 0.25) == 1.0  # exactly at a node: bracket (0.0, 0.25]
    assert inverse_cdf(nodes, cdf, guide, 0, 1.0) == 3.0


@pytest.mark.parametrize("n_nodes", [4, 17, 546])
def test_guided_search_equals_bisection_bitwise(n_nodes):
    rng = np.random.default_rng(n_nodes)
    nodes = np.linspace(-8.5, 8.5, n_nodes)
    # three cdfs: a smooth one, one with flat runs (ties) inside and at both ends, one with a jump
    smooth = 1.0 / (1.0 + np.exp(-1.7 * nodes))
    steps = np.repeat(np.sort(rng.uniform(size=(n_nodes + 3) // 4)), 4)[:n_nodes]
    jump = np.where(nodes < 0.0, 1e-3 * (nodes + 8.5) / 8.5, 0.999 + 1e-3 * nodes / 8.5)
    cdf = np.stack([smooth, steps, jump])
    cdf[:, 0], cdf[:, -1] = 0.0, 1.0
    for c in cdf:
        assert np.all(np.diff(c) >= 0.0)
    guide = cdf_guide(cdf)
    for p in range(3):
        c = cdf[p]
        # uniforms, every cdf value exactly, its neighbours either side, and the guide cells' edges
        u = np.concatenate([rng.uniform(size=2000), c, np.nextafter(c, 0.0), np.nextafter(c, 2.0),
                            np.arange(n_nodes + 1) / n_nodes])
        u = u[(u > 0.0) & (u <= 1.0)]
        got = np.array([inverse_cdf(nodes, cdf, guide, p, x) for x in u])
        want = np.array([_bisection(nodes, c, x) for x in u])
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, inverse_cdf_np(nodes, cdf, np.full(u.size, p), u))
