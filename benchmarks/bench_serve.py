"""Requests per second and latency of ``mask2former serve`` at several concurrencies, and the batch sizes it ran.

Starts a server (the bundled demo model on CPU unless told otherwise) on a free loopback port, or uses ``--url``;
then, per concurrency C, C client threads post the same image (``POST /v1/segment``) until ``--requests`` answers
have come back, after a few warm-up requests. Prints requests/s, median and p95 latency, and the batch sizes that
``GET /v1/stats`` counted during each run. Loopback only; bounded in count; stops by itself.

    python benchmarks/bench_serve.py                                   # demo model, a bundled example, panoptic
    python benchmarks/bench_serve.py --requests 100 --concurrency 1 4 8 16 --task semantic
    python benchmarks/bench_serve.py --url http://127.0.0.1:8000      # a server you started yourself
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit


def post(host: str, port: int, path: str, body: bytes) -> tuple[int, float]:
    """(status, seconds) of one POST on a new connection."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=300)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/octet-stream"})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        connection.close()


def stats(host: str, port: int) -> dict:
    import json

    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("GET", "/v1/stats")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def run(host: str, port: int, path: str, body: bytes, concurrency: int, requests: int) -> dict:
    """``requests`` answers from ``concurrency`` clients: wall time, latencies, failures, batch sizes."""
    before = Counter({int(k): v for k, v in stats(host, port)["batch_sizes"].items()})
    latencies: list[float] = []
    failures: list[int] = []
    left = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if next(left, None) is None:
                    return
            status, seconds = post(host, port, path, body)
            with lock:
                (latencies if status == 200 else failures).append(seconds if status == 200 else status)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    after = Counter({int(k): v for k, v in stats(host, port)["batch_sizes"].items()})
    after.subtract(before)
    return {"wall": wall, "latencies": sorted(latencies), "failures": failures,
            "batch_sizes": {size: count for size, count in sorted(after.items()) if count > 0}}


def start_server(args: argparse.Namespace, folder: Path) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "mask2former.cli", "serve", "--port", "0", "--device", args.device,
               "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    if args.model:
        command += ["--model", args.model]
    log = folder / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        found = re.search(r"web page: (http://127\.0\.0\.1:\d+)/", log.read_text())
        if found:
            return process, found.group(1)
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--model", help="model for the started server (default: the bundled demo model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--image", type=Path, help="image to post (default: the first bundled example)")
    parser.add_argument("--task", default="panoptic")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=200, help="answers per concurrency")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    from mask2former.predict import bundled_examples

    image = args.image or bundled_examples()[0]
    body = image.read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        process, url = (None, args.url) if args.url else start_server(args, Path(folder))
        try:
            parts = urlsplit(url)
            host, port = parts.hostname or "127.0.0.1", parts.port or 80
            path = f"/v1/segment?task={args.task}"
            for _ in range(args.warmup):
                post(host, port, path, body)
            import torch

            print(f"# mask2former serve, {args.model or 'bundled demo model'} on {args.device}, {image.name}, "
                  f"task {args.task}, --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g}")
            print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
                  f", Python {platform.python_version()}")
            print("| clients | requests | requests/s | median latency | p95 latency | failed | batch sizes (count) | "
                  "load average |")
            print("|---|---|---|---|---|---|---|---|")
            for concurrency in args.concurrency:
                result = run(host, port, path, body, concurrency, args.requests)
                latencies = result["latencies"]
                p95 = latencies[math.ceil(0.95 * len(latencies)) - 1] if latencies else float("nan")  # nearest rank
                median = statistics.median(latencies) if latencies else float("nan")
                sizes = ", ".join(f"{size}: {count}" for size, count in result["batch_sizes"].items())
                print(f"| {concurrency} | {args.requests} | {len(latencies) / result['wall']:.1f} | "
                      f"{1000 * median:.0f} ms | {1000 * p95:.0f} ms | {len(result['failures'])} | {sizes} | "
                      f"{os.getloadavg()[0]:.1f} |", flush=True)
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=60)


if __name__ == "__main__":
    main()
