"""FGSM and PGD; they live in ``contractive_keras.robustness.attacks``, re-exported here.

``from contractive_keras.attacks import fgsm, pgd`` keeps working.
"""

from contractive_keras.robustness.attacks import LOSSES, NORMS, attack_loss, fgsm, logit_function, pgd

__all__ = ["LOSSES", "NORMS", "attack_loss", "fgsm", "logit_function", "pgd"]
