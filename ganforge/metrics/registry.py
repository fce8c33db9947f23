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


DEFAULT_COUNT_TOKEN = "50k"  # Every registered metric generates 50,000 images unless told otherwise.


def count_token(n: int) -> str:
    """An image count as the metric names write it: 50000 -> '50k', 1000 -> '1k', 2500 -> '2500'."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def labelled(key: str, num_gen: int | None) -> str:
    """A result name with the number of generated images it really used: ('fid50k_full', 100) -> 'fid100_full'.

    The registered names say 50k; a metric run on fewer (or more) images must not be read as the 50k figure.
    """
    if num_gen is None or DEFAULT_COUNT_TOKEN not in key:
        return key
    head, tail = key.split(DEFAULT_COUNT_TOKEN, 1)
    token = count_token(int(num_gen))
    if tail[:1].isdigit() and not token.endswith("k"):  # pr50k3 (k = 3 neighbours): pr2500_3, never pr25003.
        token += "_"
    return head + token + tail
