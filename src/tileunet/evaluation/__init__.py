"""Scores: pixel and instance scores (IoU, SEG, matching), the ISBI 2012 metrics, and
scoring folders of predictions (``tileunet evaluate``).

The public names of :mod:`tileunet.evaluation.scores`, :mod:`tileunet.evaluation.isbi`
and :mod:`tileunet.evaluation.warping` are also read from here, as they were from
``tileunet.metrics`` in tileunet 0.1.
"""

from __future__ import annotations

from tileunet.evaluation import isbi, scores, warping
from tileunet.evaluation.isbi import *  # noqa: F403
from tileunet.evaluation.scores import *  # noqa: F403
from tileunet.evaluation.warping import *  # noqa: F403

__all__ = [*scores.__all__, *isbi.__all__, *warping.__all__]
