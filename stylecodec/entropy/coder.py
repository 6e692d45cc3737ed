"""GroupCoder: the layered latents coded group by group under the LSET, in CompressAI's latent-codec
style (cf. ``compressai.latent_codecs``): ``forward`` for training, ``compress`` / ``decompress``
for the bitstream, on the same object. Its :meth:`GroupCoder._layer` is the only loop over a
layer's groups in the package: training, the codec, the analysis heads and the decoder's
prediction of missing layers all run through it.

    coder = GroupCoder(model.lset)                       # float32: training
    out = coder(ys, gains, quant="noise")                # {"y_hat", "context", "means", "scales", "likelihoods"}
    coder = GroupCoder(lset_float64_cpu)                 # the coding path (bit-exact on any machine)
    enc = coder.compress(ys, gains)                      # {"strings": [[payload per layer] per row], ...}
    dec = coder.decompress(payloads, gains)              # {"y_hat": received layers, "context": every layer}
    dec = coder.decompress_batch(payload_lists, gains, 1)  # N streams' basic layers in one pass, failures per row

Domains (units: see :mod:`stylecodec.model`). ``ys``: unscaled latents y_l [N, d_l], layers in
coding order. ``gains``: the quality's gain vector g, [N, D] or [D] (D = Σ d_l). A group is coded
as y_c = y·g with mean μ·g and scale σ·g (μ, σ: the LSET's, unscaled); the quantiser gives ŷ_c
(``y_hat``, coding domain) and the LSET reads ŷ_c / g (``context``, unscaled) for later groups
and layers. A layer not received is predicted: the LSET's greedy means, used as context as they are.

Quantisers (``quant`` of :meth:`forward`; see :data:`QUANTISERS`):

- ``"noise"``: ŷ_c = y_c + U(-½, ½). The whole layer at once from one teacher-forced LSET pass
  over a noisy context; the context and the likelihood use independent draws (as CompressAI's
  mbt2018 does).
- ``"mixed"``: rate and context as "noise", ŷ_c rounded as "ste".
- ``"ste"``: the coder emulated, group by group: rounded around the snapped mean, straight-through.
- exact coding (:meth:`compress` / :meth:`decompress`): one range-coded payload per layer
  (:class:`~stylecodec.entropy.gaussian.StreamEncoder` / ``StreamDecoder``), group by group through
  an :class:`~stylecodec.entropy.lset.LSETCursor` (each token runs once). Give it a float64 CPU
  LSET: every operation is then correctly rounded or exact, so encoder and decoder derive the
  same CDF indices on any machine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .gaussian import StreamDecoder, StreamEncoder, ideal_bits, likelihood
from .lset import LSET, LSETCursor

__all__ = ["GroupCoder", "Quantiser", "QUANTISERS", "DECODE_ERRORS"]

# What a decoder raises for damaged or inconsistent data (BitstreamError is a ValueError).
DECODE_ERRORS = (ValueError, RuntimeError, OverflowError, IndexError)

# (y, μ, σ, g): a group's unscaled latents (None when decoding), LSET means and scales [N, g] and its
# gains [N or 1, g] -> (ŷ_c [N, g] in the coding domain, bin probabilities [N, g] or None). The coding
# domain is y·g with mean μ·g and scale σ·g; a quantiser scales inside, so each use of y·g is its own
# product (autograd then sums gradients in the same order as the code this replaced).
Quantise = Callable[[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor],
                    tuple[torch.Tensor, torch.Tensor | None]]


@dataclass(frozen=True)
class Quantiser:
    """A training quantiser: how ŷ_c and the rate are made from y_c, μ_c, σ_c."""

    name: str
    group_by_group: bool    # True: exact emulation of the coder; False: one teacher-forced pass over a noisy context
    quantise: Quantise


def _noise(y, m, s, a):
    return likelihood(y * a, m * a, s * a, mode="noise")


def _ste(y, m, s, a):
    return likelihood(y * a, m * a, s * a, mode="ste")


def _mixed(y, m, s, a):
    _, p = likelihood(y * a, m * a, s * a, mode="noise")        # the rate of the noisy value
    return likelihood(y * a, m * a, s * a, mode="ste")[0], p    # the rounded value for synthesis


QUANTISERS: dict[str, Quantiser] = {
    "noise": Quantiser("noise", False, _noise),
    "ste": Quantiser("ste", True, _ste),
    "mixed": Quantiser("mixed", False, _mixed),
}


class GroupCoder:
    """Codes (or emulates coding of) the layers of one LSET; see the module docstring.

    Not an ``nn.Module``: it holds no weights of its own (the LSET belongs to the model, whose
    state_dict names it and whose fingerprint covers it)."""

    def __init__(self,
        lset: LSET,     # p(ŷ_l | ŷ_<l); float32 for training, a float64 CPU copy for the bitstream.
    ):
        self.lset = lset
        self.latent_dims = list(lset.latent_dims)
        self.group_size = lset.group_size
        self.num_groups = list(lset.num_groups)
        self.offsets = [sum(self.latent_dims[:l]) for l in range(len(self.latent_dims) + 1)]  # layer l: D[o_l:o_l+1]

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

    def layer_slice(self, layer: int) -> slice:
        """Columns of layer ``layer`` in a [.., D] vector (gains)."""
        return slice(self.offsets[layer], self.offsets[layer + 1])

    def _check(self, ys: Sequence[torch.Tensor] | None, gains: torch.Tensor) -> None:
        assert gains.shape[-1] == self.offsets[-1], (tuple(gains.shape), self.offsets[-1])
        if ys is not None:
            assert 1 <= len(ys) <= self.num_layers, len(ys)
            for l, y in enumerate(ys):
                assert y.ndim == 2 and y.shape == (ys[0].shape[0], self.latent_dims[l]), (l, tuple(y.shape))

    # -- the group loop ----------------------------------------------------------------------------
    def _layer(self, source, context: Sequence[torch.Tensor], layer: int, n: int,
               step: Callable[[slice, torch.Tensor, torch.Tensor], torch.Tensor]):
        """Layer ``layer``, group by group: for group j, (μ, σ) [n, g] from ``source`` (the LSET, or
        an LSETCursor on it) given the lower layers ``context`` and this layer's groups < j, then
        ``step(columns, μ, σ)`` returns the group's context values [n, g]. Returns (context, μ, σ),
        each [n, d_layer]."""
        g = self.group_size
        parts: list[torch.Tensor] = []
        means: list[torch.Tensor] = []
        scales: list[torch.Tensor] = []
        for j in range(self.num_groups[layer]):
            m, s = source.params_for_group(list(context) + ([torch.cat(parts, 1)] if j else []), layer, j)
            m, s = m.expand(n, -1), s.expand(n, -1)            # layer 0, group 0 (no context): batch 1
            parts.append(step(slice(j * g, (j + 1) * g), m, s))
            means.append(m)
            scales.append(s)
        return torch.cat(parts, 1), torch.cat(means, 1), torch.cat(scales, 1)

    def _code_layers(self, source, ys: Sequence[torch.Tensor] | None, gains: torch.Tensor, n_layers: int, n: int,
                     quantise: Callable[[int], Quantise], end_layer: Callable[[], None] | None = None) -> dict:
        """Layers 0..n_layers-1 group by group: each group's (y, μ, σ, g) goes to ``quantise(layer)``;
        its ŷ_c / g is the context; ``end_layer()`` runs after each layer. ``ys`` None: nothing to
        code (the decoder: ŷ_c comes from the stream)."""
        out: dict[str, list] = {k: [] for k in ("y_hat", "context", "means", "scales", "likelihoods")}
        for l in range(n_layers):
            a_l = gains[..., self.layer_slice(l)]
            q = quantise(l)
            y_hat, liks = [], []

            def step(cols, m, s, y=None if ys is None else ys[l]):
                a = a_l[..., cols]
                y_c, p = q(None if y is None else y[:, cols], m, s, a)
                y_hat.append(y_c)
                liks.append(p)
                return y_c.to(a.dtype) / a

            ctx, m, s = self._layer(source, out["context"], l, n, step)
            out["context"].append(ctx)
            out["y_hat"].append(torch.cat(y_hat, 1))
            out["means"].append(m)
            out["scales"].append(s)
            if liks[0] is not None:
                out["likelihoods"].append(torch.cat(liks, 1))
            if end_layer is not None:
                end_layer()
        return out

    def predict(self, context: Sequence[torch.Tensor], layer: int, source=None) -> torch.Tensor:
        """Greedy LSET means of layer ``layer`` [N, d_layer] from its lower layers ``context`` (each
        predicted group's means are the context of the next). ``source``: an LSETCursor that ran the
        lower layers (the decoder's) instead of the LSET. Differentiable through the LSET."""
        if len(context) != layer:
            raise ValueError(f"predicting layer {layer} needs exactly {layer} lower layers, got {len(context)}")
        n = source.n if source is not None else (context[0].shape[0] if context else 1)
        pred, _, _ = self._layer(source if source is not None else self.lset, context, layer, n, lambda cols, m, s: m)
        return pred

    def complete(self, context: Sequence[torch.Tensor], source=None) -> list[torch.Tensor]:
        """The received layers ``context`` (1..num_layers) followed by predictions of the rest."""
        ys = list(context)
        if not 1 <= len(ys) <= self.num_layers:
            raise ValueError(f"need 1..{self.num_layers} received layers, got {len(ys)}")
        while len(ys) < self.num_layers:
            ys.append(self.predict(ys, len(ys), source))
        return ys

    # -- training ----------------------------------------------------------------------------------
    def forward(self, ys: Sequence[torch.Tensor], gains: torch.Tensor, quant: str = "noise") -> dict:
        """Emulated coding of the layers ``ys`` (y_l [N, d_l], the first 1..3) at ``gains`` [N, D].

        Returns lists with one tensor [N, d_l] per layer: ``y_hat`` (ŷ_c, coding domain),
        ``context`` (what the LSET saw, unscaled; noisy for "noise" and "mixed"), ``means`` and
        ``scales`` (unscaled LSET parameters), ``likelihoods`` (bin probabilities of the coded
        values, >= 1e-9: bits of layer l = -log2(p_l).sum(1))."""
        if quant not in QUANTISERS:
            raise ValueError(f"quant must be one of {tuple(QUANTISERS)}, got {quant!r}")
        self._check(ys, gains)
        quantiser = QUANTISERS[quant]
        if quantiser.group_by_group:
            return self._code_layers(self.lset, ys, gains, len(ys), ys[0].shape[0], lambda l: quantiser.quantise)
        gl = [gains[..., self.layer_slice(l)] for l in range(len(ys))]
        context = [(y * a + torch.empty_like(y).uniform_(-0.5, 0.5)) / a for y, a in zip(ys, gl)]
        means, scales = self.lset(context)
        y_hat, liks = [], []
        for y, a, m, s in zip(ys, gl, means, scales):
            y_c, p = quantiser.quantise(y, m, s, a)
            y_hat.append(y_c)
            liks.append(p)
        return {"y_hat": y_hat, "context": context, "means": means, "scales": scales, "likelihoods": liks}

    __call__ = forward

    # -- the bitstream -----------------------------------------------------------------------------
    @torch.no_grad()
    def compress(self, ys: Sequence[torch.Tensor], gains: torch.Tensor, ideal: list | None = None,
                 n_layers: int | None = None) -> dict:
        """The first ``n_layers`` (default: all) layers of ``ys`` (y_l [N, d_l], all num_layers) into one
        payload per layer and row. Each layer is its own range-coded string, so the payloads of a
        prefix equal those of the whole stream's first layers (a basic layer alone, coded without
        running the transformer when the LSET's first layer is static, sizes the basic budget).

        Returns {"strings": N lists of per-layer payloads (bytes), "y_hat": ŷ_c per layer [N, d_l]
        float32 (what the decoder gets), "context": ŷ_c / g per layer}. ``ideal`` (a list) receives
        per row the ideal bits per layer (−log2 p under the coding tables, no coder overhead)."""
        self._check(ys, gains)
        assert len(ys) == self.num_layers, len(ys)
        n_layers = self.num_layers if n_layers is None else n_layers
        assert 1 <= n_layers <= self.num_layers, n_layers
        n = ys[0].shape[0]
        encoders = [StreamEncoder() for _ in range(n)]
        bits = [[0.0] * n_layers for _ in range(n)]

        def encode(layer: int) -> Quantise:
            def q(y, m, s, a):
                y_c, m_c, s_c = y * a, m * a, s * a
                rows = []
                for i, enc in enumerate(encoders):
                    rows.append(enc.encode(y_c[i], m_c[i], s_c[i]))
                    if ideal is not None:
                        bits[i][layer] += float(ideal_bits(y_c[i], m_c[i], s_c[i]).sum())
                return torch.stack(rows), None
            return q

        def end_layer() -> None:
            for enc in encoders:
                enc.end_layer()

        out = self._code_layers(LSETCursor(self.lset, n), ys, gains, n_layers, n, encode, end_layer)
        if ideal is not None:
            ideal.extend(bits)
        return {"strings": [enc.finish() for enc in encoders], "y_hat": out["y_hat"], "context": out["context"]}

    @torch.no_grad()
    def decompress(self, payloads: Sequence[bytes], gains: torch.Tensor) -> dict:
        """The layers present in one stream's ``payloads`` (a prefix of the layers), then the LSET's
        predictions of the rest. Returns {"y_hat": ŷ_c [1, d_l] of the received layers, "context":
        every layer [1, d_l] (received ŷ_c / g, then predicted means)}. Raises BitstreamError (or
        ValueError, RuntimeError for damaged data) like :class:`StreamDecoder`. One row of
        :meth:`decompress_batch`."""
        if not 1 <= len(payloads) <= self.num_layers:
            raise ValueError(f"{len(payloads)} payloads for a model of {self.num_layers} layers")
        out = self.decompress_batch([payloads], gains, len(payloads))
        if out["failed"]:
            raise out["failed"][0]
        return {"y_hat": out["y_hat"], "context": out["context"]}

    @torch.no_grad()
    def decompress_batch(self, payload_lists: Sequence[Sequence[bytes]], gains: torch.Tensor, n_layers: int,
                         predict: bool = True) -> dict:
        """The first ``n_layers`` layers of N streams in one pass: one LSETCursor of batch N (each
        token runs once for all rows), one :class:`StreamDecoder` per row. ``payload_lists``: per
        row its payloads (at least ``n_layers``; later ones are not read); ``gains``: [N, D] (each
        row's quality) or [D].

        Returns {"y_hat": ŷ_c [N, d_l] of layers < n_layers, "context": ŷ_c / g of those layers,
        then (``predict``) the LSET's predictions of the others, [N, d_l] each, "failed": {row:
        the exception}}. A row that fails (damaged payload, too few layers) is reported, never
        raised; its values are 0 from the failing group on, and the other rows are unaffected
        (rows of the LSET are independent). Every other row equals :meth:`decompress` of its
        payloads[:n_layers] bit for bit (the float64 path is exact)."""
        if not 1 <= n_layers <= self.num_layers:
            raise ValueError(f"cannot decode {n_layers} layers of a model of {self.num_layers}")
        n = len(payload_lists)
        gains = gains.expand(n, -1) if gains.ndim == 1 else gains
        self._check(None, gains)
        assert gains.shape[0] == n, (tuple(gains.shape), n)
        if not n:
            dims = self.latent_dims if predict else self.latent_dims[:n_layers]
            return {"y_hat": [torch.zeros(0, d) for d in self.latent_dims[:n_layers]],
                    "context": [torch.zeros(0, d, dtype=gains.dtype) for d in dims], "failed": {}}
        failed: dict[int, Exception] = {}
        decoders: list[StreamDecoder | None] = []
        for i, payloads in enumerate(payload_lists):
            try:
                if len(payloads) < n_layers:
                    raise ValueError(f"{n_layers} layers asked, the stream holds {len(payloads)}")
                decoders.append(StreamDecoder(payloads[:n_layers], self.latent_dims))
            except DECODE_ERRORS as e:
                decoders.append(None)
                failed[i] = e

        def decode(y, m, s, a):
            m_c, s_c = m * a, s * a
            y_c = torch.zeros(m_c.shape, dtype=torch.float32)
            for i, dec in enumerate(decoders):
                if i not in failed:
                    try:
                        y_c[i] = dec.decode(m_c[i], s_c[i])
                    except DECODE_ERRORS as e:
                        failed[i] = e
            return y_c, None

        cursor = LSETCursor(self.lset, n)
        out = self._code_layers(cursor, None, gains, n_layers, n, lambda l: decode)
        for i, dec in enumerate(decoders):
            if i not in failed:
                try:
                    dec.finish()
                except DECODE_ERRORS as e:
                    failed[i] = e
        context = out["context"]
        if predict:
            for l in range(n_layers, self.num_layers):
                context.append(self.predict(context, l, cursor))
        return {"y_hat": out["y_hat"], "context": context, "failed": failed}
