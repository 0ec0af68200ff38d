"""Peak memory belongs to the block it measured, not to whatever ran before it in the process."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from recbole_trsr.memory import PeakMemory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-block peaks need /proc/self/clear_refs")
def test_each_block_reports_its_own_peak():
    with PeakMemory() as big:
        block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
        del block
    with PeakMemory() as small:
        block = np.ones(2**20 // 8)
        del block
    assert big.per_block and small.per_block
    assert big.rss_mb > small.rss_mb + 250
