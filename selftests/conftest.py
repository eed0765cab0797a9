"""Shared helpers for slogate's selftests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A copy of the user-facing suite (conftest, pytest.ini, tests, matrices) in a temp dir.

    Sessions run in a subprocess with slogate importable from the checkout.
    """
    for name in ("conftest.py", "pytest.ini"):
        shutil.copy(ROOT / name, pytester.path / name)
    for name in ("tests", "matrices", "fixtures"):
        shutil.copytree(
            ROOT / name, pytester.path / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return pytester
