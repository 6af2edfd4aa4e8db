"""What the network is trained to output: instance masks, the separation borders
between touching cells, and the paper's loss weight map (eq. 2).

``tileunet.weights`` of tileunet 0.1 is now :mod:`tileunet.targets.instances` (instances,
separation borders, the training target) and :mod:`tileunet.targets.weightmap`; its
public names are still read from here, for one release (``tileunet.compat``).
"""

from __future__ import annotations

from tileunet.compat import names_from

#: the names of 0.1's ``tileunet.weights``, from the modules that hold them now
__getattr__ = names_from("tileunet.targets", ("instances", "weightmap"))
