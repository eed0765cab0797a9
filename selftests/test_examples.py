"""The CI recipes under examples/ are valid and do what the README says they do."""

from __future__ import annotations

from pathlib import Path

import yaml

from slogate.engines.profile import load_profile
from slogate.report.html import ALLURE_VERSION

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENGINES = Path(__file__).resolve().parents[1] / "matrices" / "engines"


def test_github_actions_recipe() -> None:
    wf = yaml.safe_load((EXAMPLES / "github-actions-gpu.yml").read_text())
    steps = wf["jobs"]["gate"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "pytest -m sweep" in runs and '--engine-profile="$ENGINE_PROFILE"' in runs
    assert "--baseline=baseline" in runs and "python -m slogate report" in runs
    assert f"allure-commandline@{ALLURE_VERSION}" in runs
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"
    cached = [s for s in steps if s.get("uses", "").startswith("actions/cache")]
    assert all("reports/allure-report/history" in s["with"]["path"] for s in cached)
    load_profile(ENGINES / wf["env"]["ENGINE_PROFILE"])  # the profile it names exists


def test_gitlab_recipe() -> None:
    ci = yaml.safe_load((EXAMPLES / "gitlab-ci-gpu.yml").read_text())
    job = ci["perf-gate"]
    script = "\n".join(job["script"])
    assert "pytest -m sweep" in script and "$BASELINE" in script
    assert job["artifacts"]["when"] == "always" and "reports/" in job["artifacts"]["paths"]
    assert "reports/allure-report/history/" in job["cache"]["paths"]
    assert f"allure-commandline@{ALLURE_VERSION}" in "\n".join(job["before_script"])
    load_profile(ENGINES / ci["variables"]["ENGINE_PROFILE"])
