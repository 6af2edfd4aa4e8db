"""Training: the configuration, the plan fitted to a budget, the loop, the data
pipeline of training tiles, and training in several processes.

``tileunet.training`` was a module in tileunet 0.1; its names are still read from here, through
:mod:`tileunet.training.loop`, :mod:`tileunet.training.config` and
:mod:`tileunet.training.samples`, for one release.
"""

from __future__ import annotations

from tileunet.compat import names_from

#: the names of 0.1's ``tileunet.training``, from the modules that hold them now
__getattr__ = names_from("tileunet.training", ("loop", "config", "samples"))
