"""The flat-map reader's RING-to-NESTED block conversion gives astropy-healpix's numbers."""

from __future__ import annotations

import astropy_healpix as ah
import numpy as np
import pytest

from followup.skymap.flat import nested_block_to_ring


@pytest.mark.parametrize("nside", [1, 2, 8, 64, 256, 2048])
def test_every_block_matches_astropy_healpix(nside: int) -> None:
    order = int(ah.nside_to_level(nside))
    block_order = min(order, 10)
    block = 4**block_order
    starts = range(0, 12 * nside * nside, block)
    if nside == 2048:  # 48 blocks of a million: a face of each row, and a cap and equator block
        starts = [b * block for b in (0, 3, 5, 17, 22, 31, 40, 47)]
    for lo in starts:
        expected = ah.core.nested_to_ring(np.arange(lo, lo + block, dtype=np.int64), nside)
        np.testing.assert_array_equal(nested_block_to_ring(lo, block_order, nside), expected)


def test_smaller_blocks_of_a_large_map_match_too() -> None:
    nside, block_order = 1024, 4
    rng = np.random.default_rng(0)
    for lo in rng.integers(0, 12 * nside * nside // 4**block_order, 200) * 4**block_order:
        expected = ah.core.nested_to_ring(np.arange(lo, lo + 256, dtype=np.int64), nside)
        np.testing.assert_array_equal(nested_block_to_ring(int(lo), block_order, nside), expected)
