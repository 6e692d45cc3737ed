"""The container (version 2): layout, truncation rule, every error kind, extract, the model key and
fingerprint, version 1 refused, a fuzz."""
from __future__ import annotations

import dataclasses
import hashlib
import random
import time

import pytest
import torch

from stylecodec.bitstream import (HEADER_BYTES, MAX_LAYER_BYTES, BitstreamError, ModelKey, StreamHeader,
                                  basic_prefix, container_bytes, crc8, describe, extract, fingerprint, model_digest,
                                  pack, unpack)

KEY = ModelKey(hashlib.sha256(b"a model").digest())
OTHER = ModelKey(hashlib.sha256(b"another model").digest())
SAME_TAG = ModelKey(KEY.digest[:1] + OTHER.digest[1:])          # another model, same fingerprint byte
HEADER = StreamHeader(resolution=256, quality=5)
PAYLOADS = [bytes(range(1, 21)), bytes(range(100, 124)), bytes(range(200, 230))]


def stream(n: int = 3, key: ModelKey = KEY) -> bytes:
    return pack(HEADER, PAYLOADS[:n], key)


def error_of(data, key: ModelKey | None = KEY, **kw) -> str:
    with pytest.raises(BitstreamError) as e:
        unpack(data, key, **kw)
    return str(e.value)


def test_crc8_is_smbus():
    assert crc8(b"123456789") == 0xF4


def test_layout_and_size():
    s = stream()
    assert s[0] == 0xA2 and s[1] == KEY.tag and s[2] == (3 << 5) | (5 << 2) | 3
    assert s[3] == 20 and s[5:25] == PAYLOADS[0] and s[25] == 24 and s[27:51] == PAYLOADS[1] and s[52:] == PAYLOADS[2]
    assert len(s) - sum(map(len, PAYLOADS)) == 8 == container_bytes([20, 24, 30])
    assert len(stream(1)) - len(PAYLOADS[0]) == 4 == container_bytes([20])
    assert len(stream(2)) - 44 == 6 == container_bytes([20, 24])
    assert container_bytes([0, 200, 70_000 % 65536]) == 3 + 3 + 1 + 2


def test_fixed_container_bytes():
    """The container around fixed payloads, byte for byte (the spec's worked example with coded payloads:
    tests/test_entropy.py::test_worked_example_of_the_spec)."""
    key = ModelKey(hashlib.sha256(b"stylecodec worked example").digest())
    data = pack(StreamHeader(resolution=256, quality=3), [b"\x12\x34\x56", b"\x78", b"\x9a\xbc"], key)
    assert data.hex(" ") == "a2 27 6f 03 fb 12 34 56 01 92 78 7d 9a bc"
    assert extract(data, 1).hex(" ") == "a2 27 6d fb 12 34 56"


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("res,quality", [(32, 0), (256, 7), (1024, 3), (4096, 1)])
def test_round_trip(n, res, quality):
    h = StreamHeader(res, quality)
    got_h, got_p = unpack(pack(h, PAYLOADS[:n], KEY), KEY)
    assert got_p == PAYLOADS[:n]
    assert got_h == dataclasses.replace(h, n_layers=n, fingerprint=KEY.tag)
    assert unpack(pack(h, PAYLOADS[:n], KEY))[1] == PAYLOADS[:n]        # no key: the structure only


def test_round_trip_empty_and_long_payloads():
    payloads = [b"", b"x" * 200, b"y" * MAX_LAYER_BYTES]
    s = pack(HEADER, payloads, KEY)
    assert unpack(s, KEY)[1] == payloads
    d = describe(s, KEY)
    assert [layer["overhead_bytes"] for layer in d["layers"]] == [2, 3, 1]     # varint + CRC; 2-byte varint; CRC
    assert unpack(pack(HEADER, [b"", b""], KEY), KEY)[1] == [b"", b""]      # an empty last layer is its CRC byte


def test_stream_cut_after_a_layer_decodes_that_prefix():
    s = stream()
    cut_basic = s[:HEADER_BYTES + 2 + len(PAYLOADS[0])]
    header, payloads = unpack(cut_basic, KEY)
    assert header.n_layers == 3 and payloads == PAYLOADS[:1]
    cut_middle = s[:len(cut_basic) + 2 + len(PAYLOADS[1])]
    assert unpack(cut_middle, KEY)[1] == PAYLOADS[:2]
    d = describe(cut_basic)
    assert (d["layers_declared"], d["layers_present"]) == (3, 1)
    assert basic_prefix(s) == cut_basic and basic_prefix(stream(1)) == stream(1)


def test_extract_equals_pack_of_fewer_layers_without_the_model():
    s = stream()
    for n in (1, 2, 3):
        assert extract(s, n) == stream(n)
        assert unpack(extract(s, n), KEY)[0].n_layers == n
    cut = s[:HEADER_BYTES + 2 + len(PAYLOADS[0]) + 2 + len(PAYLOADS[1])]
    assert extract(cut, 2) == stream(2) and extract(cut, 1) == stream(1)
    with pytest.raises(BitstreamError, match="holds 2"):
        extract(cut, 3)


def test_version_1_is_refused_with_its_version():
    v1 = bytes.fromhex("5346431c630684" "0cff" "e2ff6e322e0000005b1e2212" "0460" "60f8b463" "08c6" "6c2dc811575b3a0c")
    for data in (v1, v1[:7], b"SFC", b"SF"):
        msg = error_of(data)
        assert "bitstream version 1" in msg and "version 2" in msg and "\n" not in msg
    assert "bitstream version 1" in error_of(v1, None)


def test_bad_magic():
    assert "bad magic 0x4a" in error_of(b"JFIF" + stream()[4:])
    assert "bad magic" in error_of(b"\x00")


@pytest.mark.parametrize("version,newer", [(3, True), (15, True), (0, False), (1, False)])
def test_other_versions(version, newer):
    s = bytearray(stream())
    s[0] = 0xA0 | version
    msg = error_of(bytes(s))
    assert f"unsupported bitstream version {version}" in msg and ("newer" in msg) == newer


@pytest.mark.parametrize("n", range(HEADER_BYTES))
def test_truncated_header(n):
    assert "truncated header" in error_of(stream()[:n])


def test_header_without_layers():
    assert "basic layer is missing" in error_of(stream()[:HEADER_BYTES])


@pytest.mark.parametrize("end,layer", [(HEADER_BYTES + 1, "layer 0 (basic)"), (HEADER_BYTES + 7, "layer 0 (basic)"),
                                       (HEADER_BYTES + 22 + 1, "layer 1 (middle)"),
                                       (HEADER_BYTES + 22 + 10, "layer 1 (middle)")])
def test_truncated_layer_of_known_length(end, layer):
    msg = error_of(stream()[:end])
    assert "truncated layer" in msg and layer in msg


def test_cut_inside_the_last_layer_is_caught_by_its_crc():
    s = stream()
    for cut in (1, 5, 29):
        msg = error_of(s[:-cut])
        assert "CRC mismatch in layer 2 (enhanced)" in msg and "truncated" in msg
        assert unpack(s[:-cut])[1][2] == PAYLOADS[2][:-cut]            # without the model: structure only
    assert "CRC mismatch in layer 0 (basic)" in error_of(stream(1)[:-3])


def test_allow_partial_drops_an_incomplete_upper_layer():
    s = stream()
    assert unpack(s[:-1], KEY, allow_partial=True)[1] == PAYLOADS[:2]             # last layer: by its CRC
    assert unpack(s[:HEADER_BYTES + 22 + 10], KEY, allow_partial=True)[1] == PAYLOADS[:1]   # known length
    assert "truncated layer 0" in error_of(s[:HEADER_BYTES + 5], allow_partial=True)
    assert "CRC mismatch in layer 0" in error_of(stream(1)[:-1], allow_partial=True)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_crc_mismatch_names_the_layer(layer):
    s = bytearray(stream())
    start = HEADER_BYTES + sum(2 + len(p) for p in PAYLOADS[:layer])
    s[start + 2 + 3] ^= 0x10
    assert f"CRC mismatch in layer {layer}" in error_of(bytes(s))


def test_header_damage_is_caught_by_the_crc():
    s = bytearray(stream())
    s[2] ^= 0x04                                     # quality index 5 -> 4
    assert "CRC mismatch in every layer" in error_of(bytes(s))
    s = bytearray(stream(1))
    s[2] ^= 0x80                                     # resolution
    assert "CRC mismatch in layer 0" in error_of(bytes(s))


def test_wrong_model():
    msg = error_of(stream(), OTHER)
    assert "wrong model" in msg and f"0x{KEY.tag:02x}" in msg and f"0x{OTHER.fingerprint:04x}" in msg
    assert "fingerprint mismatch" in msg
    assert "CRC mismatch in every layer" in error_of(stream(), SAME_TAG)       # the keyed CRCs catch it
    assert "CRC mismatch in layer 0" in error_of(stream(1), SAME_TAG)
    unpack(stream(), KEY)


def test_appended_bytes_are_damage_to_the_last_layer():
    msg = error_of(stream() + b"abc")
    assert "CRC mismatch in layer 2 (enhanced)" in msg and "extended" in msg
    assert "CRC mismatch in layer 0 (basic)" in error_of(stream(1) + b"\0")


def test_lengths_over_the_cap():
    head = stream()[:HEADER_BYTES]
    assert "exceeds the cap" in error_of(head + bytes([0x80, 0x80, 0x04]))        # 65536
    assert "longer than 3 bytes" in error_of(head + bytes([0xFF, 0xFF, 0xFF, 0x7F]))
    with pytest.raises(BitstreamError, match="exceeds the cap"):
        pack(HEADER, [b"\0" * (MAX_LAYER_BYTES + 1)], KEY)
    assert "exceeds the cap" in error_of(stream(1)[:HEADER_BYTES] + b"\0" * (MAX_LAYER_BYTES + 2))
    assert "exceeds the cap" in error_of(b"\xa2" + b"\0" * 300_000)


def test_malformed_fields():
    s = bytearray(stream())
    s[2] &= 0xFC
    assert "declares 0 layers" in error_of(bytes(s))
    head = stream()[:HEADER_BYTES]
    assert "non-minimal" in error_of(head + bytes([0x81, 0x00]))
    assert "bytes" in error_of("SFC")


def test_pack_validates_the_header():
    for bad in (StreamHeader(100, 0), StreamHeader(256, 8), StreamHeader(256, 0, OTHER.tag),
                StreamHeader(256, 0, version=3), StreamHeader(256, 0, n_layers=2)):
        with pytest.raises(BitstreamError):
            pack(bad, PAYLOADS, KEY)
    with pytest.raises(BitstreamError):
        pack(HEADER, [], KEY)
    with pytest.raises(ValueError):
        ModelKey(b"short")


def test_describe_accounts_for_every_byte():
    d = describe(stream())
    assert d["total_bytes"] == d["payload_bytes"] + d["overhead_bytes"] == len(stream())
    assert d["overhead_bytes"] == 8 and d["header_bytes"] == 3 and not d["crc_checked"]
    assert [layer["payload_bytes"] for layer in d["layers"]] == [20, 24, 30]
    assert d["bpp"] == pytest.approx(8 * 82 / 256 ** 2)
    assert describe(stream(), KEY)["crc_checked"]
    with pytest.raises(BitstreamError, match="wrong model"):
        describe(stream(), OTHER)


def _toy_state_dict():
    return {"b.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7,
            "a.bias": torch.tensor([1.5, -2.0]), "n": torch.tensor(3), "flag": torch.tensor([True, False]),
            "extra": "not a tensor"}


def test_fingerprint_is_stable_and_canonical():
    sd = _toy_state_dict()
    fp = fingerprint(sd)
    assert fp == 0x0684                               # pinned: identical weights, any machine
    key = ModelKey.from_state_dict(sd)
    assert key.fingerprint == fp and key.tag == 0x06 and key.digest == model_digest(sd) and len(key.digest) == 32
    reordered = dict(reversed(list(sd.items())))
    assert fingerprint(reordered) == fp
    as64 = {k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in sd.items()}
    assert fingerprint(as64) == fp
    changed = dict(sd, **{"a.bias": torch.tensor([1.5, -2.0001])})
    assert fingerprint(changed) != fp
    renamed = {("c.bias" if k == "a.bias" else k): v for k, v in sd.items()}
    assert fingerprint(renamed) != fp


def _mutate(rng: random.Random, s: bytes) -> tuple[str, bytes]:
    kind = rng.choice(["truncate", "flip1", "flips", "overwrite", "insert", "append", "random"])
    b = bytearray(s)
    if kind == "truncate":
        return kind, s[:rng.randrange(len(s))]
    if kind == "flip1":
        i = rng.randrange(8 * len(b))
        b[i // 8] ^= 1 << (i % 8)
    elif kind == "flips":
        for _ in range(rng.randint(2, 8)):
            i = rng.randrange(8 * len(b))
            b[i // 8] ^= 1 << (i % 8)
    elif kind == "overwrite":
        i = rng.randrange(len(b))
        b[i:i + rng.randint(1, 8)] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
    elif kind == "insert":
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
    elif kind == "append":
        b += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    else:
        b = bytearray(rng.getrandbits(8) for _ in range(rng.randint(0, 120)))
        if rng.random() < 0.5:
            b[:3] = s[:3]
    return kind, bytes(b)


def test_fuzz_2000_mutations_never_escape_bitstream_error():
    """With the model's key: everything is a BitstreamError or a prefix of the layers; a single bit
    flip outside the length fields and the count bits (which move the records) is always caught."""
    rng = random.Random(12345)
    outcomes: dict[str, int] = {}
    slowest = 0.0
    for _ in range(2000):
        n = rng.randint(1, 3)
        payloads = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))) for _ in range(n)]
        original = pack(StreamHeader(256, rng.randint(0, 7)), payloads, KEY)
        kind, data = _mutate(rng, original)
        t = time.perf_counter()
        try:
            _, got = unpack(data, KEY)
            outcome = "ok_intact" if got == payloads[:len(got)] else "ok_undetected"
        except BitstreamError:
            outcome = "BitstreamError"
        slowest = max(slowest, time.perf_counter() - t)
        if kind == "flip1" and outcome == "ok_undetected":
            pos = next(i for i in range(len(data)) if data[i] != original[i])
            fields = {2} | {HEADER_BYTES + sum(len(p) + 2 for p in payloads[:i]) for i in range(n - 1)}
            assert pos in fields, "a single bit flip in a CRC-covered byte went undetected"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print("fuzz outcomes:", outcomes, f"slowest {slowest * 1e3:.2f} ms")
    assert outcomes.get("ok_undetected", 0) <= 20      # CRC-8: ~1/256 of multi-byte damage
    assert slowest < 0.5
