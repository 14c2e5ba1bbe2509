"""The published DeQA-Score label builder, re-implemented row by row as an oracle.

Written the way the published builder is (scipy.stats.norm per row, Python lists, levels
excellent-first) and independent of ``deqa``: the tests compare ``deqa.soft_label`` in reference mode
with it (tests/test_soft_label.py), and benchmarks/soft_label_speed.py times it as the per-row loop.
Keep it free of imports from ``deqa``, or it stops being a check.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm


def published_row(mos_norm: float, std_norm: float, method: str) -> tuple[list[float], bool]:
    """One label, excellent..bad as the published code stores it, and whether it fell back.

    Masses at x = 5..1 (``cdf``: the interval integral, ``pdf``: the density), one affine step
    alpha p + beta with alpha = (mu - 3) / (B - 3A + 1e-9), clipped at 0 without renormalising, and
    the two-level label when the std is below 0.2 or the clipped label's mean misses mu by > 0.1.
    """
    xs = [5, 4, 3, 2, 1]
    with np.errstate(divide="ignore", invalid="ignore"):  # std_norm = 0 gives NaN masses, as published
        if method == "cdf":
            probs = [float(norm.cdf(x + 0.5, mos_norm, std_norm) - norm.cdf(x - 0.5, mos_norm, std_norm))
                     for x in xs]
        else:
            probs = [float(norm.pdf(x, loc=mos_norm, scale=std_norm)) for x in xs]
    a = sum(probs)
    b = sum(p * x for p, x in zip(probs, xs))
    alpha = (mos_norm - 3) / (b - 3 * a + 1e-9)
    beta = (1 - alpha * a) / 5
    label = [max(p * alpha + beta, 0) for p in probs]
    if std_norm < 0.2 or abs(sum(p * x for p, x in zip(label, xs)) - mos_norm) > 0.1:
        ascending = [0.0] * 5
        for idx in range(1, 5):  # the two levels around mu, intervals widened by 1e-8
            left, right = idx - 1e-8, idx + 1 + 1e-8
            if left < mos_norm <= right:
                ascending[idx - 1] = (right - mos_norm) / (right - left)
                ascending[idx] = (mos_norm - left) / (right - left)
                break
        return ascending[::-1], True
    return label, False


def published_labels(mos, std, method: str):
    """Rescale with the data set's min and max as the published builder does, then build row by row.

    Returns (labels ordered bad..excellent (N, 5), fallback mask, mu, sigma) as numpy arrays.
    """
    mos, std = [float(m) for m in mos], [float(s) for s in std]
    lo, hi = min(mos), max(mos)
    rows, flags, mus, sigmas = [], [], [], []
    for m, s in zip(mos, std):
        mos_norm = 4 * (m - lo) / (hi - lo) + 1
        std_norm = 4 * s / (hi - lo)
        label, fell_back = published_row(mos_norm, std_norm, method)
        rows.append(label[::-1])  # excellent-first -> bad..excellent
        flags.append(fell_back)
        mus.append(mos_norm)
        sigmas.append(std_norm)
    return np.array(rows), np.array(flags), np.array(mus), np.array(sigmas)
