"""tileunet: the U-Net of Ronneberger, Fischer & Brox (2015) as software."""

from tileunet.model import UNet, UNetConfig

__version__ = "0.1.0"

__all__ = ["UNet", "UNetConfig", "__version__"]
