"""Seconds from a fresh Python process to the results browser's widgets (imports, loading the store, first draw).

    python benchmarks/browser_startup.py STORE [--repeat 2]

Measured 2026-11-30 (AVX2, 2 cores shared with other work, load ~6; a 140-run digits store): 23.5-25.7 s before
(torch, seaborn and scipy imported by kdlib.store/plots/report/browse), 6.3-9.4 s after (none of them).
Runs ``from kdlib.browse import ResultsBrowser; ResultsBrowser(STORE).ui()`` in new interpreters (the kdlib on
PYTHONPATH) and prints each wall time and which heavy modules were imported. Quote it with the machine's
``torch.backends.cpu.get_cpu_capability()``; the first run after an install also byte-compiles.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

CODE = """
import sys, time
t0 = time.perf_counter()
import matplotlib
matplotlib.use("Agg")
from kdlib.browse import ResultsBrowser
t1 = time.perf_counter()
b = ResultsBrowser(sys.argv[1])
ui = b.ui()
t2 = time.perf_counter()
heavy = [m for m in ("torch", "seaborn", "scipy") if m in sys.modules]
print(f"import {t1 - t0:.1f} s, browser {t2 - t1:.1f} s, {len(b.df)} runs; heavy modules loaded: {heavy or 'none'}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        # cwd "/": with -c the current folder comes first on sys.path and would shadow the kdlib on PYTHONPATH
        out = subprocess.run([sys.executable, "-c", CODE, str(Path(args.store).resolve())], capture_output=True,
                             text=True, check=True, cwd="/")
        print(f"{time.perf_counter() - t0:.1f} s to widgets ({out.stdout.strip()})", flush=True)


if __name__ == "__main__":
    main()
