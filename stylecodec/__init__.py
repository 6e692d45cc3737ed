"""stylecodec: scalable face-image coding on a StyleGAN2 prior, for machines and people."""
import warnings as _warnings

__version__ = "0.1.0"

# compressai 1.2.8 calls torch.jit.script at import, which torch 2.14 flags on every run.
_warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
