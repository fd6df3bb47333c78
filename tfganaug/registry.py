"""Names -> builders, so configs and the CLI refer to architectures by name."""
from __future__ import annotations

from tfganaug.errors import ConfigError


def build_gan(gan_cfg, image_size: int, num_classes: int, seed: int):
    """The GAN of `gan_cfg.arch`; a DCGAN is one per class, so `num_classes` is ignored there."""
    from tfganaug.gans.acgan import ACGAN
    from tfganaug.gans.dcgan import DCGAN

    if gan_cfg.arch == "dcgan":
        return DCGAN(latent_dim=gan_cfg.latent_dim, width=gan_cfg.width, image_size=image_size,
                     kernel_size=gan_cfg.kernel_size, seed=seed)
    if gan_cfg.arch == "acgan":
        return ACGAN(num_classes=num_classes, latent_dim=gan_cfg.latent_dim, width=gan_cfg.width,
                     image_size=image_size, d_kernel_size=gan_cfg.kernel_size, dropout=gan_cfg.d_dropout,
                     seed=seed)
    raise ConfigError(f"unknown GAN architecture '{gan_cfg.arch}' (known: {', '.join(GAN_ARCHS)})")


GAN_ARCHS = ("dcgan", "acgan")
