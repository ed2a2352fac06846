"""Process start-up: what a notebook kernel and a grid worker pay before their first line of work.

    python benchmarks/startup.py              # 3 interleaved rounds
    python benchmarks/startup.py --repeats 1

Each measurement is a fresh ``python -c "import ..."`` process. Two import sets:
  kernel   what a study notebook imports (ipykernel, kdlib.study, kdlib.plots, kdlib.report: torch, pandas, seaborn)
  worker   what a ``processes`` grid worker imports (kdlib.executors' worker: kdlib.study without pandas/seaborn)
each with the installed byte-code and without any (``PYTHONPYCACHEPREFIX`` pointed at an empty folder, which is
what every process meets when the install skipped byte-compilation and ``PYTHONDONTWRITEBYTECODE`` is set).
Also printed: the modules a worker has loaded that it should not need (pandas, seaborn, matplotlib, scipy).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_header, median  # noqa: E402

SETS = {
    "kernel": "import ipykernel.kernelapp, kdlib.study, kdlib.plots, kdlib.report",
    "worker": "import kdlib.executors, kdlib.study",
}
HEAVY = ("pandas", "seaborn", "matplotlib", "scipy", "sklearn")


def timed(code: str, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(machine_header(), flush=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryDirectory() as empty:
        cold = {**env, "PYTHONPYCACHEPREFIX": empty}
        times: dict[str, list[float]] = {}
        for r in range(args.repeats):
            for name, code in SETS.items():
                for label, e in (("byte-code", env), ("no byte-code", cold)):
                    times.setdefault(f"{name}, {label}", []).append(timed(code, e))
                    print(f"  round {r + 1}: {name:7s} {label:13s} {times[f'{name}, {label}'][-1]:6.1f} s", flush=True)
    print(f"\nseconds to import, median of {args.repeats} fresh processes:")
    for name in SETS:
        warm, cold_t = median(times[f"{name}, byte-code"]), median(times[f"{name}, no byte-code"])
        print(f"  {name:7s} with byte-code {warm:6.1f}   without {cold_t:6.1f}   ({cold_t / warm:.1f}x)")
    out = subprocess.run([sys.executable, "-c", SETS["worker"] + "; import sys; print(' '.join(sorted("
                          f"m for m in {HEAVY!r} if m in sys.modules)))"], capture_output=True, text=True, env=env)
    print(f"heavy modules a grid worker loads: {out.stdout.strip() or 'none'}")


if __name__ == "__main__":
    main()
