"""Fréchet Inception Distance.

Paper: Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium",
NeurIPS 2017 (arXiv:1706.08500). Reference implementation matched: NVlabs/stylegan2-ada-pytorch
`metrics/frechet_inception_distance.py` (fid50k_full: 50,000 generated images against every real image, xflip
off, pool3 features of `inception-2015-12-05.pt`, float64 statistics with the 1/N covariance, `np.real` of
`scipy.linalg.sqrtm`).
"""

from __future__ import annotations

import warnings

import numpy as np

from ganforge.metrics.features import MetricOptions, fake_features, real_mean_cov
from ganforge.metrics.registry import gen_count, register_metric


def mean_cov(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """μ = E[x], Σ = E[x xᵀ] − μ μᵀ over the rows of [N, F] (float64; 1/N as the official FeatureStats)."""
    x = np.asarray(features, dtype=np.float64)
    mu = x.mean(axis=0)
    sigma = x.T @ x / len(x) - np.outer(mu, mu)
    return mu, sigma


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """d² = |μ1 − μ2|² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½).

    sqrtm of a product of near-singular covariances can come back with tiny imaginary parts (round-off); like the
    official code we keep the real part of the trace rather than regularizing Σ.
    """
    mean_term = np.square(mu1 - mu2).sum()
    root = matrix_sqrt(np.dot(sigma1, sigma2))
    return float(np.real(mean_term + np.trace(sigma1 + sigma2 - root * 2)))


def matrix_sqrt(a: np.ndarray) -> np.ndarray:
    """scipy.linalg.sqrtm(a), quiet about singular input (the official code passes disp=False, which SciPy 1.17
    deprecates: same result, the warning is silenced here instead)."""
    import scipy.linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(a)
    return root[0] if isinstance(root, tuple) else root


def fid_from_features(gen: np.ndarray, real: np.ndarray) -> float:
    return frechet_distance(*mean_cov(gen), *mean_cov(real))


@register_metric
def fid50k_full(opts: MetricOptions) -> dict[str, float]:
    real = real_mean_cov(opts, "inception")
    mu, sigma = mean_cov(fake_features(opts, "inception", gen_count(opts, 50_000)))
    return {"fid50k_full": frechet_distance(mu, sigma, real["mu"], real["sigma"])}
