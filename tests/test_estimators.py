import math

import numpy as np
import pytest
import torch

from miue.estimators import class_conditional_mi, gaussian_mi, histogram_mi, sliced_mi


def correlated(n, rho, seed=0, cols=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cols, generator=g)
    y = rho * x + math.sqrt(1 - rho ** 2) * torch.randn(n, cols, generator=g)
    return x, y


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_histogram_agrees_with_closed_form_at_large_n(rho):
    x, y = correlated(400_000, rho)
    est = histogram_mi(x, y, bins=100).item()
    assert abs(est - gaussian_mi(rho)) < 0.03, (est, gaussian_mi(rho))


def test_histogram_approaches_zero_on_independent_data():
    x, y = correlated(400_000, 0.0)
    assert histogram_mi(x, y, bins=100).item() < 0.015
    # and is biased upward at small n: roughly (bins-1)^2 / (2n) nats
    x, y = correlated(500, 0.0, seed=1, cols=50)
    small = histogram_mi(x, y, bins=100).mean().item()
    assert small > 1.0


def test_vectorized_equals_one_column_at_a_time():
    x, y = correlated(3000, 0.5, cols=7)
    batched = histogram_mi(x, y, bins=30, chunk=3)
    single = torch.stack([histogram_mi(x[:, i], y[:, i], bins=30)[0] for i in range(7)])
    assert torch.allclose(batched, single, atol=1e-6)


def test_histogram_matches_numpy_histogram2d():
    x, y = correlated(5000, 0.7, seed=3)
    counts, _, _ = np.histogram2d(x[:, 0].numpy(), y[:, 0].numpy(), bins=20)
    p = counts / counts.sum()
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    ref = float((p[nz] * np.log(p[nz] / (px @ py)[nz])).sum())
    assert abs(histogram_mi(x, y, bins=20).item() - ref) < 2e-3


def test_sliced_mi_of_gaussian_vectors_matches_slice_closed_form():
    # Y = X + noise in d dims, shared directions: each slice is a bivariate Gaussian with ρ² = 1/(1+σ²)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, 4, generator=g)
    y = x + 0.5 * torch.randn(x.shape, generator=g)
    rho = 1 / math.sqrt(1 + 0.25)
    est = sliced_mi(x, y, n_slices=16, bins=100, shared=True)
    assert abs(est - gaussian_mi(rho)) < 0.03


def test_class_conditional_reports_shuffled_baseline():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(300)
    fx = torch.randn(1200, 16, generator=g)
    fy = fx + 0.1 * torch.randn(fx.shape, generator=g)
    dependent = class_conditional_mi(fx, fy, labels, 64, 20, shared=True)
    independent = class_conditional_mi(fx, torch.randn(fx.shape, generator=g), labels, 64, 20, shared=True)
    assert dependent["mi_excess"] > 0.2
    # Eq. 17 draws the X and Y directions independently: in d dims a slice pair sees correlation θᵀφ ~ 1/√d,
    # so the sliced MI of even identical features is small (but still above its shuffled baseline)
    eq17 = class_conditional_mi(fx, fy, labels, 256, 20, shared=False)
    assert 0 < eq17["mi_excess"] < dependent["mi_excess"] / 3
    assert abs(independent["mi_excess"]) < 0.05 and independent["mi_shuffled"] > 0.1
    assert len(dependent["mi_per_class"]) == 4 and dependent["n_per_class"] == 300


@pytest.mark.parametrize("x, y, bins, message", [
    (torch.tensor([1.0, float("nan"), 2.0]), torch.rand(3), 10, "finite"),
    (torch.rand(5), torch.rand(6), 10, "same number of samples"),
    (torch.rand(5), torch.rand(5), 1, "bins"),
    (torch.rand(1), torch.rand(1), 10, "at least 2"),
    (torch.rand(50), torch.rand(50), 100, "fewer than the 100 bins"),
])
def test_bad_input_is_rejected(x, y, bins, message):
    with pytest.raises(ValueError, match=message):
        histogram_mi(x, y, bins=bins)


def test_too_few_samples_per_class_for_the_bins():
    with pytest.raises(ValueError, match="too few"):
        class_conditional_mi(torch.rand(20, 3), torch.rand(20, 3), torch.arange(20) % 10, 8, 100)


@pytest.mark.parametrize("estimator, tol", [("ksg", 0.05), ("kde", 0.08)])
def test_ksg_and_kde_agree_with_closed_form(estimator, tol):
    from miue.estimators import kde_mi, ksg_mi
    fn = {"ksg": ksg_mi, "kde": kde_mi}[estimator]
    for rho in (0.0, 0.6, 0.9):
        x, y = correlated(2000, rho, seed=4, cols=2)
        est = fn(x, y).mean().item()
        assert abs(est - gaussian_mi(rho)) < tol, (estimator, rho, est)


def test_ksg_matches_scikit_learn():
    from sklearn.feature_selection import mutual_info_regression

    from miue.estimators import ksg_mi
    x, y = correlated(1500, 0.7, seed=5)
    ours = ksg_mi(x, y, k=3).item()
    ref = mutual_info_regression(x.numpy(), y[:, 0].numpy(), n_neighbors=3, random_state=0)[0]
    assert abs(ours - ref) < 0.03, (ours, ref)


def test_sliced_mi_takes_any_1d_estimator():
    x, y = correlated(800, 0.8, seed=6, cols=3)
    vals = {e: sliced_mi(x, y, n_slices=8, shared=True, estimator=e) for e in ("histogram", "kde", "ksg")}
    assert vals["ksg"] > 0.2 and vals["kde"] > 0.2
    with pytest.raises(ValueError, match="unknown 1-D estimator"):
        sliced_mi(x, y, n_slices=2, estimator="mine2")


def _brute_ksg(x, y, k=3):
    from scipy.special import digamma
    dx, dy = np.abs(x[:, None] - x[None]), np.abs(y[:, None] - y[None])
    d = np.maximum(dx, dy)
    np.fill_diagonal(d, np.inf)
    eps = np.sort(d, 1)[:, k - 1]
    nx, ny = (dx < eps[:, None]).sum(1) - 1, (dy < eps[:, None]).sum(1) - 1
    return digamma(k) + digamma(len(x)) - np.mean(digamma(nx + 1) + digamma(ny + 1))


def test_ksg_equals_brute_force_definition():
    from miue.estimators import ksg_mi
    x, y = correlated(400, 0.7, seed=8, cols=4)
    y[:, 2] = torch.exp(3 * x[:, 2])  # heavy tail, monotone dependence
    x[:, 3], y[:, 3] = torch.round(x[:, 3] * 64) / 64, torch.round(y[:, 3] * 64) / 64  # tied distances
    assert len({(a, b) for a, b in zip(x[:, 3].tolist(), y[:, 3].tolist())}) == 400  # but no duplicate points
    ours = ksg_mi(x, y).double().numpy()
    ref = [_brute_ksg(x[:, i].double().numpy(), y[:, i].double().numpy()) for i in range(4)]
    assert np.allclose(ours, ref, atol=1e-5), (ours, ref)


def test_mine_agrees_with_closed_form_and_is_unbiased_at_zero():
    from miue.estimators import mine_mi
    x, y = correlated(2000, 0.8, seed=9, cols=2)
    assert abs(mine_mi(x, y).mean().item() - gaussian_mi(0.8)) < 0.06
    x0, y0 = correlated(2000, 0.0, seed=10, cols=2)
    assert abs(mine_mi(x0, y0, iterations=200).mean().item()) < 0.05
    with pytest.raises(ValueError, match="iterations"):
        mine_mi(x, y, iterations=0)


@pytest.mark.parametrize("estimator, bound", [("ksg", 0.02), ("kde", 0.07)])
def test_zero_truth_bias_is_bounded(estimator, bound):
    from miue.estimators import kde_mi, ksg_mi
    x, y = correlated(2000, 0.0, seed=11, cols=16)
    fn = {"ksg": ksg_mi, "kde": kde_mi}[estimator]
    assert abs(fn(x, y).mean().item()) < bound


def test_histogram_bias_at_the_papers_setting_and_miller_madow():
    # 100 bins at 5,000 samples (CIFAR-10's per-class size): the plug-in value of independent Gaussians is
    # about 0.47 nats; Miller–Madow removes roughly half of it
    x, y = correlated(5000, 0.0, seed=12, cols=32)
    raw = histogram_mi(x, y, 100).mean().item()
    mm = histogram_mi(x, y, 100, correction="miller-madow").mean().item()
    assert 0.40 < raw < 0.55 and 0.15 < mm < raw - 0.15


def test_sliced_closed_forms_for_both_direction_variants():
    from miue import validation
    g = torch.Generator().manual_seed(0)
    theta = validation.est.random_directions(64, 4000, g)
    phi = validation.est.random_directions(64, 4000, g)
    assert torch.allclose(validation.slice_truth(0.9, theta, theta), torch.tensor(gaussian_mi(0.9), dtype=torch.float64))
    mc = validation.slice_truth(0.9, theta, phi).mean().item()
    assert abs(mc - validation.expected_sliced_mi(0.9, 64, shared=False)) < 0.001
    assert validation.expected_sliced_mi(0.9, 512, shared=False) < 0.001 < gaussian_mi(0.9)
    # the estimators on samples track the per-slice truth with shared directions
    x, y = validation.correlated_gaussians(2000, 8, 0.9, seed=1)
    th = validation.est.random_directions(8, 16, g)
    truth = validation.slice_truth(0.9, th, th).mean().item()
    assert abs(validation.est.ksg_mi(x @ th, y @ th).mean().item() - truth) < 0.05


def test_feature_covariance_matches_gaussian_log_det():
    from miue.feature_covariance import class_covariance
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([1.0, 2.0, 0.5, 3.0])
    f = torch.randn(20000, 4, generator=g) * scale
    labels = torch.arange(2).repeat(10000)
    res = class_covariance(f, labels, ridge=1e-8)
    assert abs(res["half_logdet"] - 0.5 * float(torch.log(scale**2).sum())) < 0.03
    assert abs(res["trace"] - float((scale**2).sum())) < 0.2
    shrunk = class_covariance(0.5 * f, labels, ridge=1e-8)
    assert shrunk["half_logdet"] < res["half_logdet"] and shrunk["trace"] < res["trace"]
    with pytest.raises(ValueError, match="one entry per row"):
        class_covariance(f, labels[:-1])
    with pytest.raises(ValueError, match="at least 2"):
        class_covariance(f[:3], torch.tensor([0, 0, 1]))


def test_the_fft_binned_kde_matches_the_exact_sums():
    from miue.estimators import kde_mi
    g = torch.Generator().manual_seed(0)
    for rho in (0.0, 0.6, 0.95):
        x = torch.randn(1500, 6, generator=g)
        y = rho * x + (1 - rho ** 2) ** 0.5 * torch.randn(1500, 6, generator=g)
        exact, binned = kde_mi(x, y), kde_mi(x, y, evaluation="binned-fft")
        assert (exact - binned).abs().max() < 5e-3, (rho, exact, binned)
    torch.manual_seed(0)
    x = torch.distributions.StudentT(3.0).sample((3000, 2))  # heavy tails: a wide grid in bandwidths
    y = 0.6 * x + 0.8 * torch.distributions.StudentT(3.0).sample((3000, 2))
    assert (kde_mi(x, y) - kde_mi(x, y, evaluation="binned-fft", grid=512)).abs().max() < 6e-3
    with pytest.raises(ValueError, match="kde evaluation must be one of"):
        kde_mi(x, y, evaluation="fast")
    with pytest.raises(ValueError, match="kde grid must be an integer"):
        kde_mi(x, y, evaluation="binned-fft", grid=4)


def test_class_conditional_mi_reports_its_slice_spread():
    from miue.estimators import class_conditional_mi
    g = torch.Generator().manual_seed(1)
    fx = torch.randn(600, 8, generator=g)
    fy = fx + 0.5 * torch.randn(600, 8, generator=g)
    labels = torch.arange(600) % 3
    few = class_conditional_mi(fx, fy, labels, n_slices=20, bins=10)
    many = class_conditional_mi(fx, fy, labels, n_slices=320, bins=10)
    assert few["mi_slice_sd"] > 0 and many["mi_se"] < few["mi_se"]
    assert abs(many["mi_se"] * 4 - few["mi_se"]) < 0.5 * few["mi_se"]  # SE ∝ 1/√slices
    assert abs(few["mi"] - many["mi"]) < 4 * few["mi_se"] + 4 * many["mi_se"]


def test_effective_rank_counts_the_directions_that_carry_variance():
    from miue.experiments import effective_rank
    g = torch.Generator().manual_seed(2)
    assert 14 < effective_rank(torch.randn(5000, 16, generator=g)) <= 16
    line = torch.randn(500, 1, generator=g) * torch.ones(1, 16)
    assert effective_rank(line) < 1.01
