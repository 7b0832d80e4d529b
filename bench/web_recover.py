"""Recovery in Chromium (TS SDK, web listeners) next to the Python SDK (gRPC), same run.

Starts a 2-of-3 local cluster with the default Argon2id (64 MiB, t=3: what users get, not the
dev floor), registers one user with the Python SDK, then times N recoveries with the Python
SDK and N with the TypeScript SDK in headless Chromium (Debian's chromium, playwright-core)
over the nodes' web listeners. Reports medians of the whole recovery and of its Argon2id
phase (hash-wasm in the browser, the C implementation in Python), the ratios browser/Python,
and the size of the example page's bundle (minified, minified + gzip), with and without the
Argon2id WebAssembly.

    .venv/bin/python bench/web_recover.py [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pakr
from pakr.coordinator.localcluster import LocalCluster
from pakr.proto.kdf import DEFAULT_ARGON2

ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "js"
USER, PASSWORD = "bench-user", "a benchmark password"


def python_runs(cluster: LocalCluster, runs: int) -> tuple[list[float], list[float]]:
    totals: list[float] = []
    argon2: list[float] = []
    phases: dict[str, float] = {}

    def observe(name: str, seconds: float) -> None:
        phases[name] = phases.get(name, 0.0) + seconds

    with pakr.Client.from_manifest(
        cluster.manifest_path,
        tenant=cluster.tenant,
        token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
        operator_key=cluster.operator_public_key(),
        on_phase=observe,
    ) as client:
        client.register(USER, PASSWORD, bytes(32), if_exists="replace")
        for _ in range(runs):
            phases.clear()
            started = time.perf_counter()
            client.recover(USER, PASSWORD)
            totals.append(time.perf_counter() - started)
            argon2.append(phases.get("argon2", 0.0))
    return totals, argon2


def browser_runs(
    cluster: LocalCluster, runs: int, work: Path
) -> tuple[list[float], list[float], dict[str, int]]:
    dist = work / "dist"
    subprocess.run(
        ["node", "scripts/build-web.mjs", "--operator-key", cluster.operator_public_key(),
         "--outdir", str(dist), "--entry", "bench/recover-page.ts"],
        cwd=JS, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "web" / "server.py"), "--cluster",
         str(cluster.dir), "--port", "0", "--dist", str(dist)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        done = subprocess.run(
            ["node", "bench/recover-chromium.mjs", url, USER, str(runs)],
            input=PASSWORD, cwd=JS, check=True, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    size = json.loads((dist / "size.json").read_text())
    bare = work / "bare"
    subprocess.run(
        ["node", "scripts/build-web.mjs", "--operator-key", cluster.operator_public_key(),
         "--outdir", str(bare), "--without-argon2"],
        cwd=JS, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    without = json.loads((bare / "size.json").read_text())
    size |= {"minified_without_argon2": without["minified"], "gzip_without_argon2": without["gzip"]}
    names = sorted({name for run in result["breakdown"] for name in run})
    phases = {n: statistics.median(run.get(n, 0.0) for run in result["breakdown"]) for n in names}
    print("  chromium phases (median s): " + json.dumps(phases), file=sys.stderr)
    return result["totals"], result["argon2"], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pakr-bench-web-") as tmp:
        work = Path(tmp)
        cluster = LocalCluster(work / "cluster", nodes=3, threshold=2, argon2=DEFAULT_ARGON2)
        with cluster.start():
            py_total, py_argon2 = python_runs(cluster, args.runs)
            web_total, web_argon2, size = browser_runs(cluster, args.runs, work)
    med = statistics.median
    report = {
        "argon2": {
            "memory_kib": DEFAULT_ARGON2.memory_kib,
            "iterations": DEFAULT_ARGON2.iterations,
        },
        "runs": args.runs,
        "python_recover_s": med(py_total),
        "chromium_recover_s": med(web_total),
        "ratio_recover": med(web_total) / med(py_total),
        "python_argon2_s": med(py_argon2),
        "chromium_argon2_s": med(web_argon2),
        "ratio_argon2": med(web_argon2) / med(py_argon2),
        "bundle_minified_bytes": size["minified"],
        "bundle_gzip_bytes": size["gzip"],
        "bundle_minified_without_argon2_bytes": size["minified_without_argon2"],
        "bundle_gzip_without_argon2_bytes": size["gzip_without_argon2"],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    cost = f"{DEFAULT_ARGON2.memory_kib // 1024} MiB t={DEFAULT_ARGON2.iterations}"
    print(f"recover, Argon2id {cost}, medians of {args.runs}:")
    print(f"  Python SDK (gRPC)            {report['python_recover_s'] * 1000:8.1f} ms"
          f"  (Argon2id {report['python_argon2_s'] * 1000:.1f} ms)")  # fmt: skip
    print(f"  TS SDK in Chromium (web)     {report['chromium_recover_s'] * 1000:8.1f} ms"
          f"  (Argon2id {report['chromium_argon2_s'] * 1000:.1f} ms)")  # fmt: skip
    print(f"  ratio Chromium/Python        {report['ratio_recover']:8.2f}"
          f"  (Argon2id {report['ratio_argon2']:.2f})")  # fmt: skip
    print(f"  example bundle               {size['minified'] / 1024:8.1f} KiB minified,"
          f" {size['gzip'] / 1024:.1f} KiB gzip")  # fmt: skip
    bare_min, bare_gzip = size["minified_without_argon2"], size["gzip_without_argon2"]
    print(f"  without the Argon2id WASM    {bare_min / 1024:8.1f} KiB minified,"
          f" {bare_gzip / 1024:.1f} KiB gzip")  # fmt: skip


if __name__ == "__main__":
    main()
