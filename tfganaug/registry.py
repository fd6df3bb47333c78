"""Names -> builders, so configs and the CLI refer to architectures by name."""
from __future__ import annotations

from tfganaug.errors import ConfigError


def build_augment(gan_cfg, seed: int, image_channels: int | None = None):
    """D's input augmentation of a GAN config (identity when gan.diffaug is none and ADA off).
    `image_channels`: how many leading channels of D's input are images (the rest are masks
    or label maps, moved by geometric ops only)."""
    from tfganaug.gans.augment import DiscriminatorAugment, parse_policy
    return DiscriminatorAugment(parse_policy(gan_cfg.diffaug), ada_target=gan_cfg.ada_target,
                                image_channels=image_channels, ada_interval=gan_cfg.ada_interval,
                                ada_speed_images=gan_cfg.ada_speed_images, seed=seed + 7)


def build_gan(gan_cfg, image_size: int, num_classes: int, seed: int):
    """The GAN of `gan_cfg.arch`; a DCGAN is one per class, so `num_classes` is ignored there."""
    from tfganaug.gans.acgan import ACGAN
    from tfganaug.gans.dcgan import DCGAN

    tricks = dict(upsample=gan_cfg.upsample, augment=build_augment(gan_cfg, seed), ema_beta=gan_cfg.g_ema_beta)
    if gan_cfg.arch == "dcgan":
        return DCGAN(latent_dim=gan_cfg.latent_dim, width=gan_cfg.width, image_size=image_size,
                     kernel_size=gan_cfg.kernel_size, seed=seed, **tricks)
    if gan_cfg.arch == "acgan":
        return ACGAN(num_classes=num_classes, latent_dim=gan_cfg.latent_dim, width=gan_cfg.width,
                     image_size=image_size, d_kernel_size=gan_cfg.kernel_size, dropout=gan_cfg.d_dropout,
                     seed=seed, conditioning=gan_cfg.conditioning, **tricks)
    raise ConfigError(f"unknown GAN architecture '{gan_cfg.arch}' (known: {', '.join(GAN_ARCHS)})")


GAN_ARCHS = ("dcgan", "acgan")
