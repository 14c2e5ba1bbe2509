"""Throughput of the vectorised soft-label builder against a per-row Python loop.

    python benchmarks/soft_label_speed.py [--rows 1000000] [--loop-rows 5000] [--repeats 3]

Labels per second of ``deqa.soft_label.soft_labels`` (cdf and pdf, default and reference mode) on
random rows (mu uniform on [1, 5], sigma uniform on [0.1, 1.5]), single-threaded, against a
per-row loop written the way the published label builder is (scipy.stats.norm per row, Python
lists) on a smaller sample. Not a test: the numbers depend on the machine. Explained in notebook 02.
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
from scipy.stats import norm  # noqa: E402

from deqa.soft_label import soft_labels  # noqa: E402


def loop_label(mu: float, sigma: float, method: str) -> list[float]:
    """One row, the published way: masses excellent-first, one affine step, two-level fallback."""
    xs = [5, 4, 3, 2, 1]
    if method == "cdf":
        probs = [norm.cdf(x + 0.5, mu, sigma) - norm.cdf(x - 0.5, mu, sigma) for x in xs]
    else:
        probs = [norm.pdf(x, loc=mu, scale=sigma) for x in xs]
    a = sum(probs)
    b = sum(p * x for p, x in zip(probs, xs))
    alpha = (mu - 3) / (b - 3 * a + 1e-9)
    beta = (1 - alpha * a) / 5
    q = [max(p * alpha + beta, 0) for p in probs]
    if sigma < 0.2 or abs(sum(p * x for p, x in zip(q, xs)) - mu) > 0.1:
        q = [0.0] * 5
        for idx in range(1, 5):
            left, right = idx - 1e-8, idx + 1 + 1e-8
            if left < mu <= right:
                q[idx - 1] = (right - mu) / (right - left)
                q[idx] = (mu - left) / (right - left)
                break
        q = q[::-1]
    return q[::-1]  # bad..excellent


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
    print(f"{'method':<6} {'mode':<9} {'vectorised labels/s':>20} {'loop labels/s':>14} {'speed-up':>9}")
    for method in ("cdf", "pdf"):
        loop_s = best_of(lambda: [loop_label(m, s, method)
                                  for m, s in zip(mu[:args.loop_rows].tolist(),
                                                  sigma[:args.loop_rows].tolist())],
                         max(1, args.repeats - 2))
        loop_rate = args.loop_rows / loop_s
        for reference in (False, True):
            vec_s = best_of(lambda: soft_labels(mu, sigma, method, reference=reference), args.repeats)
            vec_rate = args.rows / vec_s
            mode = "reference" if reference else "default"
            print(f"{method:<6} {mode:<9} {vec_rate:>20,.0f} {loop_rate:>14,.0f} {vec_rate / loop_rate:>8,.0f}x")
    # the loop and the reference mode build the same labels
    n = min(args.loop_rows, 2000)
    for method in ("cdf", "pdf"):
        looped = np.array([loop_label(m, s, method) for m, s in zip(mu[:n].tolist(), sigma[:n].tolist())])
        worst = np.abs(looped - soft_labels(mu[:n], sigma[:n], method, reference=True)).max()
        print(f"check {method}: max |loop - reference mode| on {n:,} rows = {worst:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
