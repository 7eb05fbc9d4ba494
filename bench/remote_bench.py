"""Round trip of one chunk through retain-serve over loopback, against the forward pass it wraps.

    .venv/bin/python bench/remote_bench.py                 # embedded base + task_ft at alpha 0.9, 200 chunks
    .venv/bin/python bench/remote_bench.py --iters 500 --camera-size 480

Starts `retain-serve` in its own process (one torch thread, as the node's inference), then times, on the same
observation (two camera frames of --camera-size, as the node receives them):
- local: `Policy.predict` in this process (what policy_backend local runs);
- remote: the steps of `RemotePolicy.predict` (what policy_backend openpi_server runs): resize with pad to 224 and
  msgpack on the client, the websocket round trip, the server's request decoding, ITS `predict`, the answer's checks;
- the server's own `infer_ms` (inference as the server measures it), so the overhead of the protocol is
  remote - server.
Prints p50 / p99 in ms and the overhead as a ratio of the forward pass. Asserts nothing. Loopback measures the
protocol's cost only; a network adds its own latency (docs/robot.md).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from retain_ros.policy import load_policy
from retain_ros.policy.reference_policy import example_observation
from retain_ros.serving import openpi_wire as wire
from retain_ros.serving.remote import Link, spec_from_metadata

MODELS = Path(__file__).resolve().parent.parent / "retain_ros" / "models"


def percentiles(ms: list[float]) -> tuple[float, float]:
    """p50 and p99."""
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def start_server(root: Path, base: str, finetuned: str, alpha: float) -> tuple[subprocess.Popen, int]:
    """retain-serve on a free loopback port; returns the process and the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "retain_ros.serving.serve_cli", "--checkpoint-root", str(root),
                             "--base", base, "--finetuned", finetuned, "--alpha", str(alpha), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "listening on" in line:
            return proc, port
    raise RuntimeError("retain-serve did not start")


def main() -> int:
    """Run the benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(MODELS), help="checkpoint root (default: the embedded models)")
    p.add_argument("--base", default="base")
    p.add_argument("--finetuned", default="task_ft")
    p.add_argument("--alpha", type=float, default=0.9)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--camera-size", type=int, default=128, help="side of the camera frames the node receives")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    proc, port = start_server(Path(args.root), args.base, args.finetuned, args.alpha)
    try:
        link = Link(f"ws://127.0.0.1:{port}")
        spec = spec_from_metadata(link.metadata)
        local = load_policy(Path(args.root) / args.base)
        obs = example_observation(local.spec, size=(args.camera_size, args.camera_size))
        samples: dict[str, list[float]] = {"local predict": [], "remote predict": [], "server infer": []}
        for i in range(args.iters + 5):
            started = time.perf_counter()
            local.predict(obs)
            local_ms = 1e3 * (time.perf_counter() - started)
            started = time.perf_counter()
            answer = link.call(wire.droid_request(obs), 10.0)
            wire.chunk_from_answer(answer, spec.action_space, spec.dt_s, 0)  # the checks RemotePolicy makes
            remote_ms = 1e3 * (time.perf_counter() - started)
            if i >= 5:  # warm-up
                samples["local predict"].append(local_ms)
                samples["remote predict"].append(remote_ms)
                samples["server infer"].append(float(answer["server_timing"]["infer_ms"]))
        link.close()
    finally:
        proc.terminate()
        proc.wait(20)
    print(f"{args.iters} chunks, camera frames {args.camera_size}x{args.camera_size}, one torch thread per process")
    print(f"{'':<16} {'p50 ms':>8} {'p99 ms':>8}")
    for name, ms in samples.items():
        p50, p99 = percentiles(ms)
        print(f"{name:<16} {p50:8.2f} {p99:8.2f}")
    overhead = [r - s for r, s in zip(samples["remote predict"], samples["server infer"])]
    o50, o99 = percentiles(overhead)
    l50, _ = percentiles(samples["local predict"])
    print(f"{'protocol':<16} {o50:8.2f} {o99:8.2f}   (remote - server infer)")
    print(f"overhead / forward pass (p50): {o50 / l50:.2f}; remote / local (p50): "
          f"{percentiles(samples['remote predict'])[0] / l50:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
