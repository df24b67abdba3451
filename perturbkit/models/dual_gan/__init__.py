"""A dual GAN in the style of MAGAN (Amodio & Krishnaswamy 2018), with the correspondence loss."""

from ._model import DualGAN
from ._module import DualGANNetwork

__all__ = ["DualGAN", "DualGANNetwork"]
