"""Choosing how a model's probabilities become instances, on its own training images.

A network trained briefly, or on a few painted cells, often finds where the cells are
before it learns every border between touching ones: its probability of two touching
cells may have no dip between them (the default seeded flooding then merges them) or
many shallow dips inside one cell (the flooding then splits it). Which separation
(:func:`~tileunet.inference.postprocess.instance_options`) suits a model, and at which
object size, is therefore a property of the model and the data, and it can be measured
without any validation image: the model predicts its training images, and each
candidate separation is scored by SEG against the cells annotated there (for a sparse
annotation, the cells painted whole; SEG counts only annotated cells, so unannotated
ones cannot count against a candidate). Sizes come from those cells: the distance
watershed's seed spacing is a fraction of the small cells' diameter, and fragments
below a sixteenth of a small cell's area are dropped.

>>> import numpy as np
>>> yy, xx = np.mgrid[:40, :70]
>>> left, right = (yy - 20) ** 2 + (xx - 22) ** 2 < 196, (yy - 20) ** 2 + (xx - 44) ** 2 < 196
>>> truth = np.where(left & (xx < 33), 1, np.where(right & (xx > 33), 2, 0))
>>> prob = (left | right).astype(float)           # two touching cells merged: no dip
>>> choose_separation([prob], [truth], progress=False).method
'watershed'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tileunet.checkpoint import ModelFileError
from tileunet.evaluation.scores import seg_totals
from tileunet.inference.postprocess import (
    INSTANCE_METHODS,
    instance_options,
    instances_from_probability,
)
from tileunet.targets.instances import equivalent_diameters

__all__ = ["DEFAULT", "SEED_SPACINGS", "SEPARATIONS", "Separation", "candidates",
           "check_separation_request", "choose_separation", "model_separation",
           "separation_options"]

#: what a user may ask for: the model's own separation ("auto") or a method by name
SEPARATIONS = ("auto", *INSTANCE_METHODS)

#: watershed seed spacings tried, as fractions of the small cells' diameter
SEED_SPACINGS = (0.1, 0.2, 0.3, 0.45, 0.6)
#: fragments smaller than this share of a small cell's area are dropped
MIN_SIZE_SHARE = 1 / 16


@dataclass(frozen=True)
class Separation:
    """One way of drawing instances: a method of
    :func:`~tileunet.inference.postprocess.instance_options`, its seed spacing, the
    smallest object kept, and the SEG it had where it was chosen (NaN if not scored)."""

    method: str = "seeded"
    min_distance: int = 5
    min_size: int = 8
    seg: float = float("nan")

    def __post_init__(self) -> None:
        if self.method not in INSTANCE_METHODS:
            raise ValueError(f"separation method must be one of {INSTANCE_METHODS}, "
                             f"got {self.method!r}")
        for name in ("min_distance", "min_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < (name == "min_distance"):
                raise ValueError(f"separation {name} must be a whole number "
                                 f"{'>= 1' if name == 'min_distance' else '>= 0'}, "
                                 f"got {value!r}")

    @property
    def options(self) -> dict:
        """Keyword arguments of
        :func:`~tileunet.inference.postprocess.instances_from_probability`."""
        return {**instance_options(self.method, self.min_distance), "min_size": self.min_size}

    def describe(self) -> str:
        """One line for a log or a table."""
        spacing = f", seeds {self.min_distance} px apart" if self.method == "watershed" else ""
        seg = "" if np.isnan(self.seg) else f" (SEG {self.seg:.3f} on the training cells)"
        return f"{self.method}{spacing}, objects >= {self.min_size} px{seg}"

    def at_scale(self, scale: float) -> Separation:
        """The same separation for images ``1 / scale`` times as large (chosen at a
        working ``scale``, applied at the images' own size); the library's default
        stays the default."""
        if (self.method, self.min_distance, self.min_size) == (
                DEFAULT.method, DEFAULT.min_distance, DEFAULT.min_size):
            return self
        return Separation(self.method, max(1, round(self.min_distance / scale)),
                          round(self.min_size / scale ** 2), self.seg)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Separation:
        """From :meth:`to_dict` (a ValueError names a bad field)."""
        if not isinstance(d, dict):
            raise ValueError(f"a separation must be a JSON object, got {type(d).__name__}")
        unknown = set(d) - {"method", "min_distance", "min_size", "seg"}
        if unknown:
            raise ValueError(f"unknown separation fields {sorted(unknown)}")
        return cls(**{**d, "seg": float(d.get("seg", "nan"))})


#: the separation a model without a chosen one gets
DEFAULT = Separation()


def candidates(truths: Sequence[np.ndarray]) -> list[Separation]:
    """The default first, then each method at sizes taken from the small (10th
    percentile) cells of ``truths``."""
    diameters = np.concatenate([equivalent_diameters(t) for t in truths] or [[]])
    if not diameters.size:
        return [DEFAULT]
    small = float(np.percentile(diameters, 10))
    min_size = max(DEFAULT.min_size, round(MIN_SIZE_SHARE * np.pi / 4 * small ** 2))
    spacings = sorted({max(1, round(f * small)) for f in SEED_SPACINGS})
    return [DEFAULT, Separation("seeded", min_size=min_size),
            Separation("components", min_size=min_size),
            *(Separation("watershed", d, min_size) for d in spacings)]


def choose_separation(probs: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                      progress: bool = True) -> Separation:
    """The candidate (:func:`candidates`) with the highest SEG over the objects of
    ``truths`` (instance labels; 0 = not annotated or background), pooled over the
    images; on a tie, the earlier candidate. ``probs`` are the foreground probabilities
    of the same images."""
    if len(probs) != len(truths):
        raise ValueError(f"{len(probs)} probability maps for {len(truths)} annotations")
    pairs = [(p, t) for p, t in zip(probs, truths, strict=True) if t.any()]
    if not pairs:
        return DEFAULT
    options = candidates([t for _, t in pairs])
    best = None
    with tqdm(total=len(options) * len(pairs), desc="choosing the separation",
              unit="image", disable=not progress) as bar:
        for option in options:
            total, count = 0.0, 0
            for p, t in pairs:
                s, n = seg_totals(instances_from_probability(p, **option.options), t)
                total, count = total + s, count + n
                bar.update()
            scored = Separation(option.method, option.min_distance, option.min_size,
                                total / count)
            if best is None or scored.seg > best.seg:
                best = scored
    return best


def model_separation(extra: Mapping[str, Any], source: str | Path = "the model"
                     ) -> Separation:
    """The separation a model chose when it was trained (its ``"separation"`` entry),
    :data:`DEFAULT` for a model without one; a broken entry raises a
    :class:`~tileunet.errors.ModelFileError` naming ``source``."""
    entry = extra.get("separation")
    if entry is None:
        return DEFAULT
    try:
        return Separation.from_dict(entry)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{source}: broken separation entry ({e})") from None


def check_separation_request(instances: str = "auto", min_distance: int | None = None
                             ) -> None:
    """Raise ``ValueError`` unless ``instances`` and ``min_distance`` make a request
    :func:`separation_options` can answer: callers check it before any work is done.

    >>> check_separation_request("components", 12)
    Traceback (most recent call last):
    ...
    ValueError: min_distance is for instances='watershed', not 'components'
    """
    if instances not in SEPARATIONS:
        raise ValueError(f"instances must be one of {SEPARATIONS}, got {instances!r}")
    if min_distance is not None and instances != "watershed":
        raise ValueError(f"min_distance is for instances='watershed' (got {instances!r}: "
                         "the seed spacing of the model's own separation is its own)"
                         if instances == "auto" else
                         f"min_distance is for instances='watershed', not {instances!r}")


def separation_options(instances: str = "auto", min_distance: int | None = None,
                       extra: Mapping[str, Any] | None = None,
                       source: str | Path = "the model") -> dict:
    """Keyword arguments of
    :func:`~tileunet.inference.postprocess.instances_from_probability` for what a user
    asked (checked by :func:`check_separation_request`): ``"auto"``, the separation the
    model chose (:func:`model_separation`, from the model's metadata ``extra``), or a
    method of :func:`~tileunet.inference.postprocess.instance_options` with
    ``min_distance`` (default 5), which only ``"watershed"`` takes.

    >>> separation_options("watershed", 12)
    {'watershed': True, 'min_distance': 12}
    >>> separation_options("auto", extra={"separation": {"method": "components",
    ...                                                   "min_distance": 5, "min_size": 90}})
    {'seed_threshold': None, 'min_size': 90}
    """
    check_separation_request(instances, min_distance)
    if instances == "auto":
        return model_separation(extra or {}, source).options
    return instance_options(instances, 5 if min_distance is None else min_distance)
