"""Data augmentation for training tiles: placement, rotation, flips, elastic deformation
and gray values.

=====================================  ===================================================
:mod:`tileunet.augment.params`         what to draw, what was drawn, the drawing
:mod:`tileunet.augment.geometry`       the coordinate map: placement, rotation, flips,
                                       the elastic field, mirrored borders
:mod:`tileunet.augment.gray`           gamma, contrast and brightness
:mod:`tileunet.augment.resample`       the tiles on the CPU (:func:`apply`,
                                       :func:`augment_tile`)
:mod:`tileunet.augment.on_device`      the tiles on a torch device
=====================================  ===================================================

``tileunet.augment`` was a module in tileunet 0.1; its public names are still importable
from here.
"""

from __future__ import annotations

from tileunet.augment.geometry import (
    coordinate_factors,
    elastic_field,
    fold_into,
    fold_tensor,
    source_coordinates,
)
from tileunet.augment.gray import adjust_gray, adjust_gray_torch
from tileunet.augment.on_device import DeviceImage, apply_on_device
from tileunet.augment.params import (
    INTERPOLATIONS,
    WEIGHT_INTERPOLATIONS,
    AugmentConfig,
    AugmentParams,
    check_size,
    identity_params,
    make_params,
)
from tileunet.augment.resample import PAD, SPLINE_MARGIN, apply, augment_tile, padded

__all__ = [
    "INTERPOLATIONS",
    "PAD",
    "WEIGHT_INTERPOLATIONS",
    "SPLINE_MARGIN",
    "AugmentConfig",
    "AugmentParams",
    "DeviceImage",
    "adjust_gray",
    "adjust_gray_torch",
    "apply",
    "apply_on_device",
    "augment_tile",
    "check_size",
    "coordinate_factors",
    "elastic_field",
    "fold_into",
    "fold_tensor",
    "identity_params",
    "make_params",
    "padded",
    "source_coordinates",
]
