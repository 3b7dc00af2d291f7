"""Run the same workload on tether, LangGraph and DBOS, on SQLite and PostgreSQL, and
print one table with absolute figures and ratios (see BENCHMARKS.md).

    python bench/run.py --quick        # under 2 minutes
    python bench/run.py                # the full run behind BENCHMARKS.md

The peers live in their own virtualenv, ``bench/.venv-peers`` (git-ignored), which this
script creates on first use and then re-runs itself inside. Each system and store runs
in a process of its own (``python -m bench.suite_<system>``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = BENCH / ".venv-peers"
VENV_PY = VENV / "bin" / "python"


def ensure_venv() -> None:
    """Create the peers' virtualenv when missing, then re-run this script inside it."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not VENV_PY.exists():
        print(f"creating {VENV} (tether, LangGraph, DBOS, matplotlib) …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(VENV_PY), "-m", "pip", "install", "-q", "-e", ".[postgres,server]",
             "-r", "bench/requirements.txt"],
            cwd=ROOT, check=True,
        )  # fmt: skip
    os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])


SUITES = (
    ("tether", "sqlite"),
    ("langgraph", "sqlite"),
    ("dbos", "sqlite"),
    ("tether", "postgres"),
    ("langgraph", "postgres"),
    ("dbos", "postgres"),
)


def run_suite(
    system: str, backend: str, size: str, workdir: str, only: str, status: Any, limit: float
) -> dict[str, Any]:
    """Run one suite in its own process, killed after ``limit`` seconds."""
    cmd = [sys.executable, "-m", f"bench.suite_{system}", "--backend", backend,
           "--sizes", size, "--workdir", workdir]  # fmt: skip
    if only:
        cmd += ["--only", only]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    watchdog = threading.Timer(limit, proc.kill)
    watchdog.start()
    result: dict[str, Any] = {"system": system, "backend": backend}
    for line in proc.stdout:
        if line.startswith("PROGRESS "):
            status(line[9:].strip())
        elif line.startswith("RESULT "):
            result = json.loads(line[7:])
    err = proc.stderr.read() if proc.stderr else ""
    code = proc.wait()
    watchdog.cancel()
    if code != 0 and "error" not in result:
        result["error"] = err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"
    return result


def main() -> None:
    ensure_venv()
    sys.path.insert(0, str(ROOT))
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from bench import common, report

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes; under 2 minutes")
    parser.add_argument("--systems", default="tether,langgraph,dbos")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--only", default="", help="figures: per_step,throughput,rss,recovery,processes"
    )
    parser.add_argument("--out", default=str(BENCH / "out"), help="results.json, table.md, PNGs")
    args = parser.parse_args()
    size = "quick" if args.quick else "full"
    systems, backends = args.systems.split(","), args.backends.split(",")
    suites = [(s, b) for s, b in SUITES if s in systems and b in backends]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as workdir, Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=console,
    ) as bar:  # fmt: skip
        overall = bar.add_task(f"{size} run", total=len(suites))
        for system, backend in suites:
            name = f"{system} on {backend}"
            current = bar.add_task(name, total=None)
            result = run_suite(
                system, backend, size, workdir, args.only,
                lambda text, c=current, n=name: bar.update(c, description=f"{n}: {text}"),
                90 if args.quick else 900,
            )  # fmt: skip
            results.append(result)
            bar.update(
                current,
                description=f"{name}: {'failed' if 'error' in result else 'done'}",
                total=1,
                completed=1,
            )
            bar.advance(overall)
    meta = {
        "size": size,
        "seconds": round(time.monotonic() - started, 1),
        "machine": common.machine(),
        "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]),
        "sizes": {k: v for k, v in dataclasses.asdict(common.sizes(size)).items() if k != "extra"},
    }
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    report.print_table(console, results, meta)
    (out / "table.md").write_text(report.markdown(results, meta))
    for png in report.plot(results, out):
        console.print(f"wrote {png}")
    console.print(f"results in {out}/results.json, table in {out}/table.md ({meta['seconds']} s)")


if __name__ == "__main__":
    main()
