"""The metric registry: `@register_metric def fid50k_full(opts) -> dict` (the name is the CLI name and JSON key).

A metric is a tiny function of `MetricOptions` returning `{result_name: float}`; most return one value under their
own name, pr50k3_full returns `pr50k3_full_precision` and `pr50k3_full_recall` as the official code does.
"""

from __future__ import annotations

from collections.abc import Callable

from ganforge.metrics.features import MetricError, MetricOptions

MetricFn = Callable[[MetricOptions], dict[str, float]]
METRICS: dict[str, MetricFn] = {}


def register_metric(fn: MetricFn) -> MetricFn:
    if fn.__name__ in METRICS:
        raise ValueError(f"metric {fn.__name__} is registered twice: give the new one another name")
    METRICS[fn.__name__] = fn
    return fn


def check_names(names: list[str]) -> None:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise MetricError(f"--metrics: unknown metric {', '.join(unknown)}: choose from {', '.join(sorted(METRICS))}")


def gen_count(opts: MetricOptions, default: int) -> int:
    """The metric's generated-image count, unless the caller set opts.num_gen."""
    return int(opts.num_gen) if opts.num_gen is not None else default
