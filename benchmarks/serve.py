"""What ``compt serve`` delivers: requests/s, rows/s and latency for single-task and mixed-task traffic, against
``compt predict``'s offline rows/s on the same rows (a script that prints figures, not a test).

    python benchmarks/serve.py                                  # tiny T5, 4 demo tasks, rank, 3 rounds
    python benchmarks/serve.py --rows-per-request 1,8 --concurrency 1,32 --rounds 5 --out serve.json
    python benchmarks/serve.py --run multirun/demo/... --mode generate
    python benchmarks/serve.py --backbone t5-small                 # a compute-bound backbone (35 M parameters)

Everything is bounded: each phase sends a fixed number of requests from N client threads on loopback
(127.0.0.1) and stops. Server (with its model's process) and ``compt predict`` run in processes of their own with one torch thread
(``OMP_NUM_THREADS=1``), as a user starts them; the clients are threads of this process using
:class:`compt.serving.ComptClient` (one kept-alive connection each).

Traffic, on the demo's evaluation rows of sst2, rte, mnli and stsb (32 each; 2, 2, 3 and 26 rank candidates):

- *single-task*: the same rows, one task after the other (each phase's requests all of one task), so that
  every batch holds one task;
- *mixed*: the rows interleaved (sst2, rte, mnli, stsb, sst2, ...), so that every batch mixes the tasks.

Both send the same rows the same number of times (a phase with one client, which measures latency, sends the
rows of the first ``--one-client-requests`` mixed requests, in both orders); ``mixed_over_single`` is the mixed traffic's time per row
over the single-task traffic's (target ≤ 1.10). ``served_over_offline`` is the served rows/s of the mixed traffic
over ``compt predict``'s rows/s on the same rows in the same order (one file, timed from its first output line to
its last: the model load left out; target ≥ 0.80 at concurrency 32). The machine may be shared: rounds are
interleaved (every measurement once per round, in a rotated order) and each figure is the median over rounds,
with ``[min, max]`` of the per-round values (ratios: of the per-round ratios).

CPU time per row is measured beside (``cpu_ms_per_row``, with psutil): the server's (its process, the event
loop, and its model's process) and the clients' over a phase, ``compt predict``'s over its timed rows. Where the machine is busy
with other work, rows/s follow the CPU share a process gets, and these say what each row costs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from compt.serving.process import ServerProcess

TASKS = ("sst2", "rte", "mnli", "stsb")
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def demo_rows(per_task: int) -> dict[str, list[dict]]:
    """``per_task`` demo evaluation rows of each task, with their ``task`` column (labels dropped)."""
    from compt.data import bundled_demo_dir
    from compt.data.sources import local_file
    from compt.tasks import get_task

    rows = {}
    for task in TASKS:
        spec = get_task(task)
        lines = local_file(bundled_demo_dir() / task, spec.eval_split).read_text().splitlines()[:per_task]
        rows[task] = [{"task": task, **{c: json.loads(x)[c] for c in spec.input_columns}} for x in lines]
    return rows


#: t5-small's architecture (random weights: the compute does not depend on them), with the tiny T5's vocabulary
T5_SMALL = dict(d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_decoder_layers=6, num_heads=8)


def fresh_bank(folder: Path, backbone: str) -> Path:
    """A fresh ssum bank of the four demo tasks (the compute does not depend on the weights) for ``backbone``:
    ``tiny`` (the bundled tiny T5, 0.2 M parameters: its time is mostly Python overhead) or ``t5-small`` (the
    bundled tiny T5 widened to t5-small's architecture, randomly initialised and saved in ``folder``: 35 M
    parameters, compute-bound)."""
    import shutil

    import torch

    from compt import PromptBank, PromptBankConfig
    from compt.models.backbone import TINY_MODEL_DIR

    name, width = "tiny", 64
    if backbone == "t5-small":
        from transformers import T5Config, T5ForConditionalGeneration

        name, width = str(folder / "t5-small"), T5_SMALL["d_model"]
        config = T5Config.from_pretrained(TINY_MODEL_DIR)
        for key, value in T5_SMALL.items():
            setattr(config, key, value)
        torch.manual_seed(0)
        T5ForConditionalGeneration(config).save_pretrained(name)
        for file in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
            shutil.copy(TINY_MODEL_DIR / file, Path(name) / file)
    config = PromptBankConfig(method="ssum", task_names=list(TASKS), d_model=width, backbone=name)
    return PromptBank(config, generator=torch.Generator().manual_seed(0)).save(folder / "bank")


# ---------------------------------------------------------------------------------------------- offline
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its live children (``compt serve``'s model process) so
    far (NaN without psutil)."""
    try:
        import psutil
    except ImportError:
        return float("nan")
    process = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in (process, *process.children(recursive=True)))


def offline_rows_per_s(run: Path, rows: list[dict], folder: Path, mode: str) -> tuple[float, float]:
    """``compt predict`` (a fresh process) over ``rows`` written to a file, to stdout: rows/s from its first
    output line to its last (what the model does once loaded; its first batch is left out), and its CPU ms
    per row over the same rows."""
    source = folder / "offline.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    argv = [sys.executable, "-m", "compt.cli", "predict", "--bank", str(run), "--input", str(source)]
    proc = subprocess.Popen(
        [*argv, "--mode", mode, "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV
    )
    assert proc.stdout is not None
    first_batch = 64  # compt predict's default --batch-size: the first line comes with the first batch
    stamps, cpu = [], []
    for _ in proc.stdout:
        stamps.append(time.perf_counter())
        if len(stamps) in (first_batch, len(rows)):
            cpu.append(cpu_seconds(proc.pid))
    if proc.wait() != 0 or len(stamps) != len(rows):
        raise SystemExit(
            f"compt predict failed (status {proc.returncode}, {len(stamps)} of {len(rows)} rows)"
        )
    timed = len(rows) - first_batch
    return timed / (stamps[-1] - stamps[first_batch - 1]), (cpu[-1] - cpu[0]) / timed * 1e3


# ---------------------------------------------------------------------------------------------- served
class Served(ServerProcess):
    """``compt serve`` in its own process on a free port of 127.0.0.1."""

    def __init__(self, run: Path, mode: str, log: Path, max_batch_size: int, max_wait_ms: float) -> None:
        options = ["--mode", mode, "--max-batch-size", str(max_batch_size), "--max-wait-ms", str(max_wait_ms)]
        super().__init__(run, "--device", "cpu", *options, log=log, env=ENV, timeout=120)

    def phase(self, requests: list[list[dict]], concurrency: int) -> tuple[float, list[float], float, float]:
        """Send ``requests`` (each a list of rows) from ``concurrency`` threads: wall seconds, each request's
        latency, and the CPU seconds the server process and this process (the clients) spent."""

        def send(body: list[dict]) -> float:
            started = time.perf_counter()
            answers = self.client.predict(body)
            assert len(answers) == len(body)
            return time.perf_counter() - started

        with ThreadPoolExecutor(concurrency) as pool:
            list(
                pool.map(send, requests[:concurrency])
            )  # every thread's connection opened, outside the timing
            server, clients = cpu_seconds(self.proc.pid), time.process_time()
            started = time.perf_counter()
            latencies = list(pool.map(send, requests))
            wall = time.perf_counter() - started
            server, clients = cpu_seconds(self.proc.pid) - server, time.process_time() - clients
        return wall, latencies, server, clients


def traffic(
    rows: dict[str, list[dict]], per_request: int, repeat: int, limit: int | None = None
) -> dict[str, list[list[dict]]]:
    """The two traffics over the same rows (each row ``repeat`` times; only the first ``limit`` rows of the
    mixed order with a limit), ``per_request`` rows per request: ``mixed`` (the tasks interleaved, inside
    requests too) and ``single`` (the same rows one task after the other)."""
    mixed = [row for _ in range(repeat) for group in zip(*(rows[t] for t in TASKS)) for row in group][:limit]
    single = sorted(mixed, key=lambda row: TASKS.index(row["task"]))  # stable: each task's rows in order

    def requests(stream: list[dict]) -> list[list[dict]]:
        return [stream[i : i + per_request] for i in range(0, len(stream), per_request)]

    return {"single": requests(single), "mixed": requests(mixed)}


def rows_in(requests: list[list[dict]]) -> int:
    return sum(len(body) for body in requests)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float]) -> dict[str, float | list[float]]:
    return {"median": statistics.median(values), "spread": [min(values), max(values)]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=None, help="a run or bank folder (default: a fresh bank)")
    parser.add_argument("--backbone", choices=("tiny", "t5-small"), default="tiny", help="of the fresh bank")
    parser.add_argument("--mode", choices=("rank", "generate"), default="rank")
    parser.add_argument("--rows-per-request", default="1,8", help="comma-separated")
    parser.add_argument("--concurrency", default="1,32", help="client threads, comma-separated")
    parser.add_argument(
        "--repeat", type=int, default=8, help="each of the 128 demo rows this many times a phase"
    )
    parser.add_argument(
        "--one-client-requests", type=int, default=256, help="requests of a phase with 1 client (latency)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    per_requests = [int(x) for x in args.rows_per_request.split(",")]
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    rows = demo_rows(32)
    every_row = [row for body in traffic(rows, 1, args.repeat)["mixed"] for row in body]  # the mixed order
    phases = [(k, c, kind) for k in per_requests for c in concurrencies for kind in ("single", "mixed")]
    one_client = args.one_client_requests  # requests of a one-client phase: their rows, in both traffics
    timings: dict[tuple, list[tuple[float, list[float], float, float]]] = {p: [] for p in phases}
    offline: list[float] = []
    offline_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = args.run or fresh_bank(folder, args.backbone)
        server = Served(run, args.mode, folder / "serve.log", args.max_batch_size, args.max_wait_ms)
        loads = {
            (k, c): traffic(rows, k, args.repeat, one_client * k if c == 1 else None) for k, c, _ in phases
        }
        server.phase(loads[per_requests[0], max(concurrencies)]["mixed"], max(concurrencies))  # warm-up
        try:
            for round_ in range(args.rounds):
                order = [*phases, "offline"]
                shift = round_ % len(order)
                for item in order[shift:] + order[:shift]:
                    if item == "offline":
                        rate, cpu = offline_rows_per_s(run, every_row, folder, args.mode)
                        offline.append(rate)
                        offline_cpu.append(cpu)
                        print(f"round {round_ + 1}: compt predict {offline[-1]:8.0f} rows/s", flush=True)
                        continue
                    k, c, kind = item
                    requests = loads[k, c][kind]
                    wall, latencies, server_cpu, client_cpu = server.phase(requests, c)
                    timings[item].append((wall, latencies, server_cpu, client_cpu))
                    print(
                        f"round {round_ + 1}: {kind:>6} {k:>2} rows/request, {c:>3} clients: "
                        f"{len(latencies) / wall:7.0f} requests/s, {rows_in(requests) / wall:7.0f} rows/s, "
                        f"p50 {percentile(latencies, 0.5) * 1e3:6.1f} ms, p95 {percentile(latencies, 0.95) * 1e3:6.1f} ms",
                        flush=True,
                    )
        finally:
            code = server.stop()
        health_line = server.log.read_text().strip().splitlines()[-1]
    results = []
    for k in per_requests:
        for c in concurrencies:
            entry: dict = {"rows_per_request": k, "concurrency": c}
            for kind in ("single", "mixed"):
                walls = [t[0] for t in timings[(k, c, kind)]]
                lat = [t[1] for t in timings[(k, c, kind)]]
                rows_sent = [len(x) * k for x in lat]
                entry[kind] = {
                    "requests": len(lat[0]),
                    "requests_per_s": spread([len(x) / w for w, x in zip(walls, lat)]),
                    "rows_per_s": spread([n / w for n, w in zip(rows_sent, walls)]),
                    "p50_ms": spread([percentile(x, 0.5) * 1e3 for x in lat]),
                    "p95_ms": spread([percentile(x, 0.95) * 1e3 for x in lat]),
                    "cpu_ms_per_row": {
                        "server": spread([t[2] / n * 1e3 for t, n in zip(timings[(k, c, kind)], rows_sent)]),
                        "clients": spread([t[3] / n * 1e3 for t, n in zip(timings[(k, c, kind)], rows_sent)]),
                    },
                }
            single = [t[0] for t in timings[(k, c, "single")]]
            mixed = [t[0] for t in timings[(k, c, "mixed")]]
            rows_sent = len(timings[(k, c, "mixed")][0][1]) * k
            entry["mixed_over_single"] = spread([m / s for m, s in zip(mixed, single)])
            entry["served_over_offline"] = spread([rows_sent / m / o for m, o in zip(mixed, offline)])
            results.append(entry)
    report = {
        "machine": {
            "date": datetime.date.today().isoformat(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": 1,
            "python": platform.python_version(),
        },
        "mode": args.mode,
        "run": str(args.run) if args.run else f"fresh {args.backbone} bank (sst2, rte, mnli, stsb; ssum)",
        "rows_per_phase": len(every_row),
        "rounds": args.rounds,
        "max_batch_size": args.max_batch_size,
        "max_wait_ms": args.max_wait_ms,
        "offline_rows_per_s": spread(offline),
        "offline_cpu_ms_per_row": spread(offline_cpu),
        "served": results,
        "server_exit_code": code,
        "server_last_line": health_line,
    }
    print()
    print(
        f"compt predict offline: {report['offline_rows_per_s']['median']:.0f} rows/s {report['offline_rows_per_s']['spread']}, "
        f"{report['offline_cpu_ms_per_row']['median']:.3f} CPU ms/row"
    )
    for r in results:
        cpu = r["mixed"]["cpu_ms_per_row"]
        print(
            f"{r['rows_per_request']:>2} rows/request, {r['concurrency']:>3} clients: "
            f"mixed/single time per row {r['mixed_over_single']['median']:.3f} {fmt(r['mixed_over_single']['spread'])}, "
            f"served/offline rows/s {r['served_over_offline']['median']:.2f} {fmt(r['served_over_offline']['spread'])}; "
            f"mixed CPU ms/row: server {cpu['server']['median']:.3f}, clients {cpu['clients']['median']:.3f}"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


def fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


if __name__ == "__main__":
    main()
