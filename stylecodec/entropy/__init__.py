"""Entropy model and coding of the layered latents.

Owns: :mod:`.transforms` (W+ <-> per-layer latents y_l), :mod:`.lset` (LSET: p(ŷ_l | ŷ_<l), with a
bit-exact float64 path and the cached :class:`~.lset.LSETCursor`), :mod:`.gaussian` (snapping,
CDF tables, the per-layer stream encoder / decoder, the training likelihood), :mod:`.range_coder`
(constriction's range coder with exact integer tables and the shortest termination) and
:mod:`.coder` (the :class:`~.coder.GroupCoder`: the one loop over a layer's groups, for training
and for coding).

May import: ``stylecodec.errors``, ``layers``, ``bitstream`` (its error type), torch, numpy,
constriction and CompressAI's compiled CDF quantiser; never the model, the codec or anything above them.
"""
