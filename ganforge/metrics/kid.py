"""Kernel Inception Distance.

Paper: Bińkowski et al., "Demystifying MMD GANs", ICLR 2018 (arXiv:1801.01401). Reference implementation matched:
NVlabs/stylegan2-ada-pytorch `metrics/kernel_inception_distance.py` (kid50k_full: up to 1,000,000 reals, 50,000
fakes; unbiased MMD² with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged over 100 random subsets of
min(1000, N_real, N_gen) rows each).
"""

from __future__ import annotations

import numpy as np

from ganforge.metrics.features import MetricOptions, fake_features, real_features
from ganforge.metrics.registry import gen_count, register_metric


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (xᵀy / d + 1)³ for every row pair: [M, d] x [K, d] => [M, K]."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """MMD² = Σ_{i≠j} k(xi, xj) / m(m−1) + Σ_{i≠j} k(yi, yj) / m(m−1) − 2 Σ_{i,j} k(xi, yj) / m² (equal sizes m)."""
    m = len(x)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / m**2)


def kid_from_features(
    gen: np.ndarray, real: np.ndarray, num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0
) -> float:
    """Mean of mmd2_unbiased over random equal-size subsets (drawn without replacement within a subset)."""
    gen, real = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    m = min(len(gen), len(real), max_subset_size)
    rng = np.random.RandomState(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(len(gen), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        total += mmd2_unbiased(x, y)
    return total / num_subsets


@register_metric
def kid50k_full(opts: MetricOptions) -> dict[str, float]:
    real = real_features(opts, "inception", max_items=1_000_000)
    gen = fake_features(opts, "inception", gen_count(opts, 50_000))
    return {"kid50k_full": kid_from_features(gen, real, seed=opts.seed)}
