"""Per-test cost of the pytest plugin's options against pytest-randomly, in one run.

Run: python benchmarks/bench_pytest_plugin.py [--tests 2000] [--rounds 5]

A temporary folder gets one test file of ``--tests`` trivial tests (each
passes at once). Every contender is one pytest run of that file in a fresh
subprocess; the runs are interleaved (plain, randomly, --repro-seed, ...,
plain, randomly, ...) so that machine noise hits them alike. A contender's
per-test overhead is the median over rounds of (its wall time minus the plain
run's of the same round) divided by the number of tests.

The test file imports torch and NumPy itself, so every run pays those imports
alike and the difference is what the options cost per test. Plugins load only
when named (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), so the plain run has neither
repro_ctx's plugin nor pytest-randomly. Targets (issue #21): --repro-seed at
most 0.4 ms per test and --repro-leaks at most 0.6 ms over the plain run.
Only the ratios and differences measured in one run are meant to be quoted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import environment_note

REPO = Path(__file__).resolve().parents[1]
BASE = ("-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-W", "ignore")
PLUGIN = ("-p", "repro_ctx.pytest_plugin")
CONTENDERS: dict[str, tuple[str, ...]] = {
    "plain": (),
    "pytest-randomly": ("-p", "randomly"),
    "--repro-seed": (*PLUGIN, "--repro-seed=1"),
    "--repro-leaks=warn": (*PLUGIN, "--repro-leaks=warn"),
    "--repro-seed --repro-leaks": (*PLUGIN, "--repro-seed=1", "--repro-leaks=warn"),
    "--repro-seed + randomly": (*PLUGIN, "--repro-seed=1", "-p", "randomly"),
}


def _test_file(tests: int) -> str:
    lines = ["import numpy", "import torch", ""]
    lines += [f"def test_{i}():\n    pass\n" for i in range(tests)]
    return "\n".join(lines)


def _run(folder: Path, args: tuple[str, ...], tests: int) -> float:
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *BASE, *args, "test_many.py"],
        cwd=folder, env=env, capture_output=True, text=True, check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or f"{tests} passed" not in done.stdout:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    print(environment_note())
    print(f"{options.tests} trivial tests per run, {options.rounds} interleaved rounds; "
          "wall time of whole pytest subprocesses")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_many.py").write_text(_test_file(options.tests))
        for args in CONTENDERS.values():  # warm up: bytecode caches, the OS's file cache
            _run(folder, args, options.tests)
        samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for _ in range(options.rounds):
            for name, args in CONTENDERS.items():
                samples[name].append(_run(folder, args, options.tests))
    plain = samples["plain"]
    per_test = {
        name: statistics.median(a - b for a, b in zip(values, plain)) / options.tests
        for name, values in samples.items()
    }
    randomly = per_test["pytest-randomly"]
    width = max(len(name) for name in CONTENDERS)
    print(f"\n  {'':<{width}}  {'run (median)':>12}  {'per test over plain':>19}  vs randomly")
    for name, values in samples.items():
        ratio = f"{per_test[name] / randomly:6.2f}x" if name != "plain" else ""
        print(f"  {name:<{width}}  {statistics.median(values):10.2f} s  "
              f"{per_test[name] * 1e3:16.3f} ms  {ratio}")
    print("\nTargets: --repro-seed <= 0.4 ms, --repro-leaks <= 0.6 ms per test over plain.")


if __name__ == "__main__":
    main()
