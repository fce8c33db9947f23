"""The metric registry: `@register_metric def fid50k_full(opts) -> dict` (the name is the CLI name and JSON key).

A metric is a tiny function of `MetricOptions` returning `{result_name: float}`; most return one value under their
own name, pr50k3_full returns `pr50k3_full_precision` and `pr50k3_full_recall` as the official code does.
"""

from __future__ import annotations

from collections.abc import Callable

from ganforge.metrics.features import MetricError, MetricOptions

MetricFn = Callable[[MetricOptions], dict[str, float]]
METRICS: dict[str, MetricFn] = {}
FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {}  # Metric -> (generator families it measures, why); absent = all.
REAL_DATA_FREE: set[str] = set()  # Metrics that read no real images (the data only gives a conditional G its labels).


def register_metric(fn: MetricFn) -> MetricFn:
    if fn.__name__ in METRICS:
        raise ValueError(f"metric {fn.__name__} is registered twice: give the new one another name")
    METRICS[fn.__name__] = fn
    return fn


def check_names(names: list[str]) -> None:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise MetricError(f"--metrics: unknown metric {', '.join(unknown)}: choose from {', '.join(sorted(METRICS))}")


def restrict_families(name: str, families: tuple[str, ...], why: str) -> None:
    """Declare that metric `name` measures only generators of `families` (Plan.family); `why` completes
    "<name> ..." with what it uses that the others lack."""
    FAMILIES[name] = (families, why)


def check_families(names: list[str], family: str, flag: str = "--metrics") -> None:
    """Refuse, before any work, a metric that cannot measure a generator of this family."""
    for name in names:
        families, why = FAMILIES.get(name, ((family,), ""))
        if family not in families:
            raise MetricError(f"{name} {why}, and this generator is {family}: drop {name} from {flag}")


def gen_count(opts: MetricOptions, default: int) -> int:
    """The metric's generated-image count, unless the caller set opts.num_gen."""
    return int(opts.num_gen) if opts.num_gen is not None else default


DEFAULT_COUNT_TOKEN = "50k"  # Every registered metric generates 50,000 images unless told otherwise.
COUNTLESS_PREFIXES = ("ppl",)  # Official names without the count (ppl_wend): a count other than 50k goes after these.


def count_token(n: int) -> str:
    """An image count as the metric names write it: 50000 -> '50k', 1000 -> '1k', 2500 -> '2500'."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def labelled(key: str, num_gen: int | None) -> str:
    """A result name with the number of generated images it really used: ('fid50k_full', 100) -> 'fid100_full'.

    The registered names say 50k; a metric run on fewer (or more) images must not be read as the 50k figure.
    Names without a count say it after their prefix when it is not 50k: ('ppl_wend', 1000) -> 'ppl1k_wend'.
    """
    if num_gen is None:
        return key
    if DEFAULT_COUNT_TOKEN not in key:
        prefix = next((p for p in COUNTLESS_PREFIXES if key.startswith(p + "_")), None)
        token = count_token(int(num_gen))
        return key if prefix is None or token == DEFAULT_COUNT_TOKEN else prefix + token + key[len(prefix) :]
    head, tail = key.split(DEFAULT_COUNT_TOKEN, 1)
    token = count_token(int(num_gen))
    if tail[:1].isdigit() and not token.endswith("k"):  # pr50k3 (k = 3 neighbours): pr2500_3, never pr25003.
        token += "_"
    return head + token + tail
