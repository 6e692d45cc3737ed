"""StyleGAN2 (config-F style) in pure PyTorch, parameter-compatible with stylegan2-ada-pytorch.

    G = build_generator(256)                     # the project's default prior (n = 14 ws)
    img = G(z, None, noise_mode='const')         # [N, 3, 256, 256], roughly in [-1, 1]
    img = G.synthesis(ws, noise_mode='const')    # ws: [N, G.num_ws, G.w_dim] (W+)
    G = load_official('ffhq.pkl')                # official pickle -> our Generator (no code run)

Owns: the generator and discriminator networks, their pure-torch ops and official-weight loading.
May import: ``stylecodec.errors``, ``files``, ``safe_unpickle`` and torch; nothing above them.
"""
from __future__ import annotations

import math

from .discriminator import Discriminator
from .layers import MappingNetwork
from .official import (OfficialWeightsError, UnsafeOfficialPickleError, load_checkpoint, load_official,
                       save_checkpoint)
from .synthesis import Generator, SynthesisNetwork

__all__ = ["Generator", "Discriminator", "MappingNetwork", "SynthesisNetwork", "load_official",
           "load_checkpoint", "save_checkpoint", "OfficialWeightsError", "UnsafeOfficialPickleError",
           "num_ws_for", "generator_kwargs", "discriminator_kwargs", "build_generator", "build_discriminator",
           "DEFAULT_CHANNEL_BASE", "DEFAULT_CHANNEL_MAX"]

# Project default widths (see experiments/bench_generator.py): 256 ch at 4..64 px, 128 at 128, 64 at 256.
DEFAULT_CHANNEL_BASE = 16384
DEFAULT_CHANNEL_MAX = 256


def num_ws_for(resolution: int) -> int:
    """Number of W+ vectors of a 'skip' generator: 2*log2(R) - 2 (14 at 256, 18 at 1024)."""
    return 2 * int(math.log2(resolution)) - 2


def generator_kwargs(resolution: int = 256, channel_base: int = DEFAULT_CHANNEL_BASE,
                     channel_max: int = DEFAULT_CHANNEL_MAX, z_dim: int = 512, w_dim: int = 512,
                     mapping_layers: int = 8, img_channels: int = 3, c_dim: int = 0,
                     num_fp16_res: int = 4, conv_clamp: float | None = 256, **synthesis_extra) -> dict:
    """Constructor kwargs of a StyleGAN2-ADA-style Generator (ADA defaults: fp16 top 4, clamp 256)."""
    return dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=resolution, img_channels=img_channels,
                mapping_kwargs=dict(num_layers=mapping_layers),
                synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max,
                                      num_fp16_res=num_fp16_res, conv_clamp=conv_clamp, **synthesis_extra))


def discriminator_kwargs(resolution: int = 256, channel_base: int = DEFAULT_CHANNEL_BASE,
                         channel_max: int = DEFAULT_CHANNEL_MAX, img_channels: int = 3, c_dim: int = 0,
                         num_fp16_res: int = 4, conv_clamp: float | None = 256,
                         mbstd_group_size: int | None = 4) -> dict:
    """Constructor kwargs of the matching resnet Discriminator."""
    return dict(c_dim=c_dim, img_resolution=resolution, img_channels=img_channels, architecture="resnet",
                channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
                conv_clamp=conv_clamp, epilogue_kwargs=dict(mbstd_group_size=mbstd_group_size))


def build_generator(resolution: int = 256, **kwargs) -> Generator:
    return Generator(**generator_kwargs(resolution, **kwargs))


def build_discriminator(resolution: int = 256, **kwargs) -> Discriminator:
    return Discriminator(**discriminator_kwargs(resolution, **kwargs))
