"""StyleGAN2 discriminator ('resnet' by default), names as in stylegan2-ada-pytorch."""
from __future__ import annotations

import copy
import math

import torch

from .layers import Conv2dLayer, FullyConnectedLayer, MappingNetwork
from .ops import assert_shape, downsample2d, setup_filter

__all__ = ["DiscriminatorBlock", "MinibatchStdLayer", "DiscriminatorEpilogue", "Discriminator"]

_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class DiscriminatorBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                        # Number of input channels, 0 = first block.
        tmp_channels,                       # Number of intermediate channels.
        out_channels,                       # Number of output channels.
        resolution,                         # Resolution of this block.
        img_channels,                       # Number of input color channels.
        first_layer_idx,                    # Index of the first layer.
        architecture        = 'resnet',     # Architecture: 'orig', 'skip', 'resnet'.
        activation          = 'lrelu',      # Activation function: 'relu', 'lrelu', etc.
        resample_filter     = [1,3,3,1],    # Low-pass filter to apply when resampling activations.
        conv_clamp          = None,         # Clamp the output of convolution layers to +-X, None = disable clamping.
        use_fp16            = False,        # Run this block in half precision (on CUDA only)?
        fp16_dtype          = 'float16',    # Half type for use_fp16: 'float16' or 'bfloat16'.
        freeze_layers       = 0,            # Freeze-D: Number of layers to freeze.
    ):
        assert in_channels in (0, tmp_channels)
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', not {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.fp16_dtype = _HALF[fp16_dtype]
        self.register_buffer('resample_filter', setup_filter(resample_filter))
        self.num_layers = 0

        def trainable() -> bool:   # Freeze-D: the first freeze_layers layers are buffers
            self.num_layers += 1
            return self.first_layer_idx + self.num_layers - 1 >= freeze_layers

        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                trainable=trainable(), conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
            trainable=trainable(), conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
            trainable=trainable(), resample_filter=resample_filter, conv_clamp=conv_clamp)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                trainable=trainable(), resample_filter=resample_filter)

    def forward(self, x, img, force_fp32=False):
        device = (x if x is not None else img).device
        half = self.use_fp16 and not force_fp32 and device.type == 'cuda'
        dtype = self.fp16_dtype if half else torch.float32
        if x is not None:
            assert_shape(x, [None, self.in_channels, self.resolution, self.resolution], f"D b{self.resolution} x")
            x = x.to(dtype)
        if self.in_channels == 0 or self.architecture == 'skip':
            assert_shape(img, [None, self.img_channels, self.resolution, self.resolution], f"D b{self.resolution} img")
            img = img.to(dtype)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None
        if self.architecture == 'resnet':
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class MinibatchStdLayer(torch.nn.Module):
    def __init__(self,
        group_size,                 # Samples per group, None = the whole minibatch.
        num_channels    = 1,        # Number of stddev features appended.
    ):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        N, C, H, W = x.shape
        G = min(self.group_size, N) if self.group_size is not None else N
        if N % G:
            raise ValueError(f"minibatch std: batch {N} is not a multiple of group size {G}")
        F = self.num_channels
        c = C // F
        y = x.reshape(G, -1, F, c, H, W)    # [GnFcHW] split minibatch into n groups of size G
        y = y - y.mean(dim=0)               # [GnFcHW] subtract group mean
        y = y.square().mean(dim=0)          # [nFcHW]  variance over group
        y = (y + 1e-8).sqrt()               # [nFcHW]  stddev
        y = y.mean(dim=[2, 3, 4])           # [nF]     average over channels and pixels
        y = y.reshape(-1, F, 1, 1).repeat(G, 1, H, W)   # [NFHW]
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Number of input channels.
        cmap_dim,                       # Dimensionality of mapped conditioning label, 0 = no label.
        resolution,                     # Resolution of this block.
        img_channels,                   # Number of input color channels.
        architecture        = 'resnet', # Architecture: 'orig', 'skip', 'resnet'.
        mbstd_group_size    = 4,        # Group size for the minibatch standard deviation layer, None = entire minibatch.
        mbstd_num_channels  = 1,        # Number of features for the minibatch standard deviation layer, 0 = disable.
        activation          = 'lrelu',  # Activation function: 'relu', 'lrelu', etc.
        conv_clamp          = None,     # Clamp the output of convolution layers to +-X, None = disable clamping.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * (resolution ** 2), in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        assert_shape(x, [None, self.in_channels, self.resolution, self.resolution], "D epilogue x")
        x = x.to(torch.float32)
        if self.architecture == 'skip':
            x = x + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            assert_shape(cmap, [None, self.cmap_dim], "D cmap")
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(torch.nn.Module):
    def __init__(self,
        c_dim,                          # Conditioning label (C) dimensionality.
        img_resolution,                 # Input resolution.
        img_channels,                   # Number of input color channels.
        architecture        = 'resnet', # Architecture: 'orig', 'skip', 'resnet'.
        channel_base        = 32768,    # Overall multiplier for the number of channels.
        channel_max         = 512,      # Maximum number of channels in any layer.
        num_fp16_res        = 0,        # Use half precision for the N highest resolutions (CUDA only).
        conv_clamp          = None,     # Clamp the output of convolution layers to +-X, None = disable clamping.
        cmap_dim            = None,     # Dimensionality of mapped conditioning label, None = default.
        block_kwargs        = {},       # Arguments for DiscriminatorBlock.
        mapping_kwargs      = {},       # Arguments for MappingNetwork.
        epilogue_kwargs     = {},       # Arguments for DiscriminatorEpilogue.
    ):
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, not {img_resolution}")
        super().__init__()
        self.init_kwargs = copy.deepcopy(dict(c_dim=c_dim, img_resolution=img_resolution,
            img_channels=img_channels, architecture=architecture, channel_base=channel_base,
            channel_max=channel_max, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp, cmap_dim=cmap_dim,
            block_kwargs=dict(block_kwargs), mapping_kwargs=dict(mapping_kwargs),
            epilogue_kwargs=dict(epilogue_kwargs)))
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels_dict[4]
        if c_dim == 0:
            cmap_dim = 0
        common_kwargs = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        cur_layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res] if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels_dict[res], channels_dict[res // 2], resolution=res,
                first_layer_idx=cur_layer_idx, use_fp16=(res >= fp16_resolution), **block_kwargs, **common_kwargs)
            setattr(self, f'b{res}', block)
            cur_layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels_dict[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common_kwargs)

    def forward(self, img, c=None, **block_kwargs):
        """img [N, img_channels, R, R] in [-1, 1] -> logits [N, 1]."""
        assert_shape(img, [None, self.img_channels, self.img_resolution, self.img_resolution], "D img")
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
