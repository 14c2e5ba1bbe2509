"""A co-training experiment that needs no MLLM: synthetic data sets whose scores live on different
scales and cover different parts of the quality range, a tiny scorer with a five-level head, and four
objectives to train it on all of them at once. Explained in notebook 03 (``03_fidelity_loss``).

The generator: every image has a latent quality z (the same meaning in every data set). Its feature
vector is ``z * w + shift_d + noise``: a common quality direction w, a per-data-set nuisance shift
(camera, content, resolution: it tells the data sets apart but says nothing about quality; its size
is ``shift_scale``, 0 removes it) and per-image noise. Each data set draws its own z (``z_mean``,
``z_sd``: a set may hold only good or only bad images), turns z into a score on its own scale with a
monotone S-curve (plus the noise of the mean of ``N_RATERS`` ratings, kept inside the scale) and
simulates the raters' std on that scale. One set per scenario is held out: never trained on, only tested.

The scorer (``make_scorer``) ends in five level logits, like the MLLM at the level position; its
score is their expectation. The objectives (``batch_loss``), all trained on the same same-data-set
pairs (A, B):

* ``mse_rescaled``: squared error between the score and the MOS min-max rescaled to [1, 5] per set;
* ``soft_kl``: KL(soft label || softmax(level logits)), the soft label built from that rescaled MOS
  (the package's default label, ``soft_label.PUBLISHED_LABEL``, unless ``reference`` says otherwise);
* ``fidelity``: the fidelity loss of the Thurstone target of the native MOS and std (DMOS negated)
  against the ``fixed`` P_hat of the two images' level logits;
* ``soft_kl_fid``: fidelity + gamma (KL_A + KL_B), the DeQA-Score combination.

``train_objectives`` trains one scorer per objective side by side in one stacked network (the same
scorers as separate runs, at a fraction of the cost); ``train_scorer`` is it for one objective.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import spearmanr

from . import levels
from .errors import DeqaError
from .metrics import t_interval
from .pairs import PairSampler


@dataclass(frozen=True)
class ToySet:
    """One toy data set: its score scale [lo, hi] and direction, the latent qualities of its images
    N(z_mean, z_sd^2), the slope of its S-curve, its raters' std (a fraction of the scale) and
    whether it is held out (tested only)."""
    lo: float
    hi: float
    lower_is_better: bool
    z_mean: float
    z_sd: float
    slope: float
    rater: float
    held_out: bool = False


#: the case the fidelity loss exists for: one full-range set and two sets restricted to the good
#: and to the bad images, on three scales; a fourth full-range set on a fourth scale is held out
RESTRICTED = {
    "full_1to5": ToySet(1.0, 5.0, False, 0.0, 1.0, 1.2, 0.12),
    "high_0to100": ToySet(0.0, 100.0, False, 1.5, 0.25, 1.0, 0.10),
    "low_dmos": ToySet(0.0, 1.0, True, -1.5, 0.25, 0.9, 0.08),
    "heldout_0to10": ToySet(0.0, 10.0, False, 0.0, 1.0, 1.1, 0.10, held_out=True),
}
#: the control: three sets that all cover the whole quality range (on three scales), same held-out set
FULL_RANGE = {
    "full_1to5": ToySet(1.0, 5.0, False, 0.3, 1.0, 1.2, 0.12),
    "full_0to100": ToySet(0.0, 100.0, False, -0.3, 0.8, 1.0, 0.10),
    "full_dmos": ToySet(0.0, 1.0, True, 0.0, 1.2, 0.9, 0.08),
    "heldout_0to10": ToySet(0.0, 10.0, False, 0.0, 1.0, 1.1, 0.10, held_out=True),
}
SCENARIOS = {"restricted": RESTRICTED, "full_range": FULL_RANGE}
OBJECTIVES = ("mse_rescaled", "soft_kl", "fidelity", "soft_kl_fid")
POOLED = "pooled (vs z)"  #: the column of the pooled SRCC over the trained sets' test rows
N_RATERS = 20  #: raters per toy image: the MOS carries their mean's noise


@dataclass
class ToyData:
    """Rows of all data sets: features X (N, F) and a frame with columns dataset, z (latent
    quality), mos, std (native scale), lower_is_better, split (train / test / heldout)."""
    X: np.ndarray
    frame: pd.DataFrame


def scenario_sets(scenario) -> dict:
    """The ``ToySet`` table of a scenario name (``SCENARIOS``) or the table itself."""
    if isinstance(scenario, dict):
        return scenario
    if scenario not in SCENARIOS:
        raise DeqaError(f"unknown toy scenario {scenario!r}: use one of {sorted(SCENARIOS)}")
    return SCENARIOS[scenario]


def make_toy_sets(scenario="restricted", n_per_set: int = 400, n_features: int = 8,
                  shift_scale: float = 2.0, noise: float = 0.6, test_fraction: float = 0.3,
                  seed: int = 0) -> ToyData:
    """Generate the toy data sets of a scenario (see the module docstring); deterministic in ``seed``."""
    sets = scenario_sets(scenario)
    if n_per_set < 10:
        raise DeqaError(f"make_toy_sets: n_per_set must be at least 10, got {n_per_set}")
    rng = np.random.default_rng(seed)
    w = rng.normal(size=n_features)
    w /= np.linalg.norm(w)
    X, parts = [], []
    for name, s in sets.items():
        z = rng.normal(s.z_mean, s.z_sd, size=n_per_set)
        shift = rng.normal(size=n_features) * shift_scale / np.sqrt(n_features)
        X.append(z[:, None] * w + shift + rng.normal(scale=noise, size=(n_per_set, n_features)))
        span = s.hi - s.lo
        std = s.rater * span * (0.6 + 0.8 * rng.random(n_per_set))
        good = expit(s.slope * z)                       # in (0, 1), higher is better
        frac = 1.0 - good if s.lower_is_better else good
        mos = np.clip(s.lo + span * frac + rng.normal(scale=std / np.sqrt(N_RATERS)), s.lo, s.hi)
        split = np.where(rng.random(n_per_set) < test_fraction, "test", "train")
        if s.held_out:
            split = np.full(n_per_set, "heldout")
        parts.append(pd.DataFrame({"dataset": name, "z": z, "mos": mos, "std": std,
                                   "lower_is_better": s.lower_is_better, "split": split}))
    return ToyData(X=np.concatenate(X), frame=pd.concat(parts, ignore_index=True))


def quality_sign(frame: pd.DataFrame) -> np.ndarray:
    """+1 for higher-is-better rows, -1 for DMOS rows: mos * sign increases with quality."""
    return np.where(frame["lower_is_better"].to_numpy(bool), -1.0, 1.0)


def rescaled_targets(frame: pd.DataFrame):
    """(mu, sigma): MOS and std mapped to [1, 5] per data set (min-max over that set's rows, DMOS
    flipped), as the soft labels of chapter 02 are built."""
    mu, sigma = np.empty(len(frame)), np.empty(len(frame))
    for _, rows in frame.groupby("dataset", sort=False).indices.items():
        sub = frame.iloc[rows]
        mu[rows], sigma[rows] = levels.rescale(sub["mos"].to_numpy(), sub["std"].to_numpy(),
                                               lower_is_better=bool(sub["lower_is_better"].iloc[0]))
    return mu, sigma


@dataclass
class Targets:
    """What each objective needs of the training rows, as torch tensors: the rescaled MOS ``mu``,
    the soft label ``q`` (N, 5), the signed native MOS ``signed_mos`` (DMOS negated) and ``std``."""
    mu: object
    q: object
    signed_mos: object
    std: object


def make_targets(frame: pd.DataFrame, reference: bool | None = None) -> Targets:
    """The targets of ``frame``'s rows (see ``Targets``); soft labels use ``soft_label.soft_labels``
    (``reference``: which label, None for the package default)."""
    import torch

    from .soft_label import soft_labels
    mu, sigma = rescaled_targets(frame)
    q = soft_labels(mu, sigma, method="cdf", reference=reference)
    as_t = lambda x: torch.tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
    return Targets(mu=as_t(mu), q=as_t(q), signed_mos=as_t(frame["mos"].to_numpy() * quality_sign(frame)),
                   std=as_t(frame["std"].to_numpy()))


def make_scorer(n_features: int, hidden: int = 32, seed: int = 0):
    """A tiny MLP: features -> five level logits (bad..excellent)."""
    import torch
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 5))


def _stacked_layers(n_features: int, copies: int, seed: int):
    """The linear layers of ``make_scorer(n_features, seed=seed)``, each repeated ``copies`` times along
    a new first axis, as trainable leaves: [(weight (copies, in, out), bias (copies, 1, out)), ...]."""
    import torch
    return [(layer.weight.detach().T.expand(copies, -1, -1).clone().requires_grad_(),
             layer.bias.detach().expand(copies, 1, -1).clone().requires_grad_())
            for layer in make_scorer(n_features, seed=seed) if isinstance(layer, torch.nn.Linear)]


def _stacked_forward(layers, x):
    """Level logits (copies, N, 5) of the stacked scorers for the same feature rows x (N, F)."""
    import torch
    h = x.expand(layers[0][0].shape[0], -1, -1)
    for i, (weight, bias) in enumerate(layers):
        h = torch.baddbmm(bias, h, weight)
        if i < len(layers) - 1:
            h = torch.relu(h)
    return h


def _unstack(layers, copy: int, n_features: int):
    """One copy of the stacked scorers as a ``make_scorer`` module."""
    import torch
    model = make_scorer(n_features)
    linears = [layer for layer in model if isinstance(layer, torch.nn.Linear)]
    with torch.no_grad():
        for linear, (weight, bias) in zip(linears, layers):
            linear.weight.copy_(weight[copy].T)
            linear.bias.copy_(bias[copy, 0])
    return model


def score(logits):
    """The scorer's score: the expectation sum_k softmax(logits)_k c_k, in [1, 5] (torch)."""
    from . import losses
    return losses.predicted_mean_std(logits)[0]


def batch_loss(objective: str, logits_a, logits_b, targets: Targets, a, b, gamma: float | None = None):
    """The loss of one batch of same-data-set pairs (A = rows ``a``, B = rows ``b``) for an objective.

    Absolute objectives (``mse_rescaled``, ``soft_kl``) treat A and B as two single images; the
    fidelity objective only compares them; ``soft_kl_fid`` adds gamma (default ``losses.GAMMA``) times
    both KL terms.
    """
    from . import losses
    gamma = losses.GAMMA if gamma is None else gamma
    ids = [0, 1, 2, 3, 4]
    if objective == "mse_rescaled":
        return 0.5 * (((score(logits_a) - targets.mu[a]) ** 2).mean()
                      + ((score(logits_b) - targets.mu[b]) ** 2).mean())
    kl = losses.level_kl(logits_a, ids, targets.q[a]) + losses.level_kl(logits_b, ids, targets.q[b])
    if objective == "soft_kl":
        return 0.5 * kl
    p = losses.thurstone(targets.signed_mos[a], targets.signed_mos[b], targets.std[a], targets.std[b])
    fid = losses.fidelity(losses.p_hat(logits_a, logits_b, "fixed"), p).mean()
    if objective == "fidelity":
        return fid
    if objective == "soft_kl_fid":
        return fid + gamma * kl
    raise DeqaError(f"unknown objective {objective!r}: use one of {OBJECTIVES}")


def train_scorer(data: ToyData, objective: str, epochs: int = 100, lr: float = 3e-3,
                 batch_size: int = 256, gamma: float | None = None, seed: int = 0,
                 reference: bool | None = None):
    """Train a fresh scorer on the train rows of every trained data set with one of ``OBJECTIVES``.

    Every objective sees the same pairs in the same order (``PairSampler``, seeded by ``seed``);
    only ``batch_loss`` differs. ``reference`` chooses the soft label of the KL objectives (as in
    ``make_targets``; None: the package default). Returns ``(model, history)``: the torch module and
    the mean loss per epoch (``train_objectives`` with this one objective).
    """
    if objective not in OBJECTIVES:
        raise DeqaError(f"unknown objective {objective!r}: use one of {OBJECTIVES}")
    return train_objectives(data, (objective,), epochs=epochs, lr=lr, batch_size=batch_size, gamma=gamma,
                            seed=seed, reference=reference)[objective]


def train_objectives(data: ToyData, objectives=OBJECTIVES, epochs: int = 100, lr: float = 3e-3,
                     batch_size: int = 256, gamma: float | None = None, seed: int = 0,
                     reference: bool | None = None):
    """Train one fresh scorer per objective on the train rows of every trained data set, side by side.

    The scorers (all starting from ``make_scorer(seed=seed)``) are stacked along a first axis and see
    the same pairs in the same order (``PairSampler``, seeded by ``seed``), in batches of
    ``batch_size``: one batched forward, the sum of each copy's ``batch_loss`` (copy m's weights get
    only objective m's gradient), ``backward`` and one Adam step over the stacked weights (Adam works
    elementwise). Each copy so takes the steps it would take trained alone, up to float rounding, at a
    fraction of the cost of separate runs. Returns ``{objective: (model, history)}``: a ``make_scorer``
    module and the mean loss per epoch. Runs on one CPU thread (more only add overhead at this size).
    """
    import torch

    objectives = tuple(objectives)
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or not objectives:
        raise DeqaError(f"unknown objective {unknown[0] if unknown else None!r}: use one of {OBJECTIVES}")
    train = (data.frame["split"] == "train").to_numpy()
    frame = data.frame[train].reset_index(drop=True)
    X = torch.tensor(data.X[train], dtype=torch.float32)
    targets = make_targets(frame, reference=reference)
    layers = _stacked_layers(X.shape[1], len(objectives), seed)
    opt = torch.optim.Adam([t for layer in layers for t in layer], lr=lr)
    sampler = PairSampler(frame["dataset"].to_numpy(), seed=seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    history = np.zeros((epochs, len(objectives)))
    try:
        for epoch in range(epochs):
            idx_a, idx_b = sampler.epoch_pairs(epoch)
            for start in range(0, len(idx_a), batch_size):
                a = torch.as_tensor(idx_a[start:start + batch_size])
                b = torch.as_tensor(idx_b[start:start + batch_size])
                logits = _stacked_forward(layers, torch.cat([X[a], X[b]]))
                parts = torch.stack([batch_loss(o, logits[m, : len(a)], logits[m, len(a):], targets, a, b, gamma)
                                     for m, o in enumerate(objectives)])
                opt.zero_grad()
                parts.sum().backward()
                opt.step()
                history[epoch] += parts.detach().numpy() * len(a)
            history[epoch] /= len(idx_a)
    finally:
        torch.set_num_threads(threads)
    return {o: (_unstack(layers, m, X.shape[1]), history[:, m].tolist()) for m, o in enumerate(objectives)}


def predict(model, X: np.ndarray) -> np.ndarray:
    """Scores (the expectation over the five levels, in [1, 5]) of feature rows X."""
    import torch
    with torch.no_grad():
        return score(model(torch.tensor(X, dtype=torch.float32))).numpy().astype(float)


def evaluate(data: ToyData, scores: np.ndarray) -> dict:
    """SRCC on each set's test rows (the held-out set: all its rows) against that set's quality
    order (a DMOS is negated), and pooled over the trained sets' test rows against the latent
    quality z, the only yardstick common to all sets."""
    frame = data.frame
    s = np.asarray(scores, dtype=float)
    quality = frame["mos"].to_numpy() * quality_sign(frame)
    split = frame["split"].to_numpy()
    out = {}
    for name in frame["dataset"].unique():
        rows = (frame["dataset"].to_numpy() == name) & (split != "train")
        out[name] = float(spearmanr(s[rows], quality[rows]).statistic)
    test = split == "test"
    out[POOLED] = float(spearmanr(s[test], frame["z"].to_numpy()[test]).statistic)
    return out


def run_experiment(data: ToyData, objectives=OBJECTIVES, epochs: int = 100, seed: int = 0,
                   reference: bool | None = None) -> pd.DataFrame:
    """Train one scorer per objective (side by side, ``train_objectives``) and return the SRCC table
    (objectives x test columns)."""
    trained = train_objectives(data, objectives, epochs=epochs, seed=seed, reference=reference)
    return pd.DataFrame({o: evaluate(data, predict(model, data.X)) for o, (model, _) in trained.items()}).T


def run_seeds(scenario="restricted", n_per_set: int = 400, epochs: int = 100, seeds=(0, 1, 2),
              objectives=OBJECTIVES, shift_scale: float = 2.0, reference: bool | None = None) -> pd.DataFrame:
    """``run_experiment`` over several seeds (new data, pairs and initialisation each time); a long
    table with columns seed, objective, test set, srcc. ``shift_scale`` is ``make_toy_sets``'s size of
    the per-data-set nuisance shift (0: the sets cannot be told apart by their features, only by the
    qualities they hold); ``reference`` chooses the soft label (``make_targets``)."""
    parts = []
    for seed in seeds:
        data = make_toy_sets(scenario, n_per_set=n_per_set, shift_scale=shift_scale, seed=seed)
        table = run_experiment(data, objectives, epochs=epochs, seed=seed, reference=reference)
        long = table.rename_axis("objective").reset_index().melt(
            id_vars="objective", var_name="test set", value_name="srcc")
        parts.append(long.assign(seed=seed))
    return pd.concat(parts, ignore_index=True)[["seed", "objective", "test set", "srcc"]]


def paired_difference(results: pd.DataFrame, objective: str, baseline: str, level: float = 0.95) -> pd.DataFrame:
    """Per test set, the mean over seeds of SRCC(objective) - SRCC(baseline) on the same seed, its
    ``level`` Student-t interval half-width, the number of seeds, and how many seeds it was above 0."""
    wide = results.pivot_table(index=["test set", "seed"], columns="objective", values="srcc", sort=False)
    if objective not in wide or baseline not in wide:
        raise DeqaError(f"paired_difference: need both {objective!r} and {baseline!r} in the results")
    rows = {}
    for name, sub in (wide[objective] - wide[baseline]).groupby(level="test set", sort=False):
        d = sub.to_numpy()
        mean, half, n = t_interval(d, level)
        rows[name] = {"mean diff": mean, "t half-width": half, "seeds": n, "wins": int((d > 0).sum())}
    return pd.DataFrame(rows).T.astype({"seeds": int, "wins": int})
