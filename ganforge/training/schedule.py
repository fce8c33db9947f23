"""Schedules by kimg: a value as a pure function of training progress.

Written on the command line as comma-separated points, `VALUE` or `VALUE@KIMG`:

    0.002                          constant
    0.002,0.0002@10000,0.0001@20000    step: 0.002 until 10000 kimg, 0.0002 until 20000, then 0.0001
    linear:10,5@5000               linear: 10 at 0 kimg tapering to 5 at 5000 kimg, then 5
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from ganforge.errors import GanforgeError


class ScheduleError(GanforgeError, ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    points: tuple[tuple[float, float], ...]  # (kimg, value), kimg ascending, the first at 0.
    mode: str = "step"  # step | linear.

    def __call__(self, kimg: float) -> float:
        keys = [k for k, _ in self.points]
        i = bisect.bisect_right(keys, kimg) - 1
        i = max(i, 0)
        k0, v0 = self.points[i]
        if self.mode == "step" or i + 1 >= len(self.points):
            return v0
        k1, v1 = self.points[i + 1]
        return v0 + (v1 - v0) * (kimg - k0) / (k1 - k0)

    @property
    def constant(self) -> bool:
        return len(self.points) == 1

    def __str__(self) -> str:
        body = ",".join(f"{v:g}" if k == 0 else f"{v:g}@{k:g}" for k, v in self.points)
        return f"linear:{body}" if self.mode == "linear" else body


def parse_schedule(value: float | int | str, name: str = "value") -> Schedule:
    """A number or a schedule string (see the module docstring) -> Schedule; errors name the option."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ScheduleError(f"{name} {value}: give a finite number")
        return Schedule(((0.0, float(value)),))
    text = str(value).strip()
    mode = "step"
    if text.startswith("linear:"):
        mode, text = "linear", text[len("linear:") :]
    points = []
    for i, part in enumerate(p.strip() for p in text.split(",")):
        try:
            if "@" in part:
                v, k = part.split("@", 1)
                points.append((float(k), float(v)))
            elif i == 0:
                points.append((0.0, float(part)))
            else:
                raise ValueError
        except ValueError:
            raise ScheduleError(
                f"{name}: {part!r} in {value!r} is not VALUE or VALUE@KIMG; write e.g. '0.002,0.0002@10000' "
                f"or 'linear:10,5@5000'"
            ) from None
    bad = [x for point in points for x in point if not math.isfinite(x)]
    if bad:
        raise ScheduleError(f"{name}: {value!r} holds {bad[0]}: values and kimg points must be finite numbers")
    if not points or points[0][0] != 0:
        raise ScheduleError(f"{name}: {value!r} must start with a plain value (the value at 0 kimg)")
    if any(b[0] <= a[0] for a, b in zip(points, points[1:])):
        raise ScheduleError(f"{name}: {value!r} has kimg points out of order; list them ascending")
    return Schedule(tuple(points), mode)
