"""Scores: pixel and instance scores (IoU, SEG, DET, matching), the ISBI 2012 metrics
(the official V_rand and V_info after border thinning among them), and scoring folders
of predictions (``tileunet evaluate``).

The public names of :mod:`tileunet.evaluation.scores`, :mod:`tileunet.evaluation.isbi`,
:mod:`tileunet.evaluation.isbi_thinned` and :mod:`tileunet.evaluation.warping` are also
read from here, as those of the first, second and last were from ``tileunet.metrics`` in
tileunet 0.1.
"""

from __future__ import annotations

from tileunet.evaluation import isbi, isbi_thinned, scores, warping
from tileunet.evaluation.isbi import *  # noqa: F403
from tileunet.evaluation.isbi_thinned import *  # noqa: F403
from tileunet.evaluation.scores import *  # noqa: F403
from tileunet.evaluation.warping import *  # noqa: F403

__all__ = [*scores.__all__, *isbi.__all__, *isbi_thinned.__all__, *warping.__all__]
