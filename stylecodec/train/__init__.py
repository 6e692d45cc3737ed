"""Training: the StyleGAN2 prior, the codec (with its machine heads) and the analysis heads.

Owns: :mod:`.prior`, :mod:`.codec` (+ :mod:`.codec_config`, :mod:`.losses`, :mod:`.machine_heads`),
:mod:`.heads`, the CLI presets (:mod:`.presets`, plain data: ``train --help`` needs no torch),
checkpoint transfer (:mod:`.transfer`) and the shared loop plumbing (:mod:`.common`: processes,
logging, checkpoints and the one resume rule, signals).

May import: any library module below it (``model``, ``zoo``, ``codec``, ``gan``, ``data``,
``metrics``, ``assets``, ``analysis``, ``bitstream``, ...); never ``eval`` or ``commands``.
"""
