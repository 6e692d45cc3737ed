"""Identity search over compressed faces, from their basic layers only (no pixels).

Owns: the identity source (:mod:`.identity`: basic layers -> unit embeddings, batched), the index
file and :class:`IdentityIndex` (:mod:`.index`), exact nearest-neighbour backends (:mod:`.backend`:
faiss ``IndexFlatIP`` when installed, numpy otherwise), building an index from a folder
(:mod:`.build`) and closed-set identification figures (:mod:`.identification`).
May import: ``bitstream``, ``codec``, ``analysis.heads``, ``batch`` (compress-dir, image listing), ``files``,
``errors``; nothing imports it but ``codec.Codec.identity`` and the commands.
"""
from .index import IdentityIndex, IndexFileError

__all__ = ["IdentityIndex", "IndexFileError"]
