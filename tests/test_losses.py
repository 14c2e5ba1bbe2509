"""deqa.losses against independent numpy/scipy formulas, gradients, and the composed objective."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax as np_log_softmax
from scipy.special import softmax as np_softmax
from scipy.stats import norm

from deqa import losses as L
from deqa.errors import DeqaError

RNG = np.random.default_rng(1234)
C = np.arange(1.0, 6.0)
T64 = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731


# ---------- independent references (numpy / scipy only) ----------

def ref_thurstone(ma, mb, sa, sb):
    return norm.cdf((ma - mb) / np.sqrt(sa**2 + sb**2 + 1e-8))


def ref_fidelity(ph, p):
    return 1 - np.sqrt(ph * p + 1e-8) - np.sqrt((1 - ph) * (1 - p) + 1e-8)


def ref_mean_std(z5):
    p = np_softmax(z5, axis=-1)
    m = (p * C).sum(-1)
    return m, np.sqrt((p * (C - m[:, None]) ** 2).sum(-1))


def ref_kl(z, ids, q, closed):
    logp = np_log_softmax(z[:, ids], axis=-1) if closed else np_log_softmax(z, axis=-1)[:, ids]
    with np.errstate(divide="ignore", invalid="ignore"):
        qlogq = np.where(q > 0, q * np.log(q), 0.0)
    return np.mean((qlogq - q * logp).sum(-1))


def random_soft_targets(b, zero_fraction=0.3):
    q = RNG.random((b, 5)) * (RNG.random((b, 5)) > zero_fraction)
    q[:, 2] += 1e-3  # every row keeps some mass
    return q / q.sum(1, keepdims=True)


# ---------- values against references ----------

def test_thurstone_matches_reference_on_random_inputs():
    n = 5000
    ma, mb = RNG.uniform(-3, 8, n), RNG.uniform(-3, 8, n)
    sa, sb = RNG.uniform(0, 2, n), RNG.uniform(0, 2, n)
    got = L.thurstone(T64(ma), T64(mb), T64(sa), T64(sb)).numpy()
    np.testing.assert_allclose(got, ref_thurstone(ma, mb, sa, sb), rtol=0, atol=1e-7)


def test_thurstone_is_scale_free_and_handles_missing_std():
    ma, mb, sa, sb = T64([3.2]), T64([2.8]), T64([0.6]), T64([0.8])
    p = float(L.thurstone(ma, mb, sa, sb))
    assert p == pytest.approx(norm.cdf(0.4 / 1.0), abs=1e-7)  # sqrt(0.36 + 0.64) = 1
    # native 0-100 scale: 25 * (mos - 1), 25 * std gives the same P
    assert float(L.thurstone(25 * (ma - 1), 25 * (mb - 1), 25 * sa, 25 * sb)) == pytest.approx(p, abs=1e-7)
    nan = float("nan")
    hard = L.thurstone(T64([3.0, 2.0, 2.5]), T64([2.0, 3.0, 2.5]), T64([nan] * 3), T64([nan] * 3))
    np.testing.assert_allclose(hard.numpy(), [1.0, 0.0, 0.5], atol=1e-12)
    one_missing = float(L.thurstone(T64([3.0]), T64([2.0]), T64([nan]), T64([0.5])))
    assert one_missing == pytest.approx(norm.cdf(1.0 / 0.5), abs=1e-7)


def test_fidelity_matches_reference_on_random_inputs():
    n = 5000
    ph, p = RNG.random(n), RNG.random(n)
    ph[:50], p[50:100] = RNG.integers(0, 2, 50), RNG.integers(0, 2, 50)  # exact 0 / 1 too
    got = L.fidelity(T64(ph), T64(p)).numpy()
    np.testing.assert_allclose(got, ref_fidelity(ph, p), rtol=0, atol=1e-7)
    assert got.max() <= 1.0 and got.min() > -2e-4  # bounded (eps shifts the minimum below 0)


def test_fidelity_gradient_finite_at_zero_and_one():
    for ph_val in (0.0, 1.0):
        for p_val in (0.0, 0.3, 1.0):
            ph = torch.tensor(ph_val, dtype=torch.float64, requires_grad=True)
            p = torch.tensor(p_val, dtype=torch.float64, requires_grad=True)
            L.fidelity(ph, p).backward()
            assert torch.isfinite(ph.grad) and torch.isfinite(p.grad), (ph_val, p_val)
    # the worst case: p = 1, p_hat = 0 gives -1 / (2 sqrt(1e-8)) = -5000, large but finite
    ph = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    L.fidelity(ph, torch.tensor(1.0, dtype=torch.float64)).backward()
    assert float(ph.grad) == pytest.approx(-0.5 / np.sqrt(1e-8) + 0.0, rel=1e-6)


def test_level_probs_and_predicted_mean_std():
    z5 = RNG.normal(scale=3, size=(3000, 5))
    p = L.level_probs(T64(z5)).numpy()
    np.testing.assert_allclose(p, np_softmax(z5, axis=-1), atol=1e-12)
    m, s = L.predicted_mean_std(T64(z5))
    rm, rs = ref_mean_std(z5)
    np.testing.assert_allclose(m.numpy(), rm, atol=1e-7)
    np.testing.assert_allclose(s.numpy(), rs, atol=1e-7)
    # a near one-hot on "good" gives score 4 and spread 0
    m1, s1 = L.predicted_mean_std(T64([[0, 0, 0, 60, 0]]))
    assert float(m1) == pytest.approx(4.0, abs=1e-9) and float(s1) < 1e-9


def test_p_hat_variants_match_reference():
    za, zb = RNG.normal(scale=2, size=(3000, 5)), RNG.normal(scale=2, size=(3000, 5))
    (ma, sa), (mb, sb) = ref_mean_std(za), ref_mean_std(zb)
    fixed = L.p_hat(T64(za), T64(zb), "fixed").numpy()
    np.testing.assert_allclose(fixed, norm.cdf((ma - mb) / np.sqrt(2)), atol=1e-7)
    pred = L.p_hat(T64(za), T64(zb), "predicted").numpy()
    np.testing.assert_allclose(pred, ref_thurstone(ma, mb, sa, sb), atol=1e-7)
    with pytest.raises(DeqaError, match="variant"):
        L.p_hat(T64(za), T64(zb), "learned")


def test_p_hat_detach_sigma_changes_only_the_gradient():
    za = T64(RNG.normal(size=(4, 5))).requires_grad_()
    zb = T64(RNG.normal(size=(4, 5)))
    g = []
    for detach in (False, True):
        za.grad = None
        out = L.p_hat(za, zb, "predicted", detach_sigma=detach)
        out.sum().backward()
        g.append((out.detach().clone(), za.grad.clone()))
    torch.testing.assert_close(g[0][0], g[1][0])
    assert not torch.allclose(g[0][1], g[1][1])


@pytest.mark.parametrize("closed", [False, True])
def test_level_kl_equals_hand_computed_kl(closed):
    b, v = 400, 97
    ids = [11, 3, 50, 96, 20]
    z = RNG.normal(scale=4, size=(b, v))
    q = random_soft_targets(b)
    got = float(L.level_kl(T64(z), ids, T64(q), closed_set=closed))
    assert got == pytest.approx(ref_kl(z, ids, q, closed), abs=1e-6)
    # the same in float32 input and from a torch list of ids
    got32 = float(L.level_kl(torch.tensor(z, dtype=torch.float32), torch.tensor(ids), q, closed_set=closed))
    assert got32 == pytest.approx(ref_kl(z, ids, q, closed), abs=1e-4)


def test_level_kl_full_vocab_penalises_mass_elsewhere():
    ids = [0, 1, 2, 3, 4]
    q = np.array([[0.0, 0.1, 0.6, 0.3, 0.0]])
    z = np.full((1, 10), -50.0)
    z[0, :5] = np.log(q[0] + 1e-30)
    z_leak = z.copy()
    z_leak[0, 7] = np.log(1.0)  # a non-level token takes half of the mass (~1 vs 1)
    closed = float(L.level_kl(T64(z_leak), ids, T64(q), closed_set=True))
    full = float(L.level_kl(T64(z_leak), ids, T64(q)))
    assert closed == pytest.approx(0.0, abs=1e-9)
    assert full == pytest.approx(np.log(2.0), abs=1e-9)  # every level prob halved


def test_level_kl_bf16_is_finite_where_log_of_softmax_underflows():
    ids = [5, 6, 7, 8, 9]
    q = torch.tensor([[0.05, 0.15, 0.5, 0.25, 0.05]])
    z = torch.zeros(1, 32000)
    z[0, 0] = 120.0  # all mass on another token: softmax of the level ids underflows to 0 in bf16
    z[0, ids] = torch.tensor([1.0, 2.0, 3.0, 2.5, 1.0])
    naive = torch.log(torch.softmax(z.bfloat16(), -1))[:, ids]
    assert torch.isinf(naive).any()
    kl = L.level_kl(z.bfloat16(), ids, q)
    assert kl.dtype == torch.float32 and torch.isfinite(kl)
    ref = ref_kl(z.double().numpy(), ids, q.double().numpy(), closed=False)
    assert float(kl) == pytest.approx(ref, rel=1e-2)


def test_level_kl_rejects_bad_input():
    z = torch.zeros(2, 10)
    with pytest.raises(DeqaError, match="five distinct"):
        L.level_kl(z, [1, 2, 3, 3, 4], torch.full((2, 5), 0.2))
    with pytest.raises(DeqaError, match="outside the vocabulary"):
        L.level_kl(z, [1, 2, 3, 4, 10], torch.full((2, 5), 0.2))
    with pytest.raises(DeqaError, match="target"):
        L.level_kl(z, [1, 2, 3, 4, 5], torch.full((3, 5), 0.2))


def test_gradcheck_thurstone_fidelity_level_kl():
    ma, mb = T64(RNG.normal(size=6)).requires_grad_(), T64(RNG.normal(size=6)).requires_grad_()
    sa, sb = T64(RNG.uniform(0.2, 1, 6)).requires_grad_(), T64(RNG.uniform(0.2, 1, 6)).requires_grad_()
    assert torch.autograd.gradcheck(L.thurstone, (ma, mb, sa, sb))
    ph, p = T64(RNG.uniform(0.05, 0.95, 6)).requires_grad_(), T64(RNG.uniform(0.05, 0.95, 6)).requires_grad_()
    assert torch.autograd.gradcheck(L.fidelity, (ph, p))
    z = T64(RNG.normal(size=(3, 12))).requires_grad_()
    q = T64(random_soft_targets(3, zero_fraction=0.0)).requires_grad_()
    ids = [2, 0, 7, 9, 4]
    assert torch.autograd.gradcheck(lambda z_, q_: L.level_kl(z_, ids, q_), (z, q))
    assert torch.autograd.gradcheck(lambda z_, q_: L.level_kl(z_, ids, q_, closed_set=True), (z, q))
    za, zb = T64(RNG.normal(size=(3, 5))).requires_grad_(), T64(RNG.normal(size=(3, 5))).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: L.p_hat(a, b, "predicted"), (za, zb))


def test_answer_ce_matches_hand_computation_and_ignores_masked():
    b, t, v = 3, 6, 11
    z = RNG.normal(size=(b, t, v))
    y = RNG.integers(0, v, size=(b, t))
    y[:, :2] = -100  # prompt
    y[1, 4] = -100   # level position
    keep = y != -100
    logp = np_log_softmax(z, axis=-1)
    ref = -np.mean(np.take_along_axis(logp, np.where(keep, y, 0)[..., None], -1)[..., 0][keep])
    assert float(L.answer_ce(T64(z), torch.tensor(y))) == pytest.approx(ref, abs=1e-10)
    zg = T64(z).requires_grad_()
    empty = L.answer_ce(zg, torch.full((b, t), -100))
    assert float(empty.detach()) == 0.0
    empty.backward()
    assert torch.all(zg.grad == 0)


def make_batch(b=8, v=40, dtype=torch.float64):
    ids = [31, 32, 33, 34, 35]
    za = torch.tensor(RNG.normal(size=(b, v)), dtype=dtype)
    zb = torch.tensor(RNG.normal(size=(b, v)), dtype=dtype)
    qa, qb = random_soft_targets(b), random_soft_targets(b)
    mos_a, mos_b = RNG.uniform(0, 100, b), RNG.uniform(0, 100, b)
    std_a, std_b = RNG.uniform(5, 15, b), RNG.uniform(5, 15, b)
    return za, zb, qa, qb, mos_a, std_a, mos_b, std_b, ids


def test_deqa_loss_composition_matches_hand_sum():
    za, zb, qa, qb, mos_a, std_a, mos_b, std_b, ids = make_batch()
    ce_a, ce_b = T64(0.7), T64(1.3)
    out = L.deqa_loss(za, zb, T64(qa), T64(qb), mos_a, std_a, mos_b, std_b, ids, ce_a=ce_a, ce_b=ce_b)
    assert set(out) == {"loss", "fid", "kl_a", "kl_b", "ce_a", "ce_b"}
    kl_a, kl_b = ref_kl(za.numpy(), ids, qa, False), ref_kl(zb.numpy(), ids, qb, False)
    (ma, _), (mb, _) = ref_mean_std(za.numpy()[:, ids]), ref_mean_std(zb.numpy()[:, ids])
    fid = ref_fidelity(norm.cdf((ma - mb) / np.sqrt(2)), ref_thurstone(mos_a, mos_b, std_a, std_b)).mean()
    assert float(out["kl_a"]) == pytest.approx(kl_a, abs=1e-9)
    assert float(out["kl_b"]) == pytest.approx(kl_b, abs=1e-9)
    assert float(out["fid"]) == pytest.approx(fid, abs=1e-9)
    assert float(out["loss"]) == pytest.approx(fid + 0.05 * (0.7 + kl_a + 1.3 + kl_b), abs=1e-9)
    single = L.deqa_loss(za, zb, T64(qa), T64(qb), mos_a, std_a, mos_b, std_b, ids, ce_a=ce_a,
                         ce_b=ce_b, use_fidelity=False)
    assert float(single["loss"]) == pytest.approx(0.7 + kl_a + 1.3 + kl_b, abs=1e-9)
    no_kl = L.deqa_loss(za, zb, T64(qa), T64(qb), mos_a, std_a, mos_b, std_b, ids, ce_a=ce_a, ce_b=ce_b,
                        use_kl=False, gamma=0.1)
    assert float(no_kl["loss"]) == pytest.approx(fid + 0.1 * 2.0, abs=1e-9)
    assert float(no_kl["kl_a"]) == pytest.approx(kl_a, abs=1e-9)  # still reported
    no_ce = L.deqa_loss(za, zb, T64(qa), T64(qb), mos_a, std_a, mos_b, std_b, ids)
    assert float(no_ce["loss"]) == pytest.approx(fid + 0.05 * (kl_a + kl_b), abs=1e-9)


def test_deqa_loss_predicted_variant_closed_set_and_bf16_backward():
    za, zb, qa, qb, mos_a, std_a, mos_b, std_b, ids = make_batch(dtype=torch.float64)
    out = L.deqa_loss(za, zb, T64(qa), T64(qb), mos_a, std_a, mos_b, std_b, ids,
                      p_hat_variant="predicted", closed_set=True)
    (ma, sa), (mb, sb) = ref_mean_std(za.numpy()[:, ids]), ref_mean_std(zb.numpy()[:, ids])
    fid = ref_fidelity(ref_thurstone(ma, mb, sa, sb), ref_thurstone(mos_a, mos_b, std_a, std_b)).mean()
    kl = ref_kl(za.numpy(), ids, qa, True) + ref_kl(zb.numpy(), ids, qb, True)
    assert float(out["loss"]) == pytest.approx(fid + 0.05 * kl, abs=1e-9)
    # bf16 logits: loss in float32, gradients reach the bf16 leaves and are finite
    a16 = za.bfloat16().requires_grad_()
    b16 = zb.bfloat16().requires_grad_()
    out16 = L.deqa_loss(a16, b16, qa, qb, mos_a, np.full(8, np.nan), mos_b, std_b, ids)
    assert out16["loss"].dtype == torch.float32
    out16["loss"].backward()
    assert torch.isfinite(a16.grad.float()).all() and a16.grad.abs().sum() > 0


def test_fidelity_pushes_scores_apart_in_the_right_direction():
    # A is better than B (P ~ 1) but the model scores them equally: a step must raise mu_A over mu_B
    v, ids = 10, [0, 1, 2, 3, 4]
    za = torch.zeros(1, v, dtype=torch.float64, requires_grad=True)
    zb = torch.zeros(1, v, dtype=torch.float64, requires_grad=True)
    q = T64([[0.2] * 5])
    out = L.deqa_loss(za, zb, q, q, [80.0], [5.0], [20.0], [5.0], ids)
    out["fid"].backward()
    good_minus_bad = za.grad[0, 4] - za.grad[0, 0]
    assert good_minus_bad < 0  # descending raises "excellent" relative to "bad" for A
    assert zb.grad[0, 4] - zb.grad[0, 0] > 0
