"""GAN-inversion encoder: a pSp/e4e gradual style encoder on a timm backbone."""
from stylecodec.encoder.backbone import Backbone
from stylecodec.encoder.fpn import FPN
from stylecodec.encoder.map2style import EqualLinear, GradualStyleBlock
from stylecodec.encoder.psp import GradualStyleEncoder

__all__ = ["Backbone", "FPN", "EqualLinear", "GradualStyleBlock", "GradualStyleEncoder"]
