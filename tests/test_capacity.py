"""Capacity under SLO: for each length pair of the matrix's ``capacity:`` block, the highest
concurrency (or request rate) at which every SLO still holds, with the search history.
"""

import pytest


@pytest.mark.capacity
@pytest.mark.matrix("capacity.yaml")
def test_capacity(capacity_target, search_capacity):
    outcome = search_capacity(capacity_target)
    outcome.check()
