"""The DeQA-Score training losses (torch): the Thurstone pair probability, the fidelity loss, the
KL divergence at the level position, the answer cross-entropy and their sum.
Explained in notebook 03 (``03_fidelity_loss``); the level KL in notebook 02 (``02_soft_labels``).

Nothing here knows about models. The training loop gathers the full-vocabulary logits at the
position that predicts the level token, shape (B, V), and the answer logits/labels for
``answer_ce``; this module turns them into numbers.

Level arrays are ordered bad..excellent with centres 1..5 (see ``deqa.levels``). Inputs in bf16 or
fp16 are computed in float32; float64 stays float64 (the tests check gradients in float64).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import DeqaError
from .levels import CENTERS

EPS_THURSTONE = 1e-8  #: added to sigma_a^2 + sigma_b^2 so that two exact scores give a 0 / 0.5 / 1 target
EPS_FIDELITY = 1e-8  #: inside both square roots of the fidelity loss: finite gradients at 0 and 1
GAMMA = 0.05  #: weight of CE + KL against the fidelity loss in the total
IGNORE_INDEX = -100  #: label value that ``answer_ce`` skips



def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other dtype (bf16, fp16, fp32, ints) is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _tensor(x, like: torch.Tensor | None = None, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    else:
        t = torch.as_tensor(x)
    if like is not None:
        t = t.to(device=like.device)
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.to(torch.float32)
    return t


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x), the standard normal CDF, written with erfc so that the lower tail stays accurate."""
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


def _thurstone_from_var(mu_a, mu_b, var_a, var_b) -> torch.Tensor:
    return normal_cdf((mu_a - mu_b) / torch.sqrt(var_a + var_b + EPS_THURSTONE))


def thurstone(mu_a, mu_b, sigma_a, sigma_b) -> torch.Tensor:
    """Thurstone's probability that A is better than B.

        P = Phi((mu_a - mu_b) / sqrt(sigma_a^2 + sigma_b^2 + 1e-8))

    Scale-free: multiplying every score and std by the same factor (and shifting the scores)
    leaves P unchanged, so native MOS and MOS rescaled to [1, 5] give the same target. For a
    lower-is-better score (DMOS), negate it (or swap A and B) first.

    Missing std (NaN, data sets published without it) counts as 0: an exact score. Two exact
    scores then give a hard target, P = 1 (mu_a > mu_b), 0 (mu_a < mu_b) or 0.5 (tie); one exact
    and one uncertain score use the uncertain one's sigma alone. Explained in notebook 03.
    """
    mu_a, mu_b = _tensor(mu_a), _tensor(mu_b)
    dtype = torch.promote_types(_compute_dtype(mu_a), _compute_dtype(mu_b))
    mu_a, mu_b = mu_a.to(dtype), mu_b.to(device=mu_a.device, dtype=dtype)
    sigma_a = _tensor(sigma_a, like=mu_a, dtype=dtype)
    sigma_b = _tensor(sigma_b, like=mu_a, dtype=dtype)
    sigma_a = torch.where(torch.isnan(sigma_a), torch.zeros_like(sigma_a), sigma_a)
    sigma_b = torch.where(torch.isnan(sigma_b), torch.zeros_like(sigma_b), sigma_b)
    return _thurstone_from_var(mu_a, mu_b, sigma_a * sigma_a, sigma_b * sigma_b)


def fidelity(p_hat, p) -> torch.Tensor:
    """Fidelity loss per pair between the predicted and the target probability that A beats B.

        L_fid = 1 - sqrt(p_hat p + 1e-8) - sqrt((1 - p_hat)(1 - p) + 1e-8)

    It is 1 minus the Bhattacharyya coefficient of the two Bernoulli distributions, so it stays in
    [about -1e-4, 1] (the eps shifts the minimum a hair below 0). The eps keeps the gradient finite
    when p_hat or p is exactly 0 or 1 (at most about 1 / (2 sqrt(1e-8)) = 5000 in size), where
    binary cross-entropy would be infinite. Returns one value per pair (no reduction).
    Explained in notebook 03.
    """
    p_hat = _tensor(p_hat)
    p_hat = p_hat.to(_compute_dtype(p_hat))
    p = _tensor(p, like=p_hat, dtype=p_hat.dtype)
    return (1.0 - torch.sqrt(p_hat * p + EPS_FIDELITY)
            - torch.sqrt((1.0 - p_hat) * (1.0 - p) + EPS_FIDELITY))


def level_probs(level_logits_5: torch.Tensor) -> torch.Tensor:
    """Softmax over the five level logits (last axis, bad..excellent): p_k = exp(z_k) / sum_j exp(z_j).
    Explained in notebook 03."""
    z = _tensor(level_logits_5)
    _check_five(z, "level_logits_5")
    return torch.softmax(z.to(_compute_dtype(z)), dim=-1)


def _mean_var(level_logits_5: torch.Tensor):
    p = level_probs(level_logits_5)
    c = torch.tensor(CENTERS, dtype=p.dtype, device=p.device)
    mu = (p * c).sum(-1)
    var = (p * (c - mu.unsqueeze(-1)) ** 2).sum(-1)
    return mu, var


def predicted_mean_std(level_logits_5: torch.Tensor):
    """Predicted score and spread from five level logits.

        p = softmax(z),  mu_hat = sum_k p_k c_k,  sigma_hat = sqrt(sum_k p_k (c_k - mu_hat)^2),  c = 1..5

    Returns ``(mu_hat, sigma_hat)``, each of shape ``level_logits_5.shape[:-1]``.
    Explained in notebook 03.
    """
    mu, var = _mean_var(level_logits_5)
    return mu, torch.sqrt(var)


def p_hat(logits5_a, logits5_b, variant: str = "fixed", detach_sigma: bool = False) -> torch.Tensor:
    """Predicted probability that A is better than B, from the five level logits of each image.

    ``fixed`` (the reference code's default): every sigma is 1,
        P_hat = Phi((mu_hat_a - mu_hat_b) / sqrt(2)).
    ``predicted`` (as the paper writes it): the predicted spreads,
        P_hat = Phi((mu_hat_a - mu_hat_b) / sqrt(sigma_hat_a^2 + sigma_hat_b^2 + 1e-8)),
    with ``detach_sigma=True`` stopping the gradient through sigma_hat (the model then cannot
    lower the loss by inflating its spread). Explained in notebook 03.
    """
    mu_a, var_a = _mean_var(logits5_a)
    mu_b, var_b = _mean_var(logits5_b)
    if variant == "fixed":
        return normal_cdf((mu_a - mu_b) / math.sqrt(2.0))
    if variant == "predicted":
        if detach_sigma:
            var_a, var_b = var_a.detach(), var_b.detach()
        # the variances go in directly: sqrt then square would give 0 * inf gradients at sigma = 0
        return _thurstone_from_var(mu_a, mu_b, var_a, var_b)
    raise DeqaError(f"p_hat: variant must be 'fixed' or 'predicted', got {variant!r}")


def level_kl(logits, level_ids, target, closed_set: bool = False) -> torch.Tensor:
    """Batch mean of KL(target || softmax(logits)) at the position that predicts the level token.

        KL = sum_k q_k (log q_k - log p_k),   log p = log_softmax(z)   (0 log 0 = 0)

    ``logits`` (B, V): full-vocabulary logits at that position; ``level_ids``: the five vocabulary
    ids of bad..excellent; ``target`` (B, 5): the soft label q on those ids (every other token has
    target 0 and drops out of the sum). The softmax runs over the whole vocabulary, so mass the
    model puts on other tokens is penalised; ``closed_set=True`` takes it over the five level
    logits only. log_softmax is used rather than log(softmax), which underflows to -inf in bf16;
    bf16/fp16 logits are computed in float32. A target row that does not sum to 1 (the reference
    labels can sum to about 1.07) is used as given. Explained in notebook 02 (section 6).
    """
    z = _tensor(logits)
    if z.ndim != 2:
        raise DeqaError(f"level_kl: logits must be (B, V), got shape {tuple(z.shape)}")
    ids = _level_ids(level_ids, z.shape[1])
    dtype = _compute_dtype(z)
    z = z.to(dtype)
    q = _tensor(target, like=z, dtype=dtype)
    if q.shape != (z.shape[0], 5):
        raise DeqaError(f"level_kl: target must be ({z.shape[0]}, 5), got shape {tuple(q.shape)}")
    if closed_set:
        log_p = torch.log_softmax(z[:, ids], dim=-1)
    else:
        log_p = torch.log_softmax(z, dim=-1)[:, ids]
    kl = (torch.xlogy(q, q) - q * log_p).sum(-1)
    return kl.mean()


def answer_ce(logits, labels) -> torch.Tensor:
    """Token cross-entropy on the other answer tokens, mean over the tokens that count.

        CE = - (1 / N) sum_{t: label_t != -100} log softmax(logits_t)[label_t]

    ``logits`` (B, T, V) and ``labels`` (B, T) are already aligned: logits[:, t] predicts
    labels[:, t] (the caller shifts by one). The caller sets to -100 the prompt, the padding and
    the level position (the level token is trained by ``level_kl`` instead). When no token counts,
    it returns a zero that still carries the graph (so ``backward`` works). Explained in notebook 03.
    """
    z = _tensor(logits)
    y = torch.as_tensor(labels, device=z.device)
    if z.ndim != 3 or y.shape != z.shape[:2]:
        raise DeqaError(f"answer_ce: expected logits (B, T, V) and labels (B, T), "
                        f"got {tuple(z.shape)} and {tuple(y.shape)}")
    z = z.to(_compute_dtype(z))
    y = y.long()
    n = (y != IGNORE_INDEX).sum()
    if int(n) == 0:
        return z.sum() * 0.0
    total = F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1),
                            ignore_index=IGNORE_INDEX, reduction="sum")
    return total / n


@dataclass(frozen=True)
class LossSettings:
    """The knobs of ``deqa_loss`` as one value, so that a training step takes the loss settings and
    nothing else of a run's configuration. Its defaults are the published recipe's."""

    gamma: float = GAMMA
    p_hat_variant: str = "fixed"  # "fixed" (sigma = 1, the reference code) | "predicted" (the paper)
    detach_sigma: bool = False
    use_fidelity: bool = True
    use_kl: bool = True
    closed_set: bool = False


def deqa_loss(level_logits_a, level_logits_b, target_a, target_b, mos_a, std_a, mos_b, std_b,
              level_ids, ce_a=None, ce_b=None, gamma: float = GAMMA, p_hat_variant: str = "fixed",
              detach_sigma: bool = False, use_fidelity: bool = True, use_kl: bool = True,
              closed_set: bool = False) -> dict:
    """The DeQA-Score objective for a batch of same-data-set pairs (A, B).

        L = L_fid + gamma (CE_A + KL_A + CE_B + KL_B),   gamma = 0.05

    L_fid is the batch mean of ``fidelity(P_hat, P)``: P = ``thurstone`` of the human MOS and std
    (native scale is fine: P is scale-free; a DMOS must be negated by the caller), P_hat =
    ``p_hat`` of the five level logits (``p_hat_variant``, ``detach_sigma``). KL_A / KL_B are
    ``level_kl`` of the full-vocabulary level logits (B, V) against the soft labels (B, 5);
    CE_A / CE_B are ``answer_ce`` values computed by the caller (None counts as 0).

    ``use_fidelity=False`` gives the single-image objective L = CE_A + KL_A + CE_B + KL_B, with no
    gamma (scaling the whole loss by gamma would only rescale the learning rate).
    ``use_kl=False`` drops the KL terms from L (the CE-only ablation). Terms left out of L are
    still returned, detached, for logging. Returns a dict of tensors: loss, fid, kl_a, kl_b,
    ce_a, ce_b. Explained in notebook 03.
    """
    za = _tensor(level_logits_a)
    zb = _tensor(level_logits_b)
    if za.ndim != 2 or zb.shape != za.shape:
        raise DeqaError(f"deqa_loss: level logits must both be (B, V), "
                        f"got {tuple(za.shape)} and {tuple(zb.shape)}")
    ids = _level_ids(level_ids, za.shape[1])
    dtype = _compute_dtype(za)
    kl_a = level_kl(za, ids, target_a, closed_set=closed_set)
    kl_b = level_kl(zb, ids, target_b, closed_set=closed_set)
    zero = za.sum().to(dtype) * 0.0
    ce_a = zero if ce_a is None else _tensor(ce_a, like=za).to(dtype)
    ce_b = zero if ce_b is None else _tensor(ce_b, like=za).to(dtype)

    five_a, five_b = za[:, ids].to(dtype), zb[:, ids].to(dtype)
    with torch.no_grad():
        target_p = thurstone(_tensor(mos_a, like=za, dtype=torch.float64),
                             _tensor(mos_b, like=za, dtype=torch.float64),
                             _tensor(std_a, like=za, dtype=torch.float64),
                             _tensor(std_b, like=za, dtype=torch.float64)).to(dtype)
    if target_p.shape != (za.shape[0],):
        raise DeqaError(f"deqa_loss: mos/std must have one value per pair ({za.shape[0]}), "
                        f"got shape {tuple(target_p.shape)}")
    pred_p = p_hat(five_a, five_b, variant=p_hat_variant, detach_sigma=detach_sigma)
    fid = fidelity(pred_p, target_p).mean()

    kl_sum = kl_a + kl_b if use_kl else zero
    single = ce_a + ce_b + kl_sum
    loss = fid + gamma * single if use_fidelity else single
    return {
        "loss": loss,
        "fid": fid if use_fidelity else fid.detach(),
        "kl_a": kl_a if use_kl else kl_a.detach(),
        "kl_b": kl_b if use_kl else kl_b.detach(),
        "ce_a": ce_a,
        "ce_b": ce_b,
    }


def _level_ids(level_ids, vocab_size: int) -> list[int]:
    ids = [int(i) for i in (level_ids.tolist() if hasattr(level_ids, "tolist") else level_ids)]
    if len(ids) != 5 or len(set(ids)) != 5:
        raise DeqaError(f"level_ids must be five distinct vocabulary ids (bad..excellent), got {ids}")
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise DeqaError(f"level id {bad[0]} is outside the vocabulary of size {vocab_size}")
    return ids


def _check_five(z: torch.Tensor, name: str) -> None:
    if z.shape[-1:] != (5,):
        raise DeqaError(f"{name}: expected a last axis of 5 level logits, got shape {tuple(z.shape)}")
