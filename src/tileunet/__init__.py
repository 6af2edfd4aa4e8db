"""tileunet: the U-Net of Ronneberger, Fischer & Brox (2015) as software.

>>> import tileunet
>>> tileunet.UNet().output_size(572)
388
"""

from tileunet.augment import AugmentConfig, augment_tile
from tileunet.checkpoint import load_model, save_model
from tileunet.losses import weighted_cross_entropy
from tileunet.model import UNet, UNetConfig
from tileunet.predict import predict
from tileunet.training import TrainConfig, TrainResult, train
from tileunet.weights import separation_border, training_target, weight_map

__version__ = "0.1.0"

__all__ = [
    "AugmentConfig",
    "TrainConfig",
    "TrainResult",
    "UNet",
    "UNetConfig",
    "__version__",
    "augment_tile",
    "load_model",
    "predict",
    "save_model",
    "separation_border",
    "train",
    "training_target",
    "weight_map",
    "weighted_cross_entropy",
]
