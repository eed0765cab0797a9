"""Command line of the simulator: ``python -m slogate.sim``.

    python -m slogate.sim [--host 127.0.0.1] [--port 8000 | --fd FD] [--profile default]
                          [--time-scale 1.0] [--model sim-model] [--max-num-seqs N] [--seed 0]
                          [--decode-slowdown X] [FAULTS]

``--fd`` serves on an already-listening socket inherited from the parent (bound to port 0
there and passed with ``pass_fds``), so there is no window in which another process can
take the port; the URL printed is then the socket's own address.

Faults, for the suite's reliability tests (pass them with ``--engine-args="..."``):

``--http-500 SEL`` / ``--http-429 SEL``
    answer that HTTP error (429 with ``Retry-After: 1``) instead of generating.
``--stall SEL``
    stream half the tokens, then send nothing and never finish (the connection stays
    open until the client gives up); a non-streaming request is never answered.
``--malformed-sse SEL``
    send an invalid chunk (truncated JSON) after the first token, then the rest.
``--short-output SEL``
    finish after half the requested tokens (``finish_reason: stop``), even with
    ``ignore_eos``.
``--crash-after N``
    when generation request N+1 arrives, print one line to stderr and SIGKILL itself:
    every open stream is cut, as when an engine dies mid-sweep.
``--slow-start S``
    ``/health`` (and generation) answer 503 for S real seconds before the server is ready.
``--crash-on-start {oom,nccl}``
    print the error a real engine prints (``torch.OutOfMemoryError: CUDA out of memory``
    or an NCCL error) to stderr and exit 1 instead of becoming ready (after
    ``--slow-start`` if given, as an engine that fails while loading).

SEL is ``N`` (every Nth generation request, counted from 1 in arrival order, warm-up
requests included) or a fraction in (0, 1) drawn from a generator seeded with
``--fault-seed``: both are deterministic.  See ``slogate/sim/faults.py``.

With ``SLOGATE_SIM_API_KEY`` set in its environment, ``/v1/*`` answers 401 unless the
request carries ``Authorization: Bearer <that key>`` (as vLLM with ``VLLM_API_KEY``); the
key is read from the environment only, so it never shows in a process list.

Once ready it prints one line to stdout,
``slogate-sim ready: profile=<p> time_scale=<x> url=http://host:port`` (preceded by a
``slogate-sim: injecting faults: ...`` line when faults are on), and it exits promptly on
SIGTERM or SIGINT.  Bad arguments give a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import NoReturn

from aiohttp import web

from slogate.sim.engine import Engine
from slogate.sim.faults import FAULT_ORDER, START_CRASHES, Faults, Selector
from slogate.sim.profiles import PROFILES, Profile
from slogate.sim.server import API_KEY_ENV, SimServer

# Listen backlog as uvicorn's (vLLM's server): a wave of 1024 connects must not overflow
# it, or some clients wait out SYN retransmits and their TTFT grows by seconds.
BACKLOG = 2048


class _Parser(argparse.ArgumentParser):
    # One line, no usage block: the launcher shows the log tail, which should say it all.
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value

    return parse


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _add_fault_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "fault injection",
        "SEL is N (every Nth generation request, counted from 1, warm-up included) or a "
        "fraction in (0, 1) drawn with --fault-seed; both are deterministic",
    )
    for name, help_text in FAULT_ORDER:
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=f"fault_{name}",
            type=Selector.parse,
            default=None,
            metavar="SEL",
            help=help_text,
        )
    group.add_argument(
        "--crash-after",
        type=_int_in(0, 1 << 30),
        default=None,
        metavar="N",
        help="SIGKILL itself when generation request N+1 arrives (an engine dying mid-sweep)",
    )
    group.add_argument(
        "--slow-start",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="answer 503 on /health for S real seconds before becoming ready",
    )
    group.add_argument(
        "--crash-on-start",
        choices=sorted(START_CRASHES),
        default=None,
        help="print a real engine's start-up error (CUDA OOM, NCCL) and exit 1 "
        "(after --slow-start, if given)",
    )
    group.add_argument(
        "--fault-seed", type=int, default=0, metavar="N", help="seed of the fractional selectors"
    )


def faults_from_args(args: argparse.Namespace) -> Faults:
    selectors = {
        name: getattr(args, f"fault_{name}")
        for name, _ in FAULT_ORDER
        if getattr(args, f"fault_{name}") is not None
    }
    return Faults(
        selectors=selectors,
        crash_after=args.crash_after,
        slow_start_s=args.slow_start,
        crash_on_start=args.crash_on_start,
        seed=args.fault_seed,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = sorted(PROFILES)
    parser = _Parser(
        prog="python -m slogate.sim",
        description="OpenAI-compatible simulator of a continuous-batching LLM engine.",
        epilog=f"environment: {API_KEY_ENV}=KEY makes /v1/* require 'Authorization: Bearer "
        "KEY' (401 otherwise), as vLLM's VLLM_API_KEY",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=_int_in(0, 65535), default=8000, help="port (ignored with --fd)"
    )
    parser.add_argument(
        "--fd",
        type=_int_in(0, 1 << 20),
        default=None,
        help="serve on this inherited, listening socket",
    )
    parser.add_argument(
        "--profile",
        default="default",
        choices=names,
        metavar="PROFILE",
        help=f"timing profile, one of: {', '.join(names)}",
    )
    parser.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        help="run this many times faster than the profile's real time",
    )
    parser.add_argument("--model", default="sim-model", help="served model name")
    parser.add_argument(
        "--max-num-seqs",
        type=_int_in(1, 1 << 20),
        default=None,
        help="override the profile's running-sequence limit",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the end-of-sequence draws")
    parser.add_argument(
        "--decode-slowdown",
        type=_positive_float,
        default=1.0,
        help="multiply every decode step's time (1.15 = a 15%% slower decode), to check "
        "that a gate notices",
    )
    _add_fault_options(parser)
    args = parser.parse_args(argv)
    if not args.model.strip():
        parser.error("--model must not be empty")
    if args.fd is not None:
        try:
            args.sock = socket.socket(fileno=args.fd)
        except OSError as e:
            parser.error(f"--fd {args.fd} is not a usable socket: {e}")
    else:
        args.sock = None
    return args


async def serve(args: argparse.Namespace, profile: Profile, faults: Faults) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status (1: an injected start crash)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    engine = Engine(profile, time_scale=args.time_scale, seed=args.seed)
    server = SimServer(
        engine,
        model=args.model,
        profile=profile,
        faults=faults,
        api_key=os.environ.get(API_KEY_ENV) or None,
    )
    # handler_cancellation: a client that disconnects cancels its handler, which frees
    # the request's slot; access_log=None: logging every request costs CPU at 1k streams.
    runner = web.AppRunner(
        server.app(), handler_cancellation=True, access_log=None, shutdown_timeout=2.0
    )
    await runner.setup()
    server.ready = False  # until the (possibly slow) start is over
    try:
        if args.sock is not None:
            site: web.BaseSite = web.SockSite(runner, args.sock, backlog=BACKLOG)
        else:
            site = web.TCPSite(runner, args.host, args.port, backlog=BACKLOG)
        await site.start()
        if faults.slow_start_s or faults.crash_on_start or faults.active:
            print(f"slogate-sim: injecting faults: {faults.describe()}", flush=True)
        if faults.slow_start_s:
            # Listening but not ready, as an engine loading its weights: /health says 503.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), faults.slow_start_s)
            if stop.is_set():
                return 0
        if faults.crash_on_start:
            print(START_CRASHES[faults.crash_on_start], file=sys.stderr, flush=True)
            return 1
        server.ready = True
        engine.start()
        if args.sock is not None:
            host, port = args.sock.getsockname()[:2]
        else:
            host, port = runner.addresses[0][:2]
        if ":" in host:
            host = f"[{host}]"
        print(
            f"slogate-sim ready: profile={profile.name} time_scale={args.time_scale:g} "
            f"url=http://{host}:{port}",
            flush=True,
        )
        await stop.wait()
    finally:
        # Release waiting handlers first so the runner does not wait out its timeout.
        server.close()
        await engine.close()
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profile = PROFILES[args.profile]
    if args.max_num_seqs is not None:
        profile = dataclasses.replace(profile, max_num_seqs=args.max_num_seqs)
    if args.decode_slowdown != 1.0:
        k = args.decode_slowdown
        profile = dataclasses.replace(
            profile,
            decode_ms=tuple((b, ms * k) for b, ms in profile.decode_ms),
            decode_ms_per_context_token=profile.decode_ms_per_context_token * k,
        )
    try:
        return asyncio.run(serve(args, profile, faults_from_args(args)))
    except OSError as e:
        # Typically "[Errno 98] address already in use": say it in one line.
        print(f"slogate-sim: error: cannot serve: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
