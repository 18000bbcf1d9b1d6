"""Requests per second of ``teach`` against ``serve``, beside a plain async load loop.

Is the teacher client the bottleneck? A micro post-thinking student is served by ``reasondistill
serve`` in its own process, and every request asks for the answer only (``answer_only`` via
``--extra-body``) with a small token budget, so the server answers in milliseconds and the client
side is what gets measured. For each concurrency (1, 4, 16), ``teach`` collects rationales with a
fresh call store (two-stage prompting, every call committed to SQLite, the openai client with our
retry loop); then a plain loop (raw httpx, ``concurrency`` workers, nothing stored) replays exactly
the requests ``teach`` made. The plain loop's rate is the server's capacity; the ratio says how much
of it ``teach`` uses. Server and clients are pinned to different cores (as with a real remote
teacher, the client's CPU is not taken out of the server's), the server runs one torch thread. The machine is shared and busy, so each round runs the two sides back to back
(alternating which goes first) and the reported ratio is the median of the rounds' paired ratios;
the client's CPU time per request, steadier than rates on a busy machine, is reported too.

    python bench/teacher_throughput.py            # about 2 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import httpx

from reasondistill.api import train
from reasondistill.io import atomic_write_json
from reasondistill.teachers import teach
from reasondistill.teachers.store import CallStore

RESULTS = Path(__file__).parent / "results" / "teacher_throughput.json"
EXTRA = {"answer_only": True}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, port: int, cpus: set[int] | None) -> subprocess.Popen:
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.Popen([sys.executable, "-m", "reasondistill", "serve", str(run_dir), "--port", str(port),
                             "--name", "student", "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("serve did not start")


async def plain_loop(url: str, requests: list[dict], concurrency: int) -> float:
    """Requests per second of a minimal client: ``concurrency`` workers posting the bodies."""
    todo = iter(requests)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        async def worker():
            for body in todo:
                r = await http.post("/chat/completions", json=body)
                r.raise_for_status()
                r.json()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(requests) / (time.perf_counter() - t0)


def run_teach(url: str, work: Path, n: int, concurrency: int, max_tokens: int, tag: str) -> tuple[float, list[dict]]:
    out = work / f"teach-{tag}.jsonl"
    t0 = time.perf_counter()
    s = teach("synthetic/coin_flip", "openai:student", out, n=n, base_url=url, concurrency=concurrency,
              max_tokens=max_tokens, extra_body=EXTRA, keep="all", progress=False)
    seconds = time.perf_counter() - t0
    # A fresh store per run; a synthetic set can repeat a question, whose calls the store then
    # answers: the rate counts only the requests that reached the server.
    if s["calls"]["retries"]:
        print(f"  ({s['calls']['retries']} retries: {s['calls']['failures']})", flush=True)
    with CallStore(s["store"]) as store:
        bodies = [{"model": "student", "messages": [{"role": "user", "content": r["prompt"]}],
                   "max_tokens": r["max_tokens"], "temperature": r["temperature"],
                   **({"stop": r["stop"]} if r["stop"] else {}), **EXTRA} for r in store.requests()]
    return s["calls"]["new"] / seconds, bodies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--questions", type=int, default=None,
                    help="questions per run, two calls each (default 60, 100, 250 for concurrency 1, 4, 16: "
                         "enough that start-up and the last in-flight requests do not dominate a run)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-pin", action="store_true", help="do not pin server and client to separate cores")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_dir = work / "student"
        train("post_thinking", "synthetic/coin_flip", run_dir, student="micro", n=48, vocab_size=320, progress=False,
              training={"max_steps": 30, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 0})
        # Server and client on different cores: a real teacher server runs elsewhere, so the client's
        # CPU should not be taken out of the server's capacity (both clients get the same core).
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        server_cpus, client_cpus = ({cores[0]}, set(cores[1:])) if len(cores) >= 2 and not args.no_pin else (None, None)
        port = free_port()
        server = start_server(run_dir, port, server_cpus)
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            run_teach(url, work, 16, 16, args.max_tokens, "warmup")
            rows = []
            for c in args.concurrency:
                n = args.questions or {1: 60, 4: 100}.get(c, 250)
                teach_rates, plain_rates, teach_cpu, plain_cpu = [], [], [], []
                for r in range(args.rounds):
                    order = ("teach", "plain") if r % 2 == 0 else ("plain", "teach")
                    for side in order:
                        cpu = time.process_time()
                        if side == "teach":
                            rate, bodies = run_teach(url, work, n, c, args.max_tokens, f"c{c}-r{r}")
                            teach_rates.append(rate)
                            teach_cpu.append(1000 * (time.process_time() - cpu) / len(bodies))
                        else:  # the first round's plain loop replays the teach run just before it
                            plain_rates.append(asyncio.run(plain_loop(url, bodies, c)))
                            plain_cpu.append(1000 * (time.process_time() - cpu) / len(bodies))
                ratios = [t / p for t, p in zip(teach_rates, plain_rates)]
                row = {"concurrency": c, "questions": n, "requests": len(bodies),
                       "teach_rps": round(median(teach_rates), 1), "plain_rps": round(median(plain_rates), 1),
                       "ratio": round(median(ratios), 3),
                       "client_cpu_ms_per_request": {"teach": round(median(teach_cpu), 2),
                                                     "plain": round(median(plain_cpu), 2)},
                       "rounds": {"teach_rps": [round(x, 1) for x in teach_rates],
                                  "plain_rps": [round(x, 1) for x in plain_rates],
                                  "ratio": [round(x, 3) for x in ratios]}}
                rows.append(row)
                print(f"concurrency {c:>2}: teach {row['teach_rps']:7.1f} req/s   plain loop {row['plain_rps']:7.1f} "
                      f"req/s   ratio {row['ratio']:.2f}   client CPU ms/request: teach "
                      f"{row['client_cpu_ms_per_request']['teach']:.2f}, plain "
                      f"{row['client_cpu_ms_per_request']['plain']:.2f}", flush=True)
            stats = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()
        finally:
            server.terminate()
            server.wait(10)

    result = {
        "benchmark": "teacher_throughput",
        "server": "reasondistill serve, micro post_thinking student (30 steps on synthetic/coin_flip), "
                  f"answer_only requests, max_tokens {args.max_tokens}, in its own process, 1 torch thread",
        "client": "teach: openai client, two-stage zero-shot CoT, SQLite call store; plain: raw httpx replay "
                  "of the same requests",
        "rounds": args.rounds, "rows": rows, "server_stats": stats,
        "cpu_pinning": {"server": sorted(server_cpus), "client": sorted(client_cpus)} if server_cpus else None,
        "goal": "ratio >= 0.9 at concurrency 16",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    from _common import run_main
    run_main(main, __file__)
