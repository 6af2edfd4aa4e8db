"""Tests for tileunet.inference.uncertainty: entropy of the foreground probability and
the squares to annotate next."""

from __future__ import annotations

import numpy as np
import pytest

from tileunet.inference.uncertainty import entropy, rank_tiles


def test_entropy_is_one_bit_where_the_network_cannot_tell_and_symmetric():
    p = np.array([[0.0, 0.1, 0.5], [0.9, 1.0, 0.25]])
    h = entropy(p)
    assert h.dtype == np.float32 and h.shape == p.shape
    assert h[0, 2] == pytest.approx(1.0) and h[0, 0] == pytest.approx(0.0, abs=1e-5)
    assert h[0, 1] == pytest.approx(h[1, 0]) == pytest.approx(0.469, abs=1e-3)
    assert h[1, 2] == pytest.approx(-(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75)))


def test_the_most_uncertain_squares_come_first_with_the_offset_added():
    u = np.zeros((50, 70), np.float32)
    u[0:10, 60:70] = 0.8  # an edge square, 10 px wide
    u[20:40, 20:40] = 0.5
    ranked = rank_tiles(u, tile=20, count=3, offset=(100, 200))
    assert [box for _, box in ranked] == [(120, 140, 220, 240), (100, 120, 260, 270),
                                          (100, 120, 200, 220)]
    assert ranked[0][0] == pytest.approx(0.5)
    assert ranked[1][0] == pytest.approx(0.8 * 10 * 10 / (20 * 10))  # a mean over 20x10
    assert len(rank_tiles(u, tile=100, count=5)) == 1


@pytest.mark.parametrize("kwargs, message", [({"tile": 0}, ">= 1"), ({"count": 0}, ">= 1")])
def test_bad_ranking_requests_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rank_tiles(np.zeros((4, 4)), **kwargs)
    with pytest.raises(ValueError, match="2-D"):
        rank_tiles(np.zeros(4))
