"""Range coding of a sequence of categorical codes with exact integer tables, on ``constriction``'s
queue coder (``constriction.stream.queue.RangeEncoder`` / ``RangeDecoder``, version pinned: 0.5.0),
with the shortest termination.

    alphabet = Alphabet([freqs_0, freqs_1, ...])     # integer frequency tables, each summing to 2^16
    payload = encode(alphabet, [(table, index), ...])
    dec = Decoder(alphabet, payload); index = dec.decode(table)   # one code at a time
    payload == encode(alphabet, codes)                             # the canonical form (decoder's check)

Exactness. ``constriction`` builds a 24-bit table from the probabilities it is given ("fast"
quantisation, ``perfect=False``): cdf_i = floor(C_i · (2^24 − n) / S) + i for cumulative weights C_i
of n symbols summing to S. Given INTEGER weights with S = 2^16 every step is exact in float64
(C_i · (2^24 − n) < 2^40, the division by 2^16 is exact), so the 24-bit table is an integer
function of the integer table (:func:`lift`), the same on every machine; the coder itself is
integer arithmetic. :data:`CODER_SHA256` pins the bytes the coder writes for a fixed probe: another
``constriction`` that quantised or coded differently is refused before it writes a stream.

Termination. The encoder's output (32-bit words, written big-endian) is cut to the SHORTEST byte
string that the decoder, reading zeros past its end, decodes to the same codes: for each length L
from the full one down, the first L bytes, else the first L bytes plus one in the last byte (with
carry), is tried by decoding; the shortest length that works is kept (a string that works at L has
one that works at L + 1, so the scan stops at the first length that fails). This costs about
0.3 bytes above −log2 p per terminated sequence, against 1–2.5 bytes for plain truncation and
4–8 for a flushed rANS state. The result is a function of the codes alone, so a decoder can
re-encode what it decoded and require the same bytes (:func:`encode` again).
"""
from __future__ import annotations

import functools
import hashlib
import math
from typing import Callable, Sequence

import numpy as np

from ..errors import StylecodecError

__all__ = ["Alphabet", "Decoder", "InvalidPayload", "encode", "lift", "terminate", "PRECISION", "CONSTRICTION_VERSION",
           "CODER_SHA256"]

PRECISION = 24                     # constriction's categorical models (DefaultContiguousCategoricalEntropyModel)
TABLE_BITS = 16                    # the integer tables given to an Alphabet sum to 2^16
CONSTRICTION_VERSION = "0.5.0"
# sha256 of the payloads encode() writes for the probe of self_check() (constriction 0.5.0).
CODER_SHA256 = "fab2c3761990f36b4c68d28bf5b42229f9da8051075bce83a04c37851c9ce018"


def _constriction():
    try:
        import constriction
    except ImportError:      # a declared dependency; the message says what to install
        raise StylecodecError(f"the entropy coder needs constriction=={CONSTRICTION_VERSION} "
                              f"(pip install constriction=={CONSTRICTION_VERSION})") from None
    return constriction


def lift(freqs: Sequence[int]) -> np.ndarray:
    """The 24-bit frequencies constriction codes a 16-bit integer table with (module docstring):
    int64 [n], summing to 2^24, each >= 1."""
    f = np.asarray(freqs, dtype=np.int64)
    n = f.size
    cum = np.concatenate([[0], np.cumsum(f)])
    cdf = (cum * ((1 << PRECISION) - n)) >> TABLE_BITS
    cdf = cdf + np.arange(n + 1)
    return np.diff(cdf)


class Alphabet:
    """Integer frequency tables (each of n >= 2 positive weights summing to 2^16) as constriction
    models; :attr:`bits` [table][index] = −log2 of the probability actually coded."""

    def __init__(self, tables: Sequence[Sequence[int]]):
        model = _constriction().stream.model
        self.models, self.bits = [], []
        for t in tables:
            f = np.asarray(t, dtype=np.int64)
            if f.ndim != 1 or f.size < 2 or (f <= 0).any() or int(f.sum()) != 1 << TABLE_BITS:
                raise ValueError(f"a table has n >= 2 positive integer weights summing to 2^{TABLE_BITS}")
            self.models.append(model.Categorical(f.astype(np.float64), perfect=False))
            self.bits.append(PRECISION - np.log2(lift(f).astype(np.float64)))
        self.sizes = [len(b) for b in self.bits]


def _to_bytes(words: np.ndarray) -> bytes:
    return np.asarray(words, dtype=np.uint32).astype(">u4").tobytes().rstrip(b"\0")


def _to_words(data: bytes) -> np.ndarray:
    data = bytes(data) + bytes(-len(data) % 4)           # the decoder reads zeros past the end
    return np.frombuffer(data, dtype=">u4").astype(np.uint32)


class InvalidPayload(ValueError):
    """The bytes are no range-coded string under these tables (constriction found the decoder's
    point outside its range)."""


class Decoder:
    """Decodes codes one at a time from ``payload`` (zeros are read past its end, as the
    termination assumes). ``decode(table)`` returns the index, 0 <= index < that table's size, or
    raises :class:`InvalidPayload`."""

    def __init__(self, alphabet: Alphabet, payload: bytes):
        self.alphabet = alphabet
        self._dec = _constriction().stream.queue.RangeDecoder(_to_words(payload))

    def decode(self, table: int) -> int:
        try:
            return int(self._dec.decode(self.alphabet.models[table], 1)[0])
        except AssertionError as e:       # what constriction raises for invalid compressed data
            raise InvalidPayload(str(e)) from None


def _decodes_to(alphabet: Alphabet, data: bytes, codes: Sequence[tuple[int, int]]) -> bool:
    dec = Decoder(alphabet, data)
    try:
        return all(dec.decode(t) == i for t, i in codes)
    except InvalidPayload:
        return False


def _plus_one(prefix: bytes) -> bytes | None:
    """``prefix`` + 1 in its last byte, carried; None when it overflows (all 0xff)."""
    b = bytearray(prefix)
    i = len(b) - 1
    while i >= 0 and b[i] == 0xFF:
        b[i] = 0
        i -= 1
    if i < 0:
        return None
    b[i] += 1
    return bytes(b)


def terminate(sealed: bytes, valid: Callable[[bytes], bool]) -> bytes:
    """The shortest byte string that ``valid`` accepts, scanning lengths down from ``sealed`` (which
    it must accept): at each length its prefix first, then the prefix plus one (module docstring)."""
    best = sealed.rstrip(b"\0")
    for n in range(len(best) - 1, -1, -1):
        prefix = best[:n]
        found = None
        for cand in (prefix, _plus_one(prefix) if n else None):
            if cand is not None and valid(cand):
                found = cand
                break
        if found is None:
            break
        best = found.rstrip(b"\0")
    return best


def encode(alphabet: Alphabet, codes: Sequence[tuple[int, int]]) -> bytes:
    """The codes ((table, index) pairs, in order) as one terminated byte string (b"" for none)."""
    if not codes:
        return b""
    enc = _constriction().stream.queue.RangeEncoder()
    one = np.empty(1, dtype=np.int32)
    for t, i in codes:
        one[0] = i
        enc.encode(one, alphabet.models[t])
    sealed = _to_bytes(enc.get_compressed())
    return terminate(sealed, lambda data: _decodes_to(alphabet, data, codes))


def _installed_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("constriction")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _probe() -> tuple[Alphabet, list[list[tuple[int, int]]]]:
    """A fixed alphabet and code sequences exercising small and large tables, skewed and flat."""
    tables = []
    for n in (2, 3, 16, 255, 1000):
        w = [1 + (k * 7919) % 97 for k in range(n)]
        total = sum(w)
        f = [max(1, x * (1 << TABLE_BITS) // total) for x in w]
        f[0] += (1 << TABLE_BITS) - sum(f)
        tables.append(f)
    alphabet = Alphabet(tables)
    seqs = []
    for length in (1, 5, 40, 300):
        seqs.append([(k % len(tables), (k * 31 + length) % alphabet.sizes[k % len(tables)]) for k in range(length)])
    return alphabet, seqs


@functools.lru_cache(maxsize=None)
def self_check() -> str:
    """sha256 of the probe's payloads; raises when it is not :data:`CODER_SHA256` (another coder)."""
    alphabet, seqs = _probe()
    h = hashlib.sha256()
    for codes in seqs:
        data = encode(alphabet, codes)
        h.update(len(data).to_bytes(4, "big") + data)
    digest = h.hexdigest()
    if digest != CODER_SHA256:
        raise StylecodecError(f"the range coder writes other bytes than the reference (probe sha256 {digest[:16]}… != "
                              f"{CODER_SHA256[:16]}…; constriction {_installed_version()}, expected "
                              f"{CONSTRICTION_VERSION}): streams made here would not decode elsewhere")
    return digest


def ideal_bits(alphabet: Alphabet, codes: Sequence[tuple[int, int]]) -> float:
    """−log2 p of the codes under the tables actually coded (24-bit)."""
    return math.fsum(float(alphabet.bits[t][i]) for t, i in codes)
