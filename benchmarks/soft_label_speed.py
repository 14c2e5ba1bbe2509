"""Throughput of the vectorised soft-label builder against a per-row Python loop.

    python benchmarks/soft_label_speed.py [--rows 1000000] [--loop-rows 5000] [--repeats 3]

Labels per second of ``deqa.soft_label.soft_labels`` (cdf and pdf; default, active-set and reference
mode) on random rows (mu uniform on [1, 5], sigma uniform on [0.1, 1.5]), single-threaded, against
the per-row loop of benchmarks/published_labels.py (written the way the published label builder is:
scipy.stats.norm per row, Python lists) on a smaller sample. Not a test: the numbers depend on the
machine. Explained in notebook 02.
"""
from __future__ import annotations

import os

# one thread everywhere, set before numpy is imported, so the numbers compare like with like
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from published_labels import published_row  # noqa: E402  (beside this script)

from deqa.soft_label import MODES, soft_labels  # noqa: E402


def loop_label(mu: float, sigma: float, method: str) -> list[float]:
    """One row of the published builder, bad..excellent."""
    return published_row(mu, sigma, method)[0][::-1]


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows for the vectorised builder")
    ap.add_argument("--loop-rows", type=int, default=5_000, help="rows for the per-row loop")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    mu = rng.uniform(1.0, 5.0, args.rows)
    sigma = rng.uniform(0.1, 1.5, args.rows)
    print(f"numpy {np.__version__}, python {platform.python_version()}, one thread; "
          f"vectorised on {args.rows:,} rows, loop on {args.loop_rows:,} rows, best of {args.repeats}")
    print(f"{'method':<6} {'mode':<10} {'vectorised labels/s':>20} {'loop labels/s':>14} {'speed-up':>9}")
    for method in ("cdf", "pdf"):
        loop_s = best_of(lambda: [loop_label(m, s, method)
                                  for m, s in zip(mu[:args.loop_rows].tolist(),
                                                  sigma[:args.loop_rows].tolist())],
                         max(1, args.repeats - 2))
        loop_rate = args.loop_rows / loop_s
        for mode in MODES:
            vec_s = best_of(lambda: soft_labels(mu, sigma, method, mode=mode), args.repeats)
            vec_rate = args.rows / vec_s
            print(f"{method:<6} {mode:<10} {vec_rate:>20,.0f} {loop_rate:>14,.0f} {vec_rate / loop_rate:>8,.0f}x")
    # the loop and the reference mode build the same labels
    n = min(args.loop_rows, 2000)
    for method in ("cdf", "pdf"):
        looped = np.array([loop_label(m, s, method) for m, s in zip(mu[:n].tolist(), sigma[:n].tolist())])
        worst = np.abs(looped - soft_labels(mu[:n], sigma[:n], method, reference=True)).max()
        print(f"check {method}: max |loop - reference mode| on {n:,} rows = {worst:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
