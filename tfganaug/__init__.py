"""tfganaug: GAN-based data augmentation for medical imaging on TensorFlow/Keras.

Reproduces Frid-Adar et al. 2018 (DCGAN/ACGAN lesion ROIs), a KiTS19 Pix2Pix study,
Sandfort et al. 2019 (CycleGAN contrast -> non-contrast CT) and Son et al. (StyleGAN2
multi-contrast MR with masks).
"""
import os as _os

# oneDNN kernels measured fastest on CPU here; quiet TF's C++ info logs unless the user asks.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
