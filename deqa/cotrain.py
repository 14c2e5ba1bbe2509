"""A co-training experiment that needs no MLLM: three synthetic data sets whose scores live on
different scales, a tiny MLP scorer, and three ways to train it on all of them at once.
Explained in notebook 03 (``03_fidelity_loss``).

The generator: every image has a latent quality z (shared meaning across data sets). Its feature
vector is ``z * w + shift_d + noise``: a common quality direction w, plus a per-data-set nuisance
shift (camera, content, resolution: things that differ between collections but say nothing about
quality) and per-image noise. Each data set turns z into a score on its own scale with its own
monotone curve: a 1-5 MOS, a 0-100 MOS, and a lower-is-better DMOS on 0-1. Human std comes from a
simulated rater spread on that scale.

The three training methods (``train_scorer``):
* ``mse_raw``: regress the raw score, pooled (what you get if you ignore scales);
* ``mse_rescaled``: regress the score rescaled per data set to [1, 5] (min-max, DMOS flipped);
* ``fidelity``: the fidelity loss on same-data-set pairs, P from the human MOS and std
  (DMOS negated), P_hat = Phi((s_A - s_B) / sqrt 2) from the scorer's outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import spearmanr

from . import levels
from .pairs import PairSampler

#: name -> (lo, hi, lower_is_better, latent mean, latent sd, curve slope, rater std as a fraction of the range)
TOY_SETS = {
    "mos_1to5": (1.0, 5.0, False, 0.3, 1.0, 1.2, 0.12),
    "mos_0to100": (0.0, 100.0, False, -0.3, 0.8, 1.0, 0.10),
    "dmos_0to1": (0.0, 1.0, True, 0.0, 1.2, 0.9, 0.08),
}
METHODS = ("mse_raw", "mse_rescaled", "fidelity")


@dataclass
class ToyData:
    """Rows of all data sets: features X (N, F), latent quality z, native mos and std, data set
    name, split, and whether lower is better."""
    X: np.ndarray
    frame: pd.DataFrame


def make_toy_sets(n_per_set: int = 600, n_features: int = 8, shift_scale: float = 2.0,
                  noise: float = 0.6, test_fraction: float = 0.3, seed: int = 0) -> ToyData:
    """Generate the three toy data sets (see the module docstring); deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=n_features)
    w /= np.linalg.norm(w)
    X, parts = [], []
    for name, (lo, hi, lower, z_mean, z_sd, slope, rater) in TOY_SETS.items():
        z = rng.normal(z_mean, z_sd, size=n_per_set)
        shift = rng.normal(size=n_features) * shift_scale / np.sqrt(n_features)
        X.append(z[:, None] * w + shift + rng.normal(scale=noise, size=(n_per_set, n_features)))
        good = expit(slope * z)                         # in (0, 1), higher is better
        span = hi - lo
        std = np.full(n_per_set, rater * span) * (0.6 + 0.8 * rng.random(n_per_set))
        frac = good if not lower else 1.0 - good
        mos = lo + span * frac + rng.normal(scale=std / np.sqrt(20))  # MOS of ~20 raters
        split = np.where(rng.random(n_per_set) < test_fraction, "test", "train")
        parts.append(pd.DataFrame({"dataset": name, "z": z, "mos": mos, "std": std,
                                   "lower_is_better": lower, "split": split}))
    return ToyData(X=np.concatenate(X), frame=pd.concat(parts, ignore_index=True))


def quality_sign(frame: pd.DataFrame) -> np.ndarray:
    """+1 for higher-is-better rows, -1 for DMOS rows: mos * sign increases with quality."""
    return np.where(frame["lower_is_better"].to_numpy(), -1.0, 1.0)


def rescaled_targets(frame: pd.DataFrame) -> np.ndarray:
    """MOS mapped to [1, 5] per data set (min-max over that set's rows, DMOS flipped)."""
    out = np.empty(len(frame))
    for name, rows in frame.groupby("dataset").groups.items():
        sub = frame.loc[rows]
        mu, _ = levels.rescale(sub["mos"].to_numpy(), lower_is_better=bool(sub["lower_is_better"].iloc[0]))
        out[frame.index.get_indexer(rows)] = mu
    return out


def make_scorer(n_features: int, hidden: int = 32, seed: int = 0):
    """A tiny MLP: features -> one score."""
    import torch
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 1))


def train_scorer(data: ToyData, method: str, epochs: int = 150, lr: float = 3e-3,
                 batch_size: int = 128, seed: int = 0):
    """Train a fresh scorer on the train rows of every data set with one of ``METHODS``.

    Returns ``(model, losses)``: the trained torch module and the mean loss per epoch. Runs on one
    CPU thread (for a model this small, more threads only add overhead).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(data, method, epochs, lr, batch_size, seed)
    finally:
        torch.set_num_threads(threads)


def _train(data, method, epochs, lr, batch_size, seed):
    import torch

    from . import losses as L

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    train = data.frame["split"].to_numpy() == "train"
    X = torch.tensor(data.X[train], dtype=torch.float32)
    frame = data.frame[train].reset_index(drop=True)
    if method == "mse_raw":
        y = torch.tensor(frame["mos"].to_numpy(), dtype=torch.float32)
    elif method == "mse_rescaled":
        y = torch.tensor(rescaled_targets(frame), dtype=torch.float32)
    signed_mos = torch.tensor(frame["mos"].to_numpy() * quality_sign(frame))
    std = torch.tensor(frame["std"].to_numpy())

    model = make_scorer(X.shape[1], seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sampler = PairSampler(frame["dataset"].to_numpy(), seed=seed)
    gen = np.random.default_rng(seed)
    history = []
    for epoch in range(epochs):
        if method == "fidelity":
            idx_a, idx_b = sampler.epoch_pairs(epoch)
        else:
            idx_a, idx_b = gen.permutation(len(frame)), None
        total, count = 0.0, 0
        for start in range(0, len(idx_a), batch_size):
            a = torch.as_tensor(idx_a[start:start + batch_size])
            if method == "fidelity":
                b = torch.as_tensor(idx_b[start:start + batch_size])
                s = model(torch.cat([X[a], X[b]])).squeeze(-1)
                s_a, s_b = s[: len(a)], s[len(a):]
                p_hat = L.normal_cdf((s_a - s_b) / np.sqrt(2.0))  # the "fixed" variant
                p = L.thurstone(signed_mos[a], signed_mos[b], std[a], std[b]).float()
                loss = L.fidelity(p_hat, p).mean()
            else:
                loss = torch.mean((model(X[a]).squeeze(-1) - y[a]) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(a), count + len(a)
        history.append(total / count)
    return model, history


def predict(model, X: np.ndarray) -> np.ndarray:
    import torch
    with torch.no_grad():
        return model(torch.tensor(X, dtype=torch.float32)).squeeze(-1).numpy().astype(float)


def evaluate(data: ToyData, scores: np.ndarray) -> dict:
    """SRCC on each test set (against its quality order: a DMOS is negated) and on the pooled test
    rows (against the shared latent quality z, the only yardstick common to all sets)."""
    test = data.frame["split"].to_numpy() == "test"
    frame = data.frame[test]
    s = np.asarray(scores)[test]
    out = {}
    for name in TOY_SETS:
        rows = (frame["dataset"] == name).to_numpy()
        quality = frame["mos"].to_numpy()[rows] * quality_sign(frame[rows])
        out[name] = float(spearmanr(s[rows], quality).statistic)
    out["pooled (vs latent z)"] = float(spearmanr(s, frame["z"].to_numpy()).statistic)
    return out


def run_experiment(data: ToyData, epochs: int = 150, seed: int = 0) -> pd.DataFrame:
    """Train one scorer per method and return the SRCC table (methods x test sets)."""
    rows = {}
    for method in METHODS:
        model, _ = train_scorer(data, method, epochs=epochs, seed=seed)
        rows[method] = evaluate(data, predict(model, data.X))
    return pd.DataFrame(rows).T


def run_seeds(n_per_set: int = 600, epochs: int = 150, seeds=(0, 1, 2)) -> pd.DataFrame:
    """``run_experiment`` over several seeds (new data and new initialisation each time); a long
    table with columns seed, method, test set, srcc."""
    parts = []
    for seed in seeds:
        table = run_experiment(make_toy_sets(n_per_set=n_per_set, seed=seed), epochs=epochs, seed=seed)
        long = table.rename_axis("method").reset_index().melt(id_vars="method", var_name="test set",
                                                               value_name="srcc")
        parts.append(long.assign(seed=seed))
    return pd.concat(parts, ignore_index=True)[["seed", "method", "test set", "srcc"]]
