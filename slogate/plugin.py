"""slogate's pytest plugin: options, hooks and registration; declarations only.

The work lives in modules named for their domain: settings in ``config``, the run in
``session``, the engine in ``engines``, the load in ``loadgen``.
"""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path
from typing import Any

import pytest

from slogate.config import ENGINES, Settings, ensure_reports_dir, variants_from_options
from slogate.engines import command_line as engine_command_line
from slogate.engines import validate as validate_engine
from slogate.errors import ConfigError
from slogate.session import SlogateSession

SESSION_KEY = pytest.StashKey[SlogateSession]()
SETTINGS_KEY = pytest.StashKey[Settings]()
VARIANTS_KEY = pytest.StashKey[list[Settings]]()
GPU_ENGINES = {"vllm", "sglang", "llamacpp", "ollama"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("slogate", "slogate: LLM serving performance")
    add = group.addoption
    add(
        "--engine",
        dest="slogate_engine",
        default=None,
        metavar="NAME",
        help=f"engine to start: {', '.join(ENGINES)} (default: the profile's engine, "
        "else sim, the built-in simulator)",
    )
    add(
        "--engine-profile",
        dest="slogate_engine_profile",
        default=None,
        metavar="FILE",
        help="engine profile (YAML): server arguments, environment, launcher, image; "
        "see matrices/engines/",
    )
    add(
        "--launcher",
        dest="slogate_launcher",
        default=None,
        metavar="{local,docker}",
        help="start the engine as a local process or a Docker container (default: profile's)",
    )
    add(
        "--image",
        dest="slogate_image",
        default=None,
        metavar="IMAGE",
        help="Docker image for --launcher docker",
    )
    add(
        "--engine-python",
        dest="slogate_engine_python",
        default=None,
        metavar="PATH",
        help="interpreter that runs a local engine (engines usually live in their own venv)",
    )
    add(
        "--show-engine-command",
        dest="slogate_show_engine_command",
        action="store_true",
        help="print the exact engine command (the whole docker run line with --launcher "
        "docker) and exit without starting anything",
    )
    add(
        "--model",
        dest="slogate_model",
        default=None,
        metavar="PATH_OR_NAME",
        help="model path or name passed to the engine; its tokenizer.json makes prompts exact",
    )
    add(
        "--tokenizer",
        dest="slogate_tokenizer",
        default=None,
        metavar="PATH",
        help="tokenizer.json or a directory holding one (default: the model directory)",
    )
    add(
        "--engine-args",
        dest="slogate_engine_args",
        default="",
        metavar='"ARGS"',
        help="extra arguments appended to the engine command",
    )
    add(
        "--base-url",
        dest="slogate_base_url",
        default=None,
        metavar="URL",
        help="with --engine external: an endpoint already running, e.g. http://127.0.0.1:8000",
    )
    add(
        "--api-key",
        dest="slogate_api_key",
        default=None,
        metavar="KEY",
        help="bearer key for the engine (or SLOGATE_API_KEY); never written to any report",
    )
    add(
        "--matrix",
        dest="slogate_matrix",
        default=None,
        metavar="FILE",
        help="sweep definition (default: matrices/default.yaml for -m sweep, "
        "matrices/smoke.yaml for -m smoke)",
    )
    add(
        "--slo",
        dest="slogate_slo",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a threshold for every case, e.g. --slo p99_ttft_ms=2000 (repeatable)",
    )
    add(
        "--reports-dir",
        dest="slogate_reports_dir",
        default="reports",
        metavar="DIR",
        help="where results are written (default: reports/)",
    )
    add(
        "--baseline",
        dest="slogate_baseline",
        default=None,
        metavar="DIR",
        help="an earlier run's reports directory: fail the cases whose TTFT or TPOT got "
        "worse than there beyond run-to-run noise",
    )
    add(
        "--concurrency",
        dest="slogate_concurrency",
        default=None,
        metavar="1,64,256",
        help="run these concurrency levels instead of the matrix's",
    )
    add(
        "--request-rate",
        dest="slogate_request_rate",
        default=None,
        metavar="1,2.5",
        help="open loop: run these request rates (req/s, Poisson) instead of the matrix's load",
    )
    add(
        "--lengths",
        dest="slogate_lengths",
        default=None,
        metavar="128x128,256x256",
        help="run these INPUTxOUTPUT length pairs instead of the matrix's",
    )
    add(
        "--num-prompts",
        dest="slogate_num_prompts",
        default=None,
        metavar="N",
        help="measured requests per case instead of the matrix's",
    )
    add(
        "--gpus-per-worker",
        dest="slogate_gpus_per_worker",
        default=None,
        metavar="G",
        help="with pytest-xdist -n K: worker i owns GPUs i*G .. i*G+G-1 (CUDA_VISIBLE_DEVICES "
        "or docker --gpus) and its own ports",
    )
    add(
        "--repeat",
        dest="slogate_repeat",
        default=None,
        metavar="N",
        help="run each case N times; verdicts use all N runs, reports show their spread",
    )
    add(
        "--max-client-lag-ms",
        dest="slogate_max_client_lag_ms",
        default=None,
        metavar="MS",
        help="event-loop lag (p99) above which a case is invalid (default 10, or 10%% of the "
        "median TTFT if more); raise it only when the engine must share the client's CPU",
    )
    add(
        "--sim-profile",
        dest="slogate_sim_profile",
        default="default",
        metavar="NAME",
        help="simulator profile: default, h20-deepseek-r1-vllm, h20-deepseek-r1-sglang",
    )
    add(
        "--sim-time-scale",
        dest="slogate_sim_time_scale",
        default="1",
        metavar="X",
        help="run the simulator X times faster than real time (reports state the scale)",
    )
    add(
        "--startup-timeout",
        dest="slogate_startup_timeout",
        default=600.0,
        type=float,
        metavar="S",
        help="seconds an engine may take to become ready (default 600)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Validate options before anything runs: bad input is a usage error, not a traceback."""
    try:
        variants = variants_from_options(config.option, Path(config.rootpath))
        for settings in variants:
            validate_settings(settings)
        if variants[0].show_engine_command:
            for settings in variants:
                prefix = f"# {settings.label}\n" if settings.label else ""
                print(prefix + engine_command_line(settings))
            return 0
        settings = variants[0]
        if len(variants) > 1:  # the run's own reports (the comparison) sit above each label's
            settings = dataclasses.replace(
                settings, label="", reports_dir=settings.reports_dir.parent
            )
        _check_parallel(config, variants)
        ensure_reports_dir(settings.reports_dir)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[VARIANTS_KEY] = variants
    config.stash[SETTINGS_KEY] = settings
    if getattr(config.option, "allure_report_dir", None) is None:
        config.option.allure_report_dir = str(settings.reports_dir / "allure-results")
        config.option.clean_alluredir = True


def validate_settings(settings: Settings) -> None:
    """Everything about one engine configuration that can be checked before the run."""
    if settings.engine == "sim":
        from slogate.sim.profiles import PROFILES

        if settings.sim_profile not in PROFILES:
            raise ConfigError(
                f"--sim-profile {settings.sim_profile!r}: unknown; "
                f"choose one of {', '.join(PROFILES)}"
            )
    if settings.matrix is not None:
        SlogateSession(settings).matrix(settings.matrix)  # validate early
    validate_engine(settings)
    if settings.baseline is not None:
        from slogate.report.baseline import validate_baseline_dir

        validate_baseline_dir(settings.baseline, settings.reports_dir)


def _check_parallel(config: pytest.Config, variants: list[Settings]) -> None:
    """-n: engines on GPUs need --gpus-per-worker; each configuration stays on one worker."""
    workers = getattr(config.option, "numprocesses", None)
    if not workers:
        return
    gpu_engines = sorted({v.engine for v in variants} & GPU_ENGINES)
    if gpu_engines and variants[0].gpus_per_worker is None:
        raise ConfigError(
            f"-n {workers} would run {', '.join(gpu_engines)} in parallel on the same GPUs, "
            f"and each engine's load would distort the other's numbers; give each worker its "
            f"own GPUs with --gpus-per-worker G, or drop -n"
        )
    if getattr(config.option, "dist", "no") in ("no", "load"):
        # Cases of one engine configuration go to one worker, so each engine starts once.
        config.option.dist = "loadgroup"


def pytest_configure(config: pytest.Config) -> None:
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None and getattr(config, "workerinput", None) is not None:
        try:  # an xdist worker that did not run pytest_cmdline_main
            variants = variants_from_options(config.option, Path(config.rootpath))
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
        config.stash[VARIANTS_KEY] = variants
        settings = variants[0]
        if len(variants) > 1:
            settings = dataclasses.replace(
                settings, label="", reports_dir=settings.reports_dir.parent
            )
    if settings is None:
        return
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        # pytest-xdist worker: the controller cleaned the reports; this worker only adds.
        config.option.clean_alluredir = False
        # Workers re-parse the command line, so they never saw --dist loadgroup being
        # chosen for them: group the cases by engine configuration here.
        config.option.loadgroup = True
        settings = dataclasses.replace(settings, worker=_worker_index(worker))
    session = SlogateSession(settings, config.stash[VARIANTS_KEY])
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "slogate-session")
    config.add_cleanup(lambda: config.pluginmanager.unregister(session))
    _install_sigterm_handler(config)


def _install_sigterm_handler(config: pytest.Config) -> None:
    """SIGTERM ends the run like Ctrl-C, so fixtures tear the engine down."""

    def on_sigterm(signum: int, frame: Any) -> None:
        # Go through SIGINT's handler: while a load runs, asyncio's runner owns it and
        # cancels the load cleanly before raising KeyboardInterrupt from plain Python.
        # Raising here instead would unwind through uvloop's C frames, whose traceback
        # pytest cannot render (an INTERNALERROR instead of "interrupted").
        handler = signal.getsignal(signal.SIGINT)
        if handler in (signal.SIG_IGN, signal.SIG_DFL, None):
            raise KeyboardInterrupt("SIGTERM")
        signal.raise_signal(signal.SIGINT)

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (e.g. embedded runs)
        return
    config.add_cleanup(lambda: signal.signal(signal.SIGTERM, previous))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``case`` (or ``capacity_target``) from the matrix: ``--matrix``, else the
    test's ``matrix`` marker."""
    wanted = [n for n in ("case", "capacity_target") if n in metafunc.fixturenames]
    if not wanted:
        return
    session = metafunc.config.stash[SESSION_KEY]
    path = session.settings.matrix
    if path is None:
        marker = metafunc.definition.get_closest_marker("matrix")
        name = marker.args[0] if marker and marker.args else "default.yaml"
        path = session.settings.rootdir / "matrices" / name
    try:
        matrix = session.matrix(path)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    variants = session.variants
    if len(variants) > 1 and "engine" in metafunc.fixturenames:
        labels = [v.label for v in variants]
        metafunc.parametrize("engine", labels, indirect=True, scope="session", ids=labels)
    if "case" in wanted:
        cases = matrix.cases
        metafunc.parametrize("case", cases, ids=[c.id for c in cases], scope="function")
    else:
        targets = matrix.capacity
        metafunc.parametrize("capacity_target", targets, ids=[t.id for t in targets])


def _worker_index(workerinput: dict[str, Any]) -> int:
    wid = str(workerinput.get("workerid", "gw0"))
    return int(wid[2:]) if wid[2:].isdigit() else 0


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each engine configuration's cases on one xdist worker (``--dist loadgroup``)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "engine" in callspec.params:
            item.add_marker(pytest.mark.xdist_group(str(callspec.params["engine"])))


def get_session(config: pytest.Config) -> SlogateSession:
    return config.stash[SESSION_KEY]
