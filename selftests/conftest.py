"""Shared helpers for slogate's selftests."""

from __future__ import annotations

import os
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


def real_engine_python(variable: str, install: str) -> str:
    """The interpreter of a real engine's venv, from ``variable``.

    CI installs the engines and must run these tests, so there a missing variable is a
    failure; elsewhere the test is skipped with the command that installs the engine.
    """
    python = os.environ.get(variable)
    if not python:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-engine tests: {variable} is not set")
        pytest.skip(f"set {variable} to a python with {install}")
    return python
