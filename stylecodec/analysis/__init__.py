"""Machine analysis from the basic layer alone (no pixels).

Owns: :mod:`.heads` (the landmark + identity heads network and its coordinate convention) and
:mod:`.teacher` (the cached teacher labels the heads are trained against). Storing heads in a
checkpoint is :mod:`stylecodec.zoo`'s; running them on a stream is ``Codec.analyze``.

May import: ``stylecodec.errors``, ``paths``, ``files``, ``images``, ``data`` and ``assets`` (the
teacher networks); never ``zoo``, ``codec``, ``train`` or ``eval`` (they import it).
"""
