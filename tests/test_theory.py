"""The closed forms behind the chapter on the paper's theorems (Theorem 5.1, Theorem A.3) and their bounds."""

import itertools
import math

import numpy as np
import pytest
import torch

from miue import theory as th
from miue.estimators import gaussian_mi, ksg_mi


def one_d_model(a=0.8, noise=0.36):
    return th.feature_model([[0.0]], [[1.0]], [[a]], None, [[noise]])


def random_model(rng, split=0.0):
    d, c = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    noise = float(np.exp(rng.uniform(math.log(0.01), math.log(2.0))))
    return th.make_model(d=d, n_classes=c, shift=float(rng.uniform(0, 4)), sigma_scale=noise * rng.uniform(1.2, 20),
                         noise=noise, spread=(1.0, 3.0), split=split, seed=int(rng.integers(1 << 30)))


def test_closed_form_matches_gaussian_mi_in_one_dimension():
    for a, noise in [(0.8, 0.36), (2.0, 0.1), (0.1, 5.0)]:
        rho = a / math.sqrt(a * a + noise)
        assert th.conditional_mi(one_d_model(a, noise)) == pytest.approx(gaussian_mi(rho), abs=1e-12)
        assert th.gaussian_pair_mi([[1.0]], [[a * a + noise]], [[a]]) == pytest.approx(gaussian_mi(rho), abs=1e-12)
    # Lemma B.1 in d dimensions
    cov = np.diag([0.5, 2.0, 3.0])
    assert th.gaussian_entropy(cov) == pytest.approx(1.5 * math.log(2 * math.pi * math.e) + 0.5 * math.log(3.0))


def test_monte_carlo_and_ksg_agree_with_the_closed_form():
    model = th.make_model(d=3, n_classes=3, shift=2.0, noise=0.2, seed=1)
    exact = th.conditional_mi(model)
    est, se = th.mc_mi(model, n=20000, seed=0, conditional=True)  # se ≈ 0.01 nats at n = 20,000
    assert se < 0.02 and abs(est - exact) < 4 * se, (est, se, exact)
    lo, hi = th.mi_bounds(model)
    est_u, se_u = th.mc_mi(model, n=20000, seed=0)
    assert lo - 4 * se_u <= est_u <= hi + 4 * se_u
    # KSG (k = 3) on 5,000 one-dimensional pairs: within 0.05 nats of −½ log(1 − ρ²) = 0.51
    m1 = one_d_model()
    z, zp, _ = m1.sample(5000, seed=3)
    assert abs(ksg_mi(torch.tensor(z), torch.tensor(zp)).item() - th.conditional_mi(m1)) < 0.05


def test_sliced_truth_matches_closed_form_per_direction():
    model = th.make_model(d=1, n_classes=2, shift=1.0, noise=0.3, seed=2)
    val, se = th.sliced_gaussian_mi(model, n_directions=100)
    assert se < 1e-9 and val == pytest.approx(th.conditional_mi(model), rel=1e-9)  # d = 1: every slice is ±1


def test_bounds_hold_across_random_parameter_draws():
    rng = np.random.default_rng(0)
    for _ in range(25):
        model = random_model(rng)
        t = th.theorem_5_1(model)
        i_cond = th.conditional_mi(model)
        assert t.as_proved == pytest.approx(i_cond, abs=1e-9)  # equality for Gaussian classes
        assert t.as_proved >= i_cond - 1e-9
        i_u, se = th.mc_mi(model, n=3000, seed=1)
        assert t.corrected >= i_u - 4 * se - 1e-6
        # the statement's +H(Z'|Z) bounds the conditional MI exactly when H(Z'|Z) >= 0
        assert (t.as_stated >= i_cond - 1e-9) == (t.cond_entropy >= -1e-12)
    for _ in range(4):  # non-Gaussian classes: Gaussian maximum entropy keeps the bound without an ε term
        model = random_model(rng, split=float(rng.uniform(0.5, 2.0)))
        est, se = th.mc_mi(model, n=4000, seed=2, conditional=True)
        assert th.theorem_5_1(model).as_proved >= est - 4 * se


def test_shrinking_sigma_lowers_bound_and_mi_monotonically():
    model = th.make_model(d=4, n_classes=3, shift=2.0, sigma_scale=1.0, noise=0.1, seed=3)
    scales = [1.0, 0.7, 0.5, 0.3, 0.15, 0.1]
    mis = [th.conditional_mi(model.scaled(s)) for s in scales]
    stated = [th.theorem_5_1(model.scaled(s)).as_stated for s in scales]
    proved = [th.theorem_5_1(model.scaled(s)).as_proved for s in scales]
    for seq in (mis, stated, proved):
        assert all(b < a for a, b in itertools.pairwise(seq)), seq
    # each halving of Σ_Y removes exactly d/2·log 2 of MI when H(Z'|Z) is held fixed
    assert mis[0] - th.conditional_mi(model.scaled(0.5)) == pytest.approx(2 * math.log(2))
    # rescaling the poisoned features also shrinks Σ_Y, but leaves every MI unchanged
    r = model.rescaled_features(0.1)
    assert th.conditional_mi(r) == pytest.approx(mis[0])
    assert th.theorem_5_1(model).as_stated - th.theorem_5_1(r).as_stated == pytest.approx(4 * math.log(10))


def test_epsilon_term_and_c_y():
    assert th.c_y(0.0, 1.0) == math.inf  # any density on all of R^d
    assert th.c_y(0.5, 2.0) == pytest.approx(math.sqrt(2) * math.log(2) + 1)
    model = th.make_model(d=2, n_classes=2, seed=0, split=1.5)
    eps, se = th.kl_gaussian_to_class(model, n=4000)
    assert (eps > 4 * se).all()
    assert th.theorem_5_1(model, eps=float(eps.max())).eps_term == math.inf
    assert th.theorem_5_1(model, eps=0.1, density_range=(0.5, 2.0)).eps_term == pytest.approx(
        th.c_y(0.5, 2.0) * math.sqrt(0.1))


def test_theorem_a3_risks_and_counterexample():
    s = th.shortcut_setting(d=2, separation=1.0, shortcut=2.0, clean_var=1.0, noise_var=0.5)
    # closed-form 0–1 risk against the empirical error of the same classifier
    w, c = s.classifier()
    z, zp, y = s.model().sample(40000, seed=0)
    for on, x in (("clean", z), ("poisoned", zp)):
        emp = float(((x @ w + c > 0).astype(int) != y).mean())
        assert abs(emp - s.risk(on)) < 0.01, (on, emp, s.risk(on))
    assert s.det_condition()  # 0.5² ≥ (2/(πe))²
    mi, se = th.mc_mi(s.model(), n=20000)
    res = th.theorem_a3(s, mi - 4 * se, hdh=2.0)  # the most favourable MI and divergence for the bound
    assert res["rhs"] < 0 <= res["risk_clean"] and not res["holds"]
    weak = th.shortcut_setting(d=2, separation=1.0, shortcut=2.0, noise_var=50.0)
    assert th.theorem_a3(weak, th.mc_mi(weak.model(), n=5000)[0], hdh=0.0)["vacuous"]
    small = th.shortcut_setting(d=2, noise_var=0.01)
    assert not small.det_condition()
    ks = small.key_step()
    assert ks["I(Z;Z′|Y)"] > ks["H((Z+Z′)/2|Y)"]  # the proof's key step fails when Σ_2 is small
    ks = s.key_step()
    assert ks["I(Z;Z′|Y)"] <= ks["H((Z+Z′)/2|Y), proof covariance"] <= ks["H((Z+Z′)/2|Y)"]


def test_bad_input_is_rejected_with_one_clear_message():
    with pytest.raises(ValueError, match=r"clean_covs\[0\] must be positive definite"):
        th.feature_model([[0.0, 0.0]], [[1.0, 0.0], [0.0, -1.0]])
    with pytest.raises(ValueError, match=r"noise_covs\[1\] must be symmetric"):
        th.feature_model(np.zeros((2, 2)), noise_covs=[np.eye(2), [[1.0, 0.5], [0.0, 1.0]]])
    with pytest.raises(ValueError, match=r"clean_covs has shape \(3, 3\), expected \(2, 2\)"):
        th.feature_model(np.zeros((2, 2)), np.eye(3))
    with pytest.raises(ValueError, match=r"offsets has shape \(2, 3\), expected \(2, 2\)"):
        th.feature_model(np.zeros((2, 2)), offsets=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="must dominate the conditional noise"):
        th.from_poison_covariance(np.zeros((1, 2)), np.eye(2), 0.1 * np.eye(2), 0.5 * np.eye(2))
    with pytest.raises(ValueError, match="must be finite"):
        th.feature_model([[0.0, float("nan")]])
    with pytest.raises(ValueError, match="priors must be non-negative and sum to 1"):
        th.feature_model(np.zeros((2, 1)), priors=[0.7, 0.7])
    with pytest.raises(ValueError, match="eps must be"):
        th.theorem_5_1(one_d_model(), eps=1.5)
    with pytest.raises(ValueError, match="closed-form only for Gaussian classes"):
        th.conditional_mi(th.make_model(d=2, n_classes=2, split=1.0))


def test_the_exact_sliced_mi_on_given_slices_averages_to_the_sliced_mi_over_all_directions():
    """sliced_mi_on_directions (per class and slice) is the integrand of sliced_gaussian_mi: averaged over many
    random slices and the classes' priors it meets that Monte Carlo value, and one slice along a 1-d model is
    the whole closed-form MI."""
    m = th.make_model(d=3, n_classes=3, shift=2.0, sigma_scale=1.0, noise=0.2, spread=(1.0, 2.0), seed=4)
    g = np.random.default_rng(0)
    a, b = g.standard_normal((4000, 3)), g.standard_normal((4000, 3))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    per = th.sliced_mi_on_directions(m, a, b)
    assert per.shape == (3, 4000) and (per > 0).all()
    value, se = th.sliced_gaussian_mi(m, n_directions=20000, seed=1)
    assert float(np.asarray(m.priors) @ per.mean(axis=1)) == pytest.approx(value, abs=5 * se + 0.01)
    one = th.from_poison_covariance(np.zeros((1, 1)), np.eye(1), 0.5 * np.eye(1), 0.1 * np.eye(1))
    assert th.sliced_mi_on_directions(one, np.ones((1, 1)), np.ones((1, 1)))[0, 0] == \
        pytest.approx(th.conditional_mi(one))
