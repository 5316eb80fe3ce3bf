"""Five flooding kernels cannot grow the server or starve a bystander (issue 9, item 1).

A real `lessonserver serve` with docker kernels, measured from outside; the
longer version with printed figures is `bench/flood.py` (`make bench`).
"""
from __future__ import annotations

import pytest

from bench.flood import flood, serve_for_flood

pytestmark = pytest.mark.docker


async def test_flooding_kernels_leave_the_server_small_and_others_served(tmp_path, instance_name):
    with serve_for_flood(tmp_path, instance_name) as served:
        result = await flood(served, seconds=12)
    assert result.growth_mb < 100, result
    assert len(result.first_outputs_ms) >= 5
    assert max(result.first_outputs_ms) < 1000, result
