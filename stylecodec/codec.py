"""The codec: face image <-> stylecodec bitstream (``docs/bitstream.md``), with one model.

    codec = Codec.from_pretrained("default")            # or a checkpoint path
    data = codec.compress("face.jpg")                   # the model's rate budget (default model:
                                                        # file <= 0.01 bpp, basic layer <= 0.003 bpp)
    data = codec.compress("face.jpg", quality=3)        # or bpp=0.01: highest quality that fits
    data = codec.compress("face.jpg", bpp=0.01, basic_bpp=0.003)   # ... and whose basic layer fits too
    img = codec.decompress(data, layers="basic")        # PIL image, resolution x resolution
    ws = codec.decode_latents(data, layers=2)           # Ŵ+ [1, num_ws, w_dim], no pixels

Encoder: image -> RGB -> ``align(image, R)`` (default: centre square crop + Lanczos resize;
landmark alignment will plug in here) -> E -> analysis -> y_l. Then, layer by layer and
group by group, (μ, σ) from the LSET in float64 on CPU (its exact path), coded as
``y·g`` with mean ``μ·g`` and scale ``σ·g`` (g: the quality's gains, float64), and the
decoded ``ŷ_c / g`` appended to the LSET context (see :mod:`stylecodec.model`). All these
float64 operations are correctly rounded or exact, so the decoder repeats them bit for bit.

Decoder: unpack (this model's fingerprint) -> the same loop with the rANS decoder -> layers
not present: LSET greedy means -> synthesis transforms (ŷ_c · inv_gain) -> G.synthesis
(noise_mode='const') -> uint8. Every decoding failure raises :class:`BitstreamError`.
"""
from __future__ import annotations

import copy
import functools
import os
from typing import Callable, Sequence

import numpy as np
import torch

from .bitstream import BitstreamError, StreamHeader, extract, fingerprint, pack, unpack
from .entropy import gaussian
from .entropy.lset import LSETCursor
from .errors import StylecodecError
from .layers import LAYER_NAMES
from .model import GAIN_MIN

__all__ = ["Codec", "ImageReadError", "budget_text", "centre_square", "choose_quality", "fit_quality", "fits_budget",
           "load_image", "parse_layers", "stream_sizes", "within_budget"]

Align = Callable[["PIL.Image.Image", int], "PIL.Image.Image"]  # noqa: F821


class ImageReadError(StylecodecError):
    """An input image cannot be read or has an unsupported shape or type."""


def parse_layers(layers: str | int) -> int:
    """'basic'|'middle'|'enhanced' or 1..3 -> number of layers."""
    if isinstance(layers, str) and layers in LAYER_NAMES:
        return LAYER_NAMES.index(layers) + 1
    if isinstance(layers, int) and not isinstance(layers, bool) and 1 <= layers <= len(LAYER_NAMES):
        return layers
    raise StylecodecError(f"layers must be one of {LAYER_NAMES} or 1..{len(LAYER_NAMES)}, got {layers!r}")


def load_image(image) -> "PIL.Image.Image":  # noqa: F821
    """PIL image, uint8 array [H, W], [H, W, 3] or [H, W, 4], or a file path -> RGB PIL image."""
    from PIL import Image

    try:
        if isinstance(image, Image.Image):
            img = image
        elif isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
                raise ImageReadError(f"an image array must be uint8 [H, W(, 3|4)], got {image.dtype} {image.shape}")
            img = Image.fromarray(image)
        elif isinstance(image, (str, os.PathLike)):
            img = Image.open(os.fspath(image))
        else:
            raise ImageReadError(f"cannot read an image from {type(image).__name__}")
        img.load()
        if min(img.size) < 1:
            raise ImageReadError("empty image")
        return img.convert("RGB")
    except ImageReadError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise ImageReadError(f"cannot read image {image if isinstance(image, (str, os.PathLike)) else ''}: "
                             f"{type(e).__name__}: {e}".replace(":  ", ": ")) from None


def centre_square(img: "PIL.Image.Image", size: int) -> "PIL.Image.Image":  # noqa: F821
    """Default ``align``: the centred square crop, resized (Lanczos) to size x size."""
    from PIL import Image

    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((size, size), Image.LANCZOS)


def stream_sizes(data: bytes) -> tuple[int, int]:
    """(bytes of the whole file, bytes of its basic layer extracted alone: what ``stylecodec
    extract --layers basic`` writes)."""
    return len(data), len(extract(data, 1))


def within_budget(file_bytes: int, basic_bytes: int, resolution: int, bpp: float | None,
                  basic_bpp: float | None = None) -> bool:
    """The rate rule: the whole file <= ``bpp`` and the basic layer alone <= ``basic_bpp``, in bits
    per pixel of the R x R face, every byte counted; None: no limit."""
    pixels = resolution ** 2
    return ((bpp is None or 8 * file_bytes <= bpp * pixels)
            and (basic_bpp is None or 8 * basic_bytes <= basic_bpp * pixels))


def budget_text(bpp: float | None, basic_bpp: float | None = None) -> str:
    """'file <= 0.01 bpp, basic layer <= 0.003 bpp' (the limits that are set)."""
    return ", ".join(f"{what} <= {b:g} bpp" for what, b in (("file", bpp), ("basic layer", basic_bpp)) if b is not None)


def fits_budget(data: bytes, resolution: int, bpp: float | None, basic_bpp: float | None = None) -> bool:
    """Whether the stream ``data`` meets :func:`within_budget`."""
    return within_budget(*stream_sizes(data), resolution, bpp, basic_bpp)


def fit_quality(qualities: range, sizes: Callable[[int], tuple[int, int]], resolution: int, bpp: float | None,
                basic_bpp: float | None = None) -> int | None:
    """The highest quality q whose ``sizes(q)`` (whole file, basic layer alone: :func:`stream_sizes`
    of its stream) meet :func:`within_budget`, else None. Tries the qualities from the highest down
    and stops at the first that fits."""
    return next((q for q in reversed(qualities) if within_budget(*sizes(q), resolution, bpp, basic_bpp)), None)


def choose_quality(qualities: range, sizes: Callable[[int], tuple[int, int]], resolution: int, bpp: float | None,
                   basic_bpp: float | None = None) -> tuple[int, bool]:
    """(:func:`fit_quality`, True), or (the lowest quality, False) when none fits: the rule of a
    budget that must give a stream (``Codec.compress``'s default, the evaluation's rate targets)."""
    q = fit_quality(qualities, sizes, resolution, bpp, basic_bpp)
    return (qualities[0], False) if q is None else (q, True)


class Codec:
    """Compress / decompress faces with one :class:`~stylecodec.model.StyleCodecModel` (CPU or GPU
    for the networks; the entropy model always runs in float64 on CPU)."""

    def __init__(self, model, align: Align | None = None):
        self.model = model.eval()
        self.align = align or centre_square
        if not 4 <= model.num_qualities <= 32:
            raise StylecodecError(f"the header codes quality in 5 bits; model has {model.num_qualities} qualities")
        self.fingerprint = getattr(model, "fingerprint", None)
        if not isinstance(self.fingerprint, int):
            self.fingerprint = fingerprint(model.state_dict())
        self._lset = copy.deepcopy(model.lset).to("cpu", torch.float64).eval()
        self._gain = model.gain.detach().to("cpu", torch.float64).abs().clamp_min(GAIN_MIN)
        self._inv_gain = model.inv_gain.detach().float().abs().clamp_min(GAIN_MIN)
        self._sizes = list(model.latent_dims)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "default", device: str = "cpu",
                        align: Align | None = None) -> "Codec":
        from .zoo import load_model
        return cls(load_model(name_or_path, device), align)

    @property
    def resolution(self) -> int:
        return self.model.resolution

    @property
    def quality_range(self) -> range:
        return range(self.model.num_qualities)

    @property
    def device(self) -> torch.device:
        return self.model.gain.device

    # -- encoder -----------------------------------------------------------------------------
    def preprocess(self, image, aligned: bool = False) -> torch.Tensor:
        """Image -> x [1, 3, R, R] float32 in [-1, 1] on the model's device. ``aligned``: the image
        is already the R x R face in the training layout; the ``align`` hook is not run."""
        img = load_image(image) if aligned else self.align(load_image(image), self.resolution)
        if img.size != (self.resolution, self.resolution):
            what = "the aligned image is" if aligned else "align returned"
            raise StylecodecError(f"{what} {img.size[0]}x{img.size[1]}, expected {self.resolution}x{self.resolution}")
        arr = np.asarray(img.convert("RGB"), dtype=np.float32)
        return (torch.from_numpy(arr).permute(2, 0, 1)[None] / 127.5 - 1.0).to(self.device)

    @torch.no_grad()
    def analyse(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [N, 3, R, R] -> unscaled latents y_l [N, d_l] (float64, CPU)."""
        ys = self.model.transforms.analyse(self.model.E(x))
        return [y.detach().to("cpu", torch.float64) for y in ys]

    @property
    def default_budget(self) -> tuple[float | None, float | None]:
        """(bpp, basic_bpp): the per-image budget the model was trained for (model config
        ``rate_budget``), used by :meth:`compress` when given neither a quality nor a budget;
        (None, None) for a model without one (then the default is the highest quality)."""
        budget = self.model.config.get("rate_budget") or {}
        return budget.get("bpp"), budget.get("basic_bpp")

    def resolve_rate(self, quality: int | None = None, bpp: float | None = None,
                     basic_bpp: float | None = None) -> tuple[int | None, float | None, float | None]:
        """(quality, bpp, basic_bpp) that :meth:`compress` serves: what is given, as it is; nothing:
        (None, *default_budget), or (the highest quality, None, None) for a model without a budget.
        Raises StylecodecError for a quality together with a budget or a budget <= 0."""
        if quality is not None and (bpp is not None or basic_bpp is not None):
            raise StylecodecError("give a quality or rate budgets (bpp, basic_bpp), not both")
        for name, b in (("bpp", bpp), ("basic_bpp", basic_bpp)):
            if b is not None and not b > 0:
                raise StylecodecError(f"{name} must be > 0, got {b!r}")
        if quality is None and bpp is None and basic_bpp is None:
            bpp, basic_bpp = self.default_budget
            if bpp is None and basic_bpp is None:
                quality = self.quality_range[-1]
        return quality, bpp, basic_bpp

    def compress(self, image, quality: int | None = None, bpp: float | None = None,
                 basic_bpp: float | None = None, aligned: bool = False) -> bytes:
        """One face -> bytes. ``quality``, or rate budgets in bits per pixel of the R x R face: the
        highest quality whose whole file is <= ``bpp`` and whose basic layer extracted alone is <=
        ``basic_bpp`` (either may be None); raises StylecodecError when no quality fits. Neither:
        :attr:`default_budget` the same way, except that a face no quality fits gets the lowest
        quality (check with :func:`fits_budget`); a model without a budget: the highest quality.
        ``aligned``: ``image`` is already aligned (R x R); ``align`` is not run again."""
        strict = bpp is not None or basic_bpp is not None
        quality, bpp, basic_bpp = self.resolve_rate(quality, bpp, basic_bpp)
        if quality is not None:
            return self.compress_latents(self.analyse(self.preprocess(image, aligned)), quality)[0]
        data, fits = self.compress_within(image, bpp, basic_bpp, aligned)
        if fits or not strict:
            return data
        r2, (size, basic) = self.resolution ** 2, stream_sizes(data)
        raise StylecodecError(f"no quality fits {budget_text(bpp, basic_bpp)}: at the lowest quality this image takes "
                              f"{8 * size / r2:.5f} bpp ({size} bytes), its basic layer "
                              f"{8 * basic / r2:.5f} bpp ({basic} bytes)")

    def compress_within(self, image, bpp: float | None, basic_bpp: float | None = None,
                        aligned: bool = False) -> tuple[bytes, bool]:
        """(stream at the highest quality within the budgets, True), or (the lowest quality's
        stream, False) when none fits (:func:`choose_quality`). One analysis; qualities are coded
        from the highest down until one fits."""
        ys = self.analyse(self.preprocess(image, aligned))
        stream = functools.cache(lambda q: self.compress_latents(ys, q)[0])
        q, fits = choose_quality(self.quality_range, lambda q: stream_sizes(stream(q)), self.resolution, bpp,
                                 basic_bpp)
        return stream(q), fits

    @torch.no_grad()
    def compress_ws(self, ws: torch.Tensor, quality: int) -> list[bytes]:
        """W+ [N, num_ws, w_dim] -> one stream per row."""
        ys = self.model.transforms.analyse(ws.to(self.device, torch.float32))
        return self.compress_latents([y.to("cpu", torch.float64) for y in ys], quality)

    def compress_latents(self, ys: Sequence[torch.Tensor], quality: int, stats: list | None = None) -> list[bytes]:
        """Unscaled latents y_l [N, d_l] -> one stream per row. ``stats`` (a list) receives per row
        {"ideal_bits": [per layer]} (−log2 p under the coding tables, without coder overhead) and
        {"y_hat": [per layer [d_l] float32]}: the synthesis inputs a decoder of all layers gets."""
        if quality not in self.quality_range:
            raise StylecodecError(f"quality must be in {self.quality_range.start}..{self.quality_range.stop - 1}, "
                                  f"got {quality!r}")
        ys = [torch.as_tensor(y).to("cpu", torch.float64) for y in ys]
        n = ys[0].shape[0]
        encs = [gaussian.StreamEncoder() for _ in range(n)]
        ideal = [[0.0] * len(ys) for _ in range(n)]
        g, gi = self._gain[quality], self._inv_gain[quality]
        ctx: list[torch.Tensor] = []
        y_hat: list[torch.Tensor] = []
        cursor = LSETCursor(self._lset, n)
        for l, y in enumerate(ys):
            cur = torch.zeros(n, self._sizes[l], dtype=torch.float64)
            yc_layer = torch.zeros(n, self._sizes[l], dtype=torch.float32)
            for sl, m, s in self._groups(cursor, ctx, cur, l, n):
                a = g[self.model.layer_slice(l)][sl]
                for i, enc in enumerate(encs):
                    yc, mc, sc = y[i, sl] * a, m[i] * a, s[i] * a
                    yc_layer[i, sl] = enc.encode(yc, mc, sc)
                    cur[i, sl] = yc_layer[i, sl].double() / a
                    if stats is not None:
                        ideal[i][l] += float(gaussian.ideal_bits(yc, mc, sc).sum())
            ctx.append(cur)
            y_hat.append(yc_layer * gi[self.model.layer_slice(l)])
            for enc in encs:
                enc.end_layer()
        if stats is not None:
            stats.extend({"ideal_bits": b, "y_hat": [y[i] for y in y_hat]} for i, b in enumerate(ideal))
        header = StreamHeader(resolution=self.resolution, quality=int(quality), fingerprint=self.fingerprint)
        return [pack(header, enc.finish()) for enc in encs]

    def _groups(self, cursor: LSETCursor, ctx, cur, layer: int, n: int):
        """Yield (column slice, means [n, g], scales [n, g]) of each group of ``layer``, float64;
        the caller fills ``cur`` with the group's decoded context before the next is computed."""
        gsz = self._lset.group_size
        for j in range(self._lset.num_groups[layer]):
            with torch.no_grad():
                m, s = cursor.params_for_group(ctx + ([cur] if j else []), layer, j)
            yield slice(j * gsz, (j + 1) * gsz), m.expand(n, -1), s.expand(n, -1)

    # -- decoder -----------------------------------------------------------------------------
    def decode_y(self, data: bytes, layers: str | int = "enhanced") -> tuple[list[torch.Tensor], int]:
        """(synthesis inputs ŷ_l [1, d_l] float32 for every layer: the received ones (ŷ_c · inv_gain), then
        LSET predictions; the number received). ŷ_basic is what the analysis heads read."""
        k = parse_layers(layers)
        header, payloads = unpack(data, expected_fingerprint=self.fingerprint)
        if header.resolution != self.resolution:
            raise BitstreamError(f"stream codes a {header.resolution}x{header.resolution} face, this model "
                                 f"{self.resolution}x{self.resolution}")
        if header.quality not in self.quality_range:
            raise BitstreamError(f"quality index {header.quality} is not one of this model's "
                                 f"0..{self.quality_range.stop - 1}")
        k = min(k, len(payloads))
        g, gi = self._gain[header.quality], self._inv_gain[header.quality]
        ctx, y_hat = [], []
        try:
            dec = gaussian.StreamDecoder(payloads[:k], self._sizes)
            cursor = LSETCursor(self._lset, 1)
            for l in range(k):
                cur = torch.zeros(1, self._sizes[l], dtype=torch.float64)
                yc_layer = torch.zeros(1, self._sizes[l], dtype=torch.float32)
                sl_l = self.model.layer_slice(l)
                for sl, m, s in self._groups(cursor, ctx, cur, l, 1):
                    a = g[sl_l][sl]
                    yc = dec.decode(m[0] * a, s[0] * a)
                    yc_layer[0, sl] = yc
                    cur[0, sl] = yc.double() / a
                ctx.append(cur)
                y_hat.append(yc_layer * gi[sl_l])
            dec.finish()
            for l in range(k, len(self._sizes)):
                pred = self._lset.predict_missing(ctx, l, cursor)
                ctx.append(pred)
                y_hat.append(pred.float())
        except BitstreamError:
            raise
        except (ValueError, RuntimeError, OverflowError, IndexError) as e:
            raise BitstreamError(f"cannot decode the entropy-coded layers: {e}") from None
        return y_hat, k

    def analyze(self, data: bytes) -> dict:
        """Machine analysis from the header + basic layer only (no pixels): {"landmarks": (68, 2)
        pixels of the R x R face, "identity": (512,) unit vector, "layers_used": "basic",
        "bytes_read": n}. See :func:`stylecodec.analysis.heads.analyze_stream`."""
        from .analysis.heads import analyze_stream
        return analyze_stream(self, data)

    def identity(self, data: bytes) -> np.ndarray:
        """Identity embedding from the header + basic layer only (no pixels): a unit float32 vector
        of this model's identity dimension, what ``stylecodec index`` / ``search`` compare. Raises
        :class:`BitstreamError` for a damaged or foreign stream. The source of the embedding is
        :func:`stylecodec.search.identity.identity_batch` (batched; use it for many streams)."""
        from .search.identity import identity_batch
        res = identity_batch(self, [data])
        if res.errors:
            raise BitstreamError(res.errors[0])
        return res.embeddings[0]

    @torch.no_grad()
    def decode_latents(self, data: bytes, layers: str | int = "enhanced") -> torch.Tensor:
        """Ŵ+ [1, num_ws, w_dim] (float32, CPU) from the first ``layers`` layers present."""
        y_hat, _ = self.decode_y(data, layers)
        ws = self.model.transforms.synthesise([y.to(self.device) for y in y_hat])
        return torch.nan_to_num(ws.float(), nan=0.0, posinf=1e6, neginf=-1e6).cpu()

    @torch.no_grad()
    def decompress(self, data: bytes, layers: str | int = "enhanced", output: str = "pil"):
        """Bytes -> R x R RGB face: a PIL image (``output="pil"``) or uint8 array [R, R, 3] ("array")."""
        if output not in ("pil", "array"):
            raise StylecodecError(f'output must be "pil" or "array", got {output!r}')
        ws = self.decode_latents(data, layers).to(self.device)
        img = self.model.G.synthesis(ws, noise_mode="const")[0]
        img = torch.nan_to_num(img.float(), nan=0.0).clamp(-1, 1)
        arr = ((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        if output == "array":
            return arr
        from PIL import Image
        return Image.fromarray(arr, "RGB")
