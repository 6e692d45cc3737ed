"""stylecodec: scalable face-image coding on a StyleGAN2 prior, for machines and people."""

__version__ = "0.1.0"
