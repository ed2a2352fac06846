"""Byte-compiles, once, the modules that every notebook kernel and grid worker imports.

``python -m kdlib.warmup`` imports them in a child process that may write byte-code (``PYTHONDONTWRITEBYTECODE``
unset for it alone), so later processes read compiled code even where that variable is set: ``make install`` runs
it. Cheaper than ``compileall`` over the whole environment (~16k files), which compiles much that kdlib never
imports. Modules of extras that are not installed (a cluster worker has no notebooks extra) are skipped and named.
Prints the seconds it took.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

MODULES = ("torch", "torchvision", "numpy", "scipy.stats", "pandas", "matplotlib.pyplot", "seaborn", "tqdm.auto",
           "yaml", "sklearn.datasets", "sklearn.model_selection", "PIL.Image", "ipykernel.kernelapp", "ipywidgets",
           "papermill", "nbformat", "kdlib.study", "kdlib.executors", "kdlib.plots", "kdlib.report", "kdlib.browse",
           "kdlib.notebooks", "kdlib.theory", "kdlib.grouped", "kdlib.stack", "kdlib.group_size", "kdlib.imagenet", "kdlib.claims", "kdlib.stats",
           "kdlib.records")


def main() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    code = ("import importlib\nskipped = []\nfor m in %r:\n    try:\n        importlib.import_module(m)\n"
            "    except ModuleNotFoundError as e:\n        skipped.append(f'{m} (no {e.name})')\n"
            "if skipped:\n    print('kdlib.warmup: not installed, skipped:', ', '.join(skipped))" % (MODULES,))
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    print(f"kdlib.warmup: byte-compiled the imports of kernels and workers in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
