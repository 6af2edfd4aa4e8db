"""tileunet: the U-Net of Ronneberger, Fischer & Brox (2015) as software.

>>> import tileunet
>>> tileunet.UNet().output_size(572)
388
"""

from tileunet import compat
from tileunet.augment.params import AugmentConfig
from tileunet.augment.resample import augment_tile
from tileunet.checkpoint import load_model, save_model
from tileunet.inference.overlap import predict
from tileunet.losses import weighted_cross_entropy
from tileunet.model import UNet, UNetConfig
from tileunet.targets.instances import separation_border, training_target
from tileunet.targets.weightmap import weight_map
from tileunet.training.config import Runtime, TrainConfig
from tileunet.training.loop import TrainResult
from tileunet.training.request import TrainRequest, train

__version__ = "0.1.0"

compat.install()

__all__ = [
    "AugmentConfig",
    "Runtime",
    "TrainConfig",
    "TrainRequest",
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
