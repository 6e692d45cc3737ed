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

Decoder: unpack (this model's key) -> the same loop with the range decoder -> layers
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
from PIL import Image

from .analysis.heads import AnalysisHeads, HeadsError, landmarks_to_pixels
from .bitstream import (MAX_QUALITY, MAX_STREAM_BYTES, BitstreamError, ModelKey, StreamHeader, basic_prefix,
                        model_digests, pack, unpack, weights_id)
from .entropy.coder import DECODE_ERRORS, GroupCoder
from .errors import StylecodecError
from .images import centre_square, load_image
from .latent_search import LatentSearch, SearchConfig
from .layers import parse_layers
from .machine_first import MachineFirstModel
from .model import GAIN_MIN, StyleCodecModel
from .rate import RateRequest, budget_text, choose_quality, resolve, stream_sizes, within_budget
from .zoo import LoadedModel, load

__all__ = ["Codec"]

Align = Callable[[Image.Image, int], Image.Image]


def _entropy_error(e: Exception) -> BitstreamError:
    """What a decoder raised (:data:`~stylecodec.entropy.coder.DECODE_ERRORS`) as the BitstreamError
    that decoding reports: itself when it is one, else "cannot decode the entropy-coded layers: ..."."""
    return e if isinstance(e, BitstreamError) else BitstreamError(f"cannot decode the entropy-coded layers: {e}")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


class Codec:
    """Compress / decompress / analyze faces with one :class:`~stylecodec.model.StyleCodecModel` (CPU or
    GPU for the networks; the entropy model always runs in float64 on CPU)."""

    def __init__(self,
        model: StyleCodecModel | LoadedModel,   # the networks, or a model as loaded by stylecodec.zoo.load
        align: Align | None = None,             # image, R -> R x R face (default: centre_square)
        heads: AnalysisHeads | None = None,     # analysis heads for analyze (default: those stored with a loaded model)
    ):
        self.loaded = model if isinstance(model, LoadedModel) else None   # the checkpoint record, when loaded
        model = self.loaded.model if self.loaded is not None else model
        self.model = model.eval()
        self.align = align or centre_square
        self.heads = heads
        if not 4 <= model.num_qualities <= MAX_QUALITY + 1:
            raise StylecodecError(f"the header codes quality in 3 bits (0..{MAX_QUALITY}); model has "
                                  f"{model.num_qualities} qualities")
        stream, weights = ((self.loaded.digest, self.loaded.weights_digest) if self.loaded is not None
                           else model_digests(model))
        self.key = ModelKey(stream)                  # keys the streams: pixel-only weights (a refiner) left out
        self.fingerprint = self.key.fingerprint      # u16, as zoo, the analysis heads and indexes know the model
        self.weights_id = weights_id(stream, weights)   # names the weights that make the pixels: keys pixel results
        self._coder = GroupCoder(copy.deepcopy(model.lset).to("cpu", torch.float64).eval())  # the exact path
        self._gain = model.gain.detach().to("cpu", torch.float64).abs().clamp_min(GAIN_MIN)
        self._inv_gain = model.inv_gain.detach().float().abs().clamp_min(GAIN_MIN)
        self.search: LatentSearch | None = None      # encoder-side search (set_search); None: the plain encoder

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "default", device: str = "cpu",
                        align: Align | None = None, search_steps: int = 0) -> "Codec":
        return cls(load(name_or_path, device), align).set_search(search_steps)

    @property
    def results_id(self) -> str:
        """Keys cached results of this codec (LFW embeddings, evaluation rows): :attr:`weights_id`, plus
        the encoder's search when one is set (it writes other streams from the same weights)."""
        if self.search is None:
            return self.weights_id
        return f"{self.weights_id}+search-{self.search.config.key()}"

    def set_search(self, steps: int, **config) -> "Codec":
        """Let :meth:`compress` search the pixel layers' latents for ``steps`` steps per face
        (:mod:`stylecodec.latent_search`; ``config``: other :class:`SearchConfig` fields); 0: the plain
        encoder. Machine-first models only. Returns self."""
        if steps < 0:
            raise StylecodecError(f"search steps must be >= 0, got {steps}")
        if steps == 0:
            self.search = None
            return self
        if not isinstance(self.model, MachineFirstModel):
            raise StylecodecError("the encoder's search needs a machine-first model (pixel layers of eigenface "
                                  f"coefficients); this one is {type(self.model).__name__}")
        self.search = LatentSearch(self.model, SearchConfig(steps=int(steps), **config))
        return self

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
    def encode_latents(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [N, 3, R, R] -> unscaled latents y_l [N, d_l] (float64, CPU)."""
        return [y.detach().to("cpu", torch.float64) for y in self.model.encode_latents(x)]

    @property
    def default_budget(self) -> tuple[float | None, float | None]:
        """(bpp, basic_bpp): the per-image budget the model was trained for (model config
        ``rate_budget``), used by :meth:`compress` when given neither a quality nor a budget;
        (None, None) for a model without one (then the default is the highest quality)."""
        budget = self.model.config.get("rate_budget") or {}
        return budget.get("bpp"), budget.get("basic_bpp")

    def resolve_rate(self, quality: int | None = None, bpp: float | None = None,
                     basic_bpp: float | None = None) -> RateRequest:
        """What :meth:`compress` serves for these arguments (:func:`stylecodec.rate.resolve` with this
        model's :attr:`default_budget`). Raises StylecodecError for a quality together with a budget
        or a budget <= 0."""
        return resolve(quality, bpp, basic_bpp, self.default_budget, self.quality_range)

    def compress(self, image, quality: int | None = None, bpp: float | None = None,
                 basic_bpp: float | None = None, aligned: bool = False) -> bytes:
        """One face -> bytes. ``quality``, or rate budgets in bits per pixel of the R x R face: the
        highest quality whose whole file is <= ``bpp`` and whose basic layer extracted alone is <=
        ``basic_bpp`` (either may be None); raises StylecodecError when no quality fits. Neither:
        :attr:`default_budget` the same way, except that a face no quality fits gets the lowest
        quality (check with :func:`stylecodec.rate.fits_budget`); a model without a budget: the
        highest quality (the rule: :mod:`stylecodec.rate`). ``aligned``: ``image`` is already
        aligned (R x R); ``align`` is not run again."""
        request = self.resolve_rate(quality, bpp, basic_bpp)
        if request.quality is not None:
            x = self.preprocess(image, aligned)
            ys = self.encode_latents(x)
            data = self.compress_latents(ys, request.quality)[0]
            return data if self.search is None else self._searched(x, ys, request.quality, data, None, None)
        data, fits = self.compress_within(image, request.bpp, request.basic_bpp, aligned)
        if fits or not request.strict:
            return data
        r2, (size, basic) = self.resolution ** 2, stream_sizes(data)
        raise StylecodecError(f"no quality fits {budget_text(request.bpp, request.basic_bpp)}: at the lowest quality "
                              f"this image takes {8 * size / r2:.5f} bpp ({size} bytes), its basic layer "
                              f"{8 * basic / r2:.5f} bpp ({basic} bytes)")

    def compress_within(self, image, bpp: float | None, basic_bpp: float | None = None,
                        aligned: bool = False) -> tuple[bytes, bool]:
        """(stream at the highest quality within the budgets, True), or (the lowest quality's
        stream, False) when none fits (:func:`choose_quality`). One analysis; qualities are coded
        from the highest down until one fits."""
        x = self.preprocess(image, aligned)
        ys = self.encode_latents(x)
        stream = functools.cache(lambda q: self.compress_latents(ys, q)[0])

        def sizes(q: int) -> tuple[int, int]:
            # A basic layer over its budget rules the quality out before the whole stream is coded
            # (the basic layer alone is cheap: a static first layer runs no transformer).
            basic = len(self.compress_latents(ys, q, n_layers=1)[0])
            if basic_bpp is not None and not within_budget(0, basic, self.resolution, None, basic_bpp):
                return MAX_STREAM_BYTES, basic
            return stream_sizes(stream(q))

        q, fits = choose_quality(self.quality_range, sizes, self.resolution, bpp, basic_bpp)
        if self.search is None or not fits:
            return stream(q), fits
        return self._searched(x, ys, q, stream(q), bpp, basic_bpp), True

    def _searched(self, x: torch.Tensor, ys: Sequence[torch.Tensor], quality: int, plain: bytes,
                  bpp: float | None, basic_bpp: float | None) -> bytes:
        """The searched stream at ``quality`` when it fits the budgets (no budget: bytes <= the plain
        stream's + 1) and decodes closer to ``x`` (the search's distortion) than ``plain``; else ``plain``.
        The pixel layers may spend the budget's room above ``plain`` less the config's margin."""
        margin = self.search.config.margin_bytes
        room = 8 * (bpp * self.resolution ** 2 / 8 - len(plain) - margin) if bpp is not None else 0.0
        found = self.search(x, ys, quality, extra_bits=room)
        if not all(torch.isfinite(y).all() for y in found):     # a diverged search never reaches the coder
            return plain
        data = self.compress_latents(found, quality)[0]
        size, basic = stream_sizes(data)
        fits = (within_budget(size, basic, self.resolution, bpp, basic_bpp) if bpp is not None
                else size <= len(plain) + 1)
        if not fits:
            return plain
        with torch.no_grad():
            x = x.float()
            x_id = self.search.reference_identity(x)                               # once for both streams
            d = [self.search.distortion(self._decoded_pixels(s), x, x_id).item() for s in (plain, data)]
        return data if d[1] < d[0] else plain

    def _decoded_pixels(self, data: bytes) -> torch.Tensor:
        """[1, 3, R, R] in [-1, 1]: the face a decoder of all layers draws from ``data`` (uint8 levels)."""
        arr = self.decompress(data, output="array")
        return (torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 127.5 - 1).to(self.device)

    @torch.no_grad()
    def compress_ws(self, ws: torch.Tensor, quality: int) -> list[bytes]:
        """W+ [N, num_ws, w_dim] -> one stream per row."""
        ys = self.model.transforms.analyse(ws.to(self.device, torch.float32))
        return self.compress_latents([y.to("cpu", torch.float64) for y in ys], quality)

    def compress_latents(self, ys: Sequence[torch.Tensor], quality: int, stats: list | None = None,
                         n_layers: int | None = None) -> list[bytes]:
        """Unscaled latents y_l [N, d_l] -> one stream per row (of its first ``n_layers`` layers: default
        all; a prefix is byte-identical to ``extract`` of the whole stream). ``stats`` (a list) receives per row
        {"ideal_bits": [per layer]} (−log2 p under the coding tables, without coder overhead) and
        {"y_hat": [per layer [d_l] float32]}: the synthesis inputs a decoder of all layers gets."""
        if quality not in self.quality_range:
            raise StylecodecError(f"quality must be in {self.quality_range.start}..{self.quality_range.stop - 1}, "
                                  f"got {quality!r}")
        ys = [torch.as_tensor(y).to("cpu", torch.float64) for y in ys]
        ideal: list | None = [] if stats is not None else None
        coded = self._coder.compress(ys, self._gain[quality], ideal, n_layers)
        if stats is not None:
            y_hat = self._synthesis_inputs(coded["y_hat"], quality)
            stats.extend({"ideal_bits": b, "y_hat": [y[i] for y in y_hat]} for i, b in enumerate(ideal))
        header = StreamHeader(resolution=self.resolution, quality=int(quality))
        return [pack(header, payloads, self.key) for payloads in coded["strings"]]

    def _synthesis_inputs(self, y_hat_c: Sequence[torch.Tensor], quality: int | torch.Tensor) -> list[torch.Tensor]:
        """ŷ_c of the received layers -> what the synthesis transforms get: ŷ_c · inv_gain, float32.
        ``quality``: one index, or int64 [N] (one per row)."""
        gi = self._inv_gain[quality]
        return [y_c * gi[..., self._coder.layer_slice(l)] for l, y_c in enumerate(y_hat_c)]

    # -- decoder -----------------------------------------------------------------------------
    def read_stream(self, data: bytes) -> tuple[StreamHeader, list[bytes]]:
        """(header, payloads present) of a stream made by THIS model: :func:`~stylecodec.bitstream.unpack`
        with its key (fingerprint byte, keyed CRCs), then its resolution and quality index checked. The
        one container check of every decoding path (decode_y, analyze, the batched decoding of search);
        raises :class:`BitstreamError`."""
        header, payloads = unpack(data, self.key)
        if header.resolution != self.resolution:
            raise BitstreamError(f"stream codes a {header.resolution}x{header.resolution} face, this model "
                                 f"{self.resolution}x{self.resolution}")
        if header.quality not in self.quality_range:
            raise BitstreamError(f"quality index {header.quality} is not one of this model's "
                                 f"0..{self.quality_range.stop - 1}")
        return header, payloads

    def decode_y(self, data: bytes, layers: str | int = "enhanced") -> tuple[list[torch.Tensor], int]:
        """(synthesis inputs ŷ_l [1, d_l] float32 for every layer: the received ones (ŷ_c · inv_gain), then
        LSET predictions; the number received). ŷ_basic is what the analysis heads read."""
        k = parse_layers(layers)
        header, payloads = self.read_stream(data)
        k = min(k, len(payloads))
        try:
            decoded = self._coder.decompress(payloads[:k], self._gain[header.quality])
        except DECODE_ERRORS as e:
            raise _entropy_error(e) from None
        predicted = [c.float() for c in decoded["context"][k:]]
        return self._synthesis_inputs(decoded["y_hat"], header.quality) + predicted, k

    @torch.no_grad()
    def decode_basic_batch(self, streams: Sequence[bytes], predict: bool = False
                           ) -> tuple[list[torch.Tensor], list[int], dict[int, str]]:
        """Batched ``decode_y(stream, "basic")`` over full or basic-only streams (only their basic
        prefix is read): (y_hat, ok, errors). y_hat: [ŷ_basic [m, d_0] float32] (+ the LSET predictions
        of the higher layers [m, d_l] with ``predict``) for the m streams listed in ``ok`` (indexes
        into ``streams``), each row equal to decode_y's bit for bit; ``errors``: index -> one-line
        reason for the others (a stream that cannot be read fails alone, never raises)."""
        errors: dict[int, str] = {}
        rows: list[tuple[int, int, list[bytes]]] = []           # (index, quality, payloads)
        for i, data in enumerate(streams):
            try:
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise BitstreamError(f"a bitstream is bytes, got {type(data).__name__}")
                header, payloads = self.read_stream(basic_prefix(data))
                rows.append((i, header.quality, payloads))
            except StylecodecError as e:
                errors[i] = _one_line(e)
        q = torch.tensor([r[1] for r in rows], dtype=torch.long)
        decoded = self._coder.decompress_batch([r[2] for r in rows], self._gain[q], 1, predict=predict)
        for j, e in decoded["failed"].items():
            errors[rows[j][0]] = _one_line(_entropy_error(e))
        keep = torch.tensor([j for j in range(len(rows)) if j not in decoded["failed"]], dtype=torch.long)
        y_hat = self._synthesis_inputs(decoded["y_hat"], q) + [c.float() for c in decoded["context"][1:]]
        return [y[keep] for y in y_hat], [rows[j][0] for j in keep.tolist()], errors

    @torch.no_grad()
    def analyze(self, data: bytes) -> dict:
        """Machine analysis from the header + basic layer of ``data`` only (a full or basic-only
        stream; bytes past the basic layer are never looked at; no pixels are made).

        Returns {"landmarks": float32 (68, 2) (x, y) pixels of the R x R aligned face, "identity":
        float32 unit vector (the model's identity space; 128-d SFace space for machine-first models), "layers_used": "basic", "bytes_read": n}. Raises
        :class:`BitstreamError` for damaged / foreign streams and
        :class:`~stylecodec.analysis.heads.HeadsError` when the model has no heads."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise BitstreamError(f"a bitstream is bytes, got {type(data).__name__}")
        prefix = basic_prefix(data)
        self.read_stream(prefix)                                    # container errors before the heads load
        heads = self.analysis_heads()
        y_hat, ok, errors = self.decode_basic_batch([prefix], predict=heads.inputs != "basic")
        if not ok:                                                  # the LSET predicts higher layers only if
            raise BitstreamError(errors[0])                         # the heads read them
        out = heads(heads.features(y_hat))
        lm = landmarks_to_pixels(out["landmarks"][0].float().cpu().numpy(), self.resolution)
        return {"landmarks": lm.astype(np.float32), "identity": out["identity"][0].float().cpu().numpy(),
                "layers_used": "basic", "bytes_read": len(prefix)}

    def analysis_heads(self) -> AnalysisHeads:
        """:attr:`heads`, else (kept there) the heads stored with the loaded model, on this codec's
        device. Raises HeadsError when there are none."""
        if self.heads is None and isinstance(self.model, MachineFirstModel):
            self.heads = self.model.heads                           # built in: part of the fingerprinted weights
        if self.heads is None:
            if self.loaded is None:
                raise HeadsError("this codec's model was not loaded from a checkpoint and has no analysis heads; "
                                 "pass Codec(model, heads=AnalysisHeads(...))")
            self.heads = self.loaded.heads()
        return self.heads.to(self.device).eval()

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
        if not hasattr(self.model, "transforms"):
            raise StylecodecError("this model has no W+ latents (it decodes eigenface coefficients); "
                                  "use decompress or decode_y")
        y_hat, _ = self.decode_y(data, layers)
        ws = self.model.transforms.synthesise([y.to(self.device) for y in y_hat])
        return torch.nan_to_num(ws.float(), nan=0.0, posinf=1e6, neginf=-1e6).cpu()

    @torch.no_grad()
    def decompress(self, data: bytes, layers: str | int = "enhanced", output: str = "pil"):
        """Bytes -> R x R RGB face: a PIL image (``output="pil"``) or uint8 array [R, R, 3] ("array")."""
        if output not in ("pil", "array"):
            raise StylecodecError(f'output must be "pil" or "array", got {output!r}')
        y_hat, _ = self.decode_y(data, layers)
        img = self.model.render([torch.nan_to_num(y.to(self.device), nan=0.0, posinf=1e6, neginf=-1e6)
                                 for y in y_hat])[0]
        img = torch.nan_to_num(img.float(), nan=0.0).clamp(-1, 1)
        arr = ((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return arr if output == "array" else Image.fromarray(arr, "RGB")
