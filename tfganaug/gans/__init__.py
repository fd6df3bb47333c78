"""The five GANs and the labels2image baseline, one file per paper architecture, each a `gans.base.GAN` (the contract is in
base.py's docstring). `GANS.get(arch)` is the class; the names are listed here once, imported on
first use, so the command line knows them without importing TensorFlow."""
from tfganaug.registry import Registry

GANS = Registry("GAN architecture", {
    "dcgan": "tfganaug.gans.dcgan:DCGAN",          # Radford et al. 2016; Frid-Adar et al. 2018, one per class
    "acgan": "tfganaug.gans.acgan:ACGAN",          # Odena et al. 2017; Frid-Adar et al. 2018
    "pix2pix": "tfganaug.gans.pix2pix:Pix2Pix",    # Isola et al. 2017; the KiTS19 capstone
    "cyclegan": "tfganaug.gans.cyclegan:CycleGAN",  # Zhu et al. 2017; Sandfort et al. 2019
    "stylegan2": "tfganaug.gans.stylegan2:StyleGAN2",  # Karras et al. 2020; Son et al.
    "labels2image": "tfganaug.gans.labels2image:Labels2Image",  # zero-training baseline (SynthSeg-style)
})
