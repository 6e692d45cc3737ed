"""The container: layout, truncation rule, every error kind, extract, fingerprint, a fuzz."""
from __future__ import annotations

import dataclasses
import random
import time

import pytest
import torch

from stylecodec.bitstream import (HEADER_BYTES, MAX_LAYER_BYTES, BitstreamError, StreamHeader, crc8, describe,
                                  extract, fingerprint, pack, unpack)

HEADER = StreamHeader(resolution=256, quality=5, fingerprint=0xBEEF)
PAYLOADS = [bytes(range(1, 21)), bytes(range(100, 124)), bytes(range(200, 230))]


def stream(n: int = 3) -> bytes:
    return pack(HEADER, PAYLOADS[:n])


def error_of(data, **kw) -> str:
    with pytest.raises(BitstreamError) as e:
        unpack(data, **kw)
    return str(e.value)


def test_crc8_is_smbus():
    assert crc8(b"123456789") == 0xF4


def test_layout_and_size_of_a_three_layer_stream():
    s = stream()
    assert s[:3] == b"SFC" and s[3] == 0x1C and s[4] == (3 << 5) | 5 and s[5:7] == b"\xbe\xef"
    assert len(s) == HEADER_BYTES + 3 * 2 + sum(map(len, PAYLOADS)) == 13 + 74


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("res,quality", [(32, 0), (256, 31), (1024, 7), (4096, 1)])
def test_round_trip(n, res, quality):
    h = StreamHeader(res, quality, 0x0102)
    got_h, got_p = unpack(pack(h, PAYLOADS[:n]), expected_fingerprint=0x0102)
    assert got_p == PAYLOADS[:n]
    assert got_h == dataclasses.replace(h, n_layers=n)


def test_round_trip_empty_and_long_payloads():
    payloads = [b"", b"x" * 200, b"y" * MAX_LAYER_BYTES]
    s = pack(HEADER, payloads)
    assert unpack(s)[1] == payloads
    assert describe(s)["layers"][1]["overhead_bytes"] == 3          # two-byte varint + CRC


def test_stream_cut_after_a_layer_decodes_that_prefix():
    s = stream()
    cut_basic = s[:HEADER_BYTES + 2 + len(PAYLOADS[0])]
    header, payloads = unpack(cut_basic)
    assert header.n_layers == 3 and payloads == PAYLOADS[:1]
    cut_middle = s[:len(cut_basic) + 2 + len(PAYLOADS[1])]
    assert unpack(cut_middle)[1] == PAYLOADS[:2]
    d = describe(cut_basic)
    assert (d["layers_declared"], d["layers_present"]) == (3, 1)


def test_extract_equals_pack_of_fewer_layers():
    s = stream()
    for n in (1, 2, 3):
        assert extract(s, n) == stream(n)
        assert unpack(extract(s, n))[0].n_layers == n
    cut = s[:HEADER_BYTES + 2 + len(PAYLOADS[0]) + 2 + len(PAYLOADS[1])]
    assert extract(cut, 2) == stream(2)
    with pytest.raises(BitstreamError, match="holds 2"):
        extract(cut, 3)


def test_bad_magic():
    assert "bad magic" in error_of(b"JFIF" + stream()[4:])
    assert "bad magic" in error_of(b"\x00")


def test_newer_version():
    s = bytearray(stream())
    s[3] = (2 << 4) | (s[3] & 0x0F)
    msg = error_of(bytes(s))
    assert "unsupported bitstream version 2" in msg and "newer" in msg


@pytest.mark.parametrize("n", range(HEADER_BYTES))
def test_truncated_header(n):
    assert "truncated header" in error_of(stream()[:n])


def test_header_without_layers():
    assert "basic layer is missing" in error_of(stream()[:HEADER_BYTES])


@pytest.mark.parametrize("cut,layer", [(1, "layer 0 (basic)"), (5, "layer 0 (basic)"), (-1, "layer 2 (enhanced)"),
                                       (HEADER_BYTES + 22 + 1, "layer 1 (middle)")])
def test_truncated_layer(cut, layer):
    s = stream()
    end = HEADER_BYTES + cut if 0 < cut < 20 else (len(s) + cut if cut < 0 else cut)
    msg = error_of(s[:end])
    assert "truncated layer" in msg and layer in msg


def test_allow_partial_drops_an_incomplete_upper_layer():
    s = stream()
    assert unpack(s[:-1], allow_partial=True)[1] == PAYLOADS[:2]
    assert "truncated layer 0" in error_of(s[:HEADER_BYTES + 5], allow_partial=True)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_crc_mismatch_names_the_layer(layer):
    s = bytearray(stream())
    start = HEADER_BYTES + sum(2 + len(p) for p in PAYLOADS[:layer])
    s[start + 2 + 3] ^= 0x10
    assert f"CRC mismatch in layer {layer}" in error_of(bytes(s))


def test_header_damage_is_caught_by_the_crc():
    s = bytearray(stream())
    s[4] ^= 0x01                                     # quality index 5 -> 4
    assert "CRC mismatch in layer 0" in error_of(bytes(s))


def test_wrong_model():
    msg = error_of(stream(), expected_fingerprint=0x1234)
    assert "wrong model" in msg and "0xbeef" in msg and "0x1234" in msg
    unpack(stream(), expected_fingerprint=0xBEEF)


def test_trailing_garbage():
    assert "trailing garbage: 3 bytes" in error_of(stream() + b"abc")
    assert "trailing garbage: 1 byte after the 1 declared layer" in error_of(stream(1) + b"\0")


def test_lengths_over_the_cap():
    head = stream()[:HEADER_BYTES]
    assert "exceeds the cap" in error_of(head + bytes([0x80, 0x80, 0x04]))        # 65536
    assert "longer than 3 bytes" in error_of(head + bytes([0xFF, 0xFF, 0xFF, 0x7F]))
    with pytest.raises(BitstreamError, match="exceeds the cap"):
        pack(HEADER, [b"\0" * (MAX_LAYER_BYTES + 1)])
    assert "exceeds the cap" in error_of(b"SFC" + b"\0" * 300_000)


def test_malformed_fields():
    s = bytearray(stream())
    s[3] |= 0x01
    assert "reserved header bits" in error_of(bytes(s))
    s = bytearray(stream())
    s[3] &= 0xF3
    assert "declares 0 layers" in error_of(bytes(s))
    head = stream()[:HEADER_BYTES]
    assert "non-minimal" in error_of(head + bytes([0x81, 0x00]))
    assert "bytes" in error_of("SFC")


def test_pack_validates_the_header():
    for bad in (StreamHeader(100, 0, 0), StreamHeader(256, 32, 0), StreamHeader(256, 0, 1 << 16),
                StreamHeader(256, 0, 0, version=2), StreamHeader(256, 0, 0, n_layers=2)):
        with pytest.raises(BitstreamError):
            pack(bad, PAYLOADS)
    with pytest.raises(BitstreamError):
        pack(HEADER, [])


def test_describe_accounts_for_every_byte():
    d = describe(stream())
    assert d["total_bytes"] == d["payload_bytes"] + d["overhead_bytes"] == len(stream())
    assert d["overhead_bytes"] == 13 and d["header_bytes"] == 7
    assert [layer["payload_bytes"] for layer in d["layers"]] == [20, 24, 30]
    assert d["bpp"] == pytest.approx(8 * 87 / 256 ** 2)


def _toy_state_dict():
    return {"b.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7,
            "a.bias": torch.tensor([1.5, -2.0]), "n": torch.tensor(3), "flag": torch.tensor([True, False]),
            "extra": "not a tensor"}


def test_fingerprint_is_stable_and_canonical():
    sd = _toy_state_dict()
    fp = fingerprint(sd)
    assert fp == 0x0684                               # pinned: identical weights, any machine
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
            b[:3] = b"SFC"
    return kind, bytes(b)


def test_fuzz_2000_mutations_never_escape_bitstream_error():
    rng = random.Random(12345)
    outcomes: dict[str, int] = {}
    slowest = 0.0
    for _ in range(2000):
        n = rng.randint(1, 3)
        payloads = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))) for _ in range(n)]
        original = pack(StreamHeader(256, rng.randint(0, 31), rng.getrandbits(16)), payloads)
        kind, data = _mutate(rng, original)
        t = time.perf_counter()
        try:
            _, got = unpack(data)
            outcome = "ok_intact" if got == payloads[:len(got)] else "ok_undetected"
        except BitstreamError:
            outcome = "BitstreamError"
        slowest = max(slowest, time.perf_counter() - t)
        if kind == "flip1":
            assert outcome != "ok_undetected", "a single bit flip went undetected"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print("fuzz outcomes:", outcomes, f"slowest {slowest * 1e3:.2f} ms")
    assert outcomes.get("ok_undetected", 0) <= 20      # CRC-8: ~1/256 of multi-byte damage
    assert slowest < 0.5
