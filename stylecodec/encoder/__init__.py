"""GAN-inversion encoder: a pSp/e4e gradual style encoder on a timm backbone.

Owns: the backbone wrapper, the FPN, the map2style heads and the encoder (image -> W+).
May import: ``stylecodec.layers`` (the layer split), torch and timm; nothing above them.
"""
from stylecodec.encoder.backbone import Backbone
from stylecodec.encoder.fpn import FPN
from stylecodec.encoder.map2style import EqualLinear, GradualStyleBlock
from stylecodec.encoder.psp import GradualStyleEncoder

__all__ = ["Backbone", "FPN", "EqualLinear", "GradualStyleBlock", "GradualStyleEncoder"]
