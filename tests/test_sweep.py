"""The performance tests: one test per case of the matrix, each asserting the case's SLOs.

``result.check()`` fails the test when an SLO is broken (the message lists each broken
threshold with its measured value and limit) and errors, shown as *broken* in Allure,
when the measurement cannot be trusted or the engine broke.
"""

import pytest


@pytest.mark.sweep
@pytest.mark.matrix("default.yaml")
def test_sweep(case, measure):
    result = measure(case)
    result.check()


@pytest.mark.smoke
@pytest.mark.matrix("smoke.yaml")
def test_smoke(case, measure):
    result = measure(case)
    result.check()
