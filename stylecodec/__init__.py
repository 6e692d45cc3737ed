"""stylecodec: scalable face-image coding on a StyleGAN2 prior, for machines and people.

Owns, from the bottom up (a module imports only modules of lower layers; tests/test_layout.py
checks that there is no cycle):

1. ``errors``, ``paths``, ``files``, ``safe_unpickle``, ``threads`` (torch's thread count), ``layers``
   (LAYER_NAMES, the layer split), ``images`` (reading faces, the centre square)
2. ``bitstream`` (the one container definition), ``rate`` (the rate-budget rule)
3. ``gan/``, ``encoder/``, ``entropy/`` (LSET, range coding, the group coder), ``assets/`` (third-party
   networks), ``anchors/``, ``data``
4. ``model`` (StyleCodecModel), ``analysis/`` (heads), ``metrics/``
5. ``zoo`` (model registry, checkpoint format, heads storage, :class:`~stylecodec.zoo.LoadedModel`)
6. ``codec`` (Codec: compress / decompress / analyze), ``align``, ``batch`` (compress-dir)
7. ``train/``, ``eval/``
8. ``commands/``, ``cli``

May import: third-party packages only (this file: the version and a warning filter).
"""
import warnings as _warnings

__version__ = "0.1.0"

# compressai 1.2.8 calls torch.jit.script at import, which torch 2.14 flags on every run.
_warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
