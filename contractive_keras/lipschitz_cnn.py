"""The old import path of ``contractive_keras.models.lipschitz_cnn`` (the certified
CNN skeleton), kept for train.py's ``lipschitz_cnn.KERNELS``; new code imports
``contractive_keras.models.lipschitz_cnn``."""

from contractive_keras.models.lipschitz_cnn import KERNELS, lipschitz_cnn

__all__ = ["KERNELS", "lipschitz_cnn"]
