"""StyleGAN2 synthesis network and Generator (config-F style, 'skip' toRGB by default).

Same module tree, parameter and buffer names as NVIDIA's stylegan2-ada-pytorch, so an
official state dict loads one to one (see :mod:`stylecodec.gan.official`). The W+ code
has ``num_ws = 2*log2(R) - 2`` vectors: one per conv layer plus the last toRGB.
"""
from __future__ import annotations

import copy
import math

import torch

from .layers import Conv2dLayer, FullyConnectedLayer, MappingNetwork
from .ops import ACTIVATIONS, assert_shape, bias_act, modulated_conv2d, setup_filter, upsample2d

__all__ = ["SynthesisLayer", "ToRGBLayer", "SynthesisBlock", "SynthesisNetwork", "Generator"]

_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class SynthesisLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output channels.
        w_dim,                          # Intermediate latent (W) dimensionality.
        resolution,                     # Resolution of this layer.
        kernel_size     = 3,            # Convolution kernel size.
        up              = 1,            # Integer upsampling factor.
        use_noise       = True,         # Enable noise input?
        activation      = 'lrelu',      # Activation function: 'relu', 'lrelu', etc.
        resample_filter = [1,3,3,1],    # Low-pass filter to apply when resampling activations.
        conv_clamp      = None,         # Clamp the output of convolution layers to +-X, None = disable clamping.
    ):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation][2]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1):
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', not {noise_mode!r}")
        in_res = self.resolution // self.up
        assert_shape(x, [None, self.weight.shape[1], in_res, in_res], "SynthesisLayer input")
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == 'random':
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == 'const':
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv)
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=act_clamp)


class ToRGBLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output (color) channels.
        w_dim,                          # Intermediate latent (W) dimensionality.
        kernel_size     = 1,            # Convolution kernel size.
        conv_clamp      = None,         # Clamp the output to +-X, None = disable clamping.
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * (kernel_size ** 2))   # style gain, no demodulation

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                        # Number of input channels, 0 = first block.
        out_channels,                       # Number of output channels.
        w_dim,                              # Intermediate latent (W) dimensionality.
        resolution,                         # Resolution of this block.
        img_channels,                       # Number of output color channels.
        is_last,                            # Is this the last block?
        architecture        = 'skip',       # Architecture: 'orig', 'skip', 'resnet'.
        resample_filter     = [1,3,3,1],    # Low-pass filter to apply when resampling activations.
        conv_clamp          = None,         # Clamp the output of convolution layers to +-X, None = disable clamping.
        use_fp16            = False,        # Run this block in half precision (on CUDA only)?
        fp16_dtype          = 'float16',    # Half type for use_fp16: 'float16' or 'bfloat16'.
        **layer_kwargs,                     # Arguments for SynthesisLayer.
    ):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', not {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.fp16_dtype = _HALF[fp16_dtype]
        self.register_buffer('resample_filter', setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
            conv_clamp=conv_clamp, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                resample_filter=resample_filter)

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, **layer_kwargs):
        assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim], f"b{self.resolution} ws")
        w_iter = iter(ws.unbind(dim=1))
        half = self.use_fp16 and not force_fp32 and ws.device.type == 'cuda'   # CPU: always fp32
        dtype = self.fp16_dtype if half else torch.float32
        if fused_modconv is None:
            fused_modconv = (not self.training) and (dtype == torch.float32 or int(ws.shape[0]) == 1)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        else:
            assert_shape(x, [None, self.in_channels, self.resolution // 2, self.resolution // 2], f"b{self.resolution} x")
            x = x.to(dtype)
            if self.architecture == 'resnet':
                y = self.skip(x, gain=math.sqrt(0.5))
                x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
                x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=math.sqrt(0.5), **layer_kwargs)
                x = y + x
            else:
                x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
                x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        if img is not None:
            assert_shape(img, [None, self.img_channels, self.resolution // 2, self.resolution // 2], f"b{self.resolution} img")
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(torch.nn.Module):
    def __init__(self,
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output image resolution (power of two, 4..1024+).
        img_channels,               # Number of color channels.
        channel_base    = 32768,    # Overall multiplier for the number of channels.
        channel_max     = 512,      # Maximum number of channels in any layer.
        num_fp16_res    = 0,        # Use half precision for the N highest resolutions (CUDA only).
        conv_clamp      = None,     # Clamp the output of convolution layers to +-X, None = disable clamping.
        **block_kwargs,             # Arguments for SynthesisBlock (architecture, fp16_dtype, use_noise, ...).
    ):
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, not {img_resolution}")
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        self.channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        if min(self.channels_dict.values()) < 1:
            raise ValueError(f"channel_base={channel_base} gives 0 channels at {img_resolution}px")
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = self.channels_dict[res // 2] if res > 4 else 0
            is_last = (res == self.img_resolution)
            block = SynthesisBlock(in_channels, self.channels_dict[res], w_dim=w_dim, resolution=res,
                img_channels=img_channels, is_last=is_last, use_fp16=(res >= fp16_resolution),
                conv_clamp=conv_clamp, **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f'b{res}', block)

    def forward(self, ws, **block_kwargs):
        """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] (float32, roughly in [-1, 1]).

        block_kwargs: noise_mode='random'|'const'|'none', force_fp32, fused_modconv.
        """
        assert_shape(ws, [None, self.num_ws, self.w_dim], "synthesis ws")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), **block_kwargs)
            w_idx += block.num_conv
        return img


class Generator(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = unconditional.
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output resolution.
        img_channels,               # Number of output color channels.
        mapping_kwargs      = {},   # Arguments for MappingNetwork.
        synthesis_kwargs    = {},   # Arguments for SynthesisNetwork.
    ):
        super().__init__()
        self.init_kwargs = copy.deepcopy(dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim,
            img_resolution=img_resolution, img_channels=img_channels,
            mapping_kwargs=dict(mapping_kwargs), synthesis_kwargs=dict(synthesis_kwargs)))
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, **synthesis_kwargs):
        """z [N, z_dim], c [N, c_dim] or None -> image [N, C, R, R]. Default noise_mode='random'."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)
