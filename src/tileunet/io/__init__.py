"""Reading and writing: images and masks, lazy readers for images larger than memory,
exact percentiles of such images, and safe writing (temporary name, then rename).

``tileunet.data`` of tileunet 0.1 is now :mod:`tileunet.io.images` (image files),
:mod:`tileunet.io.pairs` (images paired with masks, training samples) and
:mod:`tileunet.io.normalization`; its public names are still read from here, for one
release (``tileunet.compat``).
"""

from __future__ import annotations

from tileunet.compat import names_from

#: the names of 0.1's ``tileunet.data``, from the modules that hold them now
__getattr__ = names_from("tileunet.io", ("images", "pairs", "normalization"),
                         {"DataError": "tileunet.errors"})
