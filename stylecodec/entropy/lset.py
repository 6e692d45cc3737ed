"""LSET: layer-wise scalable entropy transformer, p(ŷ_l | ŷ_<l) as a Gaussian per element.

Tokens. Each layer's latent y_l [N, d_l] is cut into G_l = d_l / g groups of g elements;
each group is one token. The sequence is, layer by layer, a start token (value 0) then the
layer's group tokens::

    [S_0, y_0[0:g], ..., y_0[-g:], S_1, y_1[0:g], ..., S_2, ...]

Each token is embedded as Linear(g -> d_model)(values) + layer embedding + slot embedding
(slot 0 = start token, slot j = group j-1).

Prediction. The output at slot j of layer l gives (mean, scale) of group j of layer l (the
last group token's output is unused). :func:`lset_attention_mask` lets that slot see every
token of lower layers and slots <= j of its own layer (the start token and groups < j), never
a later group nor a higher layer, so group j of layer l is conditioned on ŷ_<l and its own
groups < j only: exactly what a decoder has when it decodes that group.

Determinism. In float64 (``.double()``, the coding path) every matmul, layer norm, softmax
and the scale output use only IEEE-754 elementwise add / multiply / divide / sqrt and exact
bit operations: sums run over a fixed pairwise tree (no BLAS, whose summation order depends
on thread count and shapes) and exp is a fixed polynomial (no libm/SLEEF). So the parameters
are the same bits for any batch size, thread count, CPU type or sequence length: a token's
output is independent of later tokens, and :meth:`LSET.forward` (teacher forcing),
:meth:`LSET.params_for_group` (shorter sequences) and :class:`LSETCursor` (the coder's path:
one token at a time with cached keys and values) agree exactly. The loop over a layer's groups
that uses them is :class:`stylecodec.entropy.coder.GroupCoder`. float32 (training)
runs the same function with the ordinary fast kernels. Keep the float64 path eager (no
torch.compile): a compiler may fuse a multiply and an add into an FMA, which rounds once.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

__all__ = ["LSET", "LSETCursor", "lset_attention_mask", "token_layout"]


def token_layout(slots_per_layer: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(layer id, slot within layer) of every token, each int64 [S] with S = sum(slots_per_layer)."""
    layer_ids = torch.cat([torch.full((n,), l, dtype=torch.long) for l, n in enumerate(slots_per_layer)])
    slot_ids = torch.cat([torch.arange(n, dtype=torch.long) for n in slots_per_layer])
    return layer_ids, slot_ids


def lset_attention_mask(slots_per_layer: Sequence[int]) -> torch.Tensor:
    """bool [S, S]; mask[q, k] is True where query token q may attend to key token k.

    Allowed iff layer(k) < layer(q), or layer(k) == layer(q) and slot(k) <= slot(q).
    ``slots_per_layer[l]`` counts layer l's start token plus its group tokens.
    """
    layer_ids, slot_ids = token_layout(slots_per_layer)
    lq, lk = layer_ids[:, None], layer_ids[None, :]
    sq, sk = slot_ids[:, None], slot_ids[None, :]
    return (lk < lq) | ((lk == lq) & (sk <= sq))


# -- fixed-order arithmetic for the float64 coding path -------------------------------------
# BLAS matmuls and torch's vectorised reductions pick their summation order by thread count,
# shape and SIMD width (MKL dgemm, e.g., splits K >= 256 across 2 threads), and exp/log come
# from libm or SLEEF depending on the CPU; any of these can move a float64 result by an ulp.
# These helpers use only correctly rounded elementwise ops in a fixed order instead.

_ROWS_PER_CHUNK = 64                      # bounds the [in, rows, out] product tensor of _linear
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 = hi + lo (fdlibm)
_EXP_COEFFS = [1.0 / math.factorial(n) for n in range(14)]                  # Taylor series of exp, degree 13
_EXP_MIN = -708.0                         # exp(x) for x < _EXP_MIN is returned as 0 (keeps 2^k normal)


def _tree_sum0(x: torch.Tensor) -> torch.Tensor:
    """Sum over dim 0 by folding halves, the length zero-padded to a power of two: [K, ...] -> [...].

    Trailing zeros do not change the result, so a sum over a prefix of the entries equals the
    sum over the whole dim when the rest are zero (the masked keys of attention).
    """
    k = x.shape[0]
    size = 1 << (k - 1).bit_length()
    if size != k:
        x = torch.cat([x, x.new_zeros(size - k, *x.shape[1:])])
    while x.shape[0] > 1:
        h = x.shape[0] // 2
        x = x[:h] + x[h:]
    return x[0]


def _tree_sum(x: torch.Tensor) -> torch.Tensor:
    """Fixed-order sum over the last dim: [..., K] -> [...]."""
    return _tree_sum0(x.movedim(-1, 0))


def _fixed_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [..., M, K] @ b [..., K, N] -> [..., M, N] in fixed order."""
    return _tree_sum0(a.movedim(-1, 0).unsqueeze(-1) * b.movedim(-2, 0).unsqueeze(-2))


def _fixed_exp(x: torch.Tensor) -> torch.Tensor:
    """exp(x) for float64 x <= 0 (or -inf), from + and * only: x = k ln2 + r, exp = poly(r) * 2^k."""
    xc = x.clamp(min=_EXP_MIN)
    k = torch.round(xc * (1.0 / math.log(2.0)))
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    p = torch.full_like(r, _EXP_COEFFS[-1])
    for c in reversed(_EXP_COEFFS[:-1]):
        p = p * r + c
    two_k = torch.bitwise_left_shift(k.to(torch.int64) + 1023, 52).view(torch.float64)
    return torch.where(x < _EXP_MIN, torch.zeros_like(p), p * two_k)


def _linear(x: torch.Tensor, layer: nn.Linear, fixed: bool) -> torch.Tensor:
    """layer(x) for x [..., in]; in fixed order when ``fixed``."""
    if not fixed:
        return layer(x)
    rows, w_t = x.reshape(-1, x.shape[-1]), layer.weight.t()
    out = torch.cat([_fixed_matmul(rows[i:i + _ROWS_PER_CHUNK], w_t)
                     for i in range(0, rows.shape[0], _ROWS_PER_CHUNK)])
    return (out + layer.bias).view(*x.shape[:-1], -1)


def _layer_norm(x: torch.Tensor, norm: nn.LayerNorm, fixed: bool) -> torch.Tensor:
    """norm(x) over the last dim; in fixed order when ``fixed``."""
    if not fixed:
        return norm(x)
    d = x.shape[-1]
    xc = x - (_tree_sum(x) / d).unsqueeze(-1)
    var = _tree_sum(xc * xc) / d
    return xc / torch.sqrt(var + norm.eps).unsqueeze(-1) * norm.weight + norm.bias


def _softmax(x: torch.Tensor, fixed: bool) -> torch.Tensor:
    """Softmax over the last dim (entries may be -inf, at least one finite per row)."""
    if not fixed:
        return x.softmax(dim=-1)
    e = _fixed_exp(x - x.amax(dim=-1, keepdim=True))
    return e / _tree_sum(e).unsqueeze(-1)


def _squareplus(x: torch.Tensor) -> torch.Tensor:
    """(x + sqrt(x² + 4)) / 2: a smooth positive map like softplus (same slope 1/2 at 0, -> x for
    large x) made of correctly rounded ops only, so it is bit-reproducible in float64."""
    return 0.5 * (x + torch.sqrt(x * x + 4.0))


class _Block(nn.Module):
    """Pre-norm transformer block with an explicit boolean attention mask: x [N, S, d] -> [N, S, d]."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int):
        super().__init__()
        assert d_model % n_heads == 0
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, mlp_ratio * d_model)
        self.fc2 = nn.Linear(mlp_ratio * d_model, d_model)

    def _qkv(self, x: torch.Tensor, fixed: bool) -> torch.Tensor:
        """x [N, S, d] -> q, k, v stacked: [3, N, heads, S, d / heads]."""
        n, s, d = x.shape
        qkv = _linear(_layer_norm(x, self.norm1, fixed), self.qkv, fixed)
        return qkv.view(n, s, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)

    def _rest(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
              fixed: bool) -> torch.Tensor:
        """Attention of queries q over keys/values k, v (``mask`` None: all visible), then the MLP."""
        n, s, d = x.shape
        matmul = _fixed_matmul if fixed else torch.matmul
        att = matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.n_heads))
        att = _softmax(att if mask is None else att.masked_fill(~mask, float("-inf")), fixed)
        x = x + _linear(matmul(att, v).transpose(1, 2).reshape(n, s, d), self.out, fixed)
        h = torch.relu(_linear(_layer_norm(x, self.norm2, fixed), self.fc1, fixed))
        return x + _linear(h, self.fc2, fixed)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, fixed: bool) -> torch.Tensor:
        q, k, v = self._qkv(x, fixed)
        return self._rest(x, q, k, v, mask, fixed)

    def step(self, x: torch.Tensor, cache: list, fixed: bool) -> torch.Tensor:
        """The next token x [N, 1, d] given ``cache`` = [keys, values] of the earlier tokens (each
        [N, heads, P, d / heads], or None before the first), which it extends. The LSET mask is
        causal in token order, so the new token sees exactly the cached ones and itself."""
        q, k, v = self._qkv(x, fixed)
        if cache[0] is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        cache[0], cache[1] = k, v
        return self._rest(x, q, k, v, None, fixed)


class LSET(nn.Module):
    """Gaussian entropy model of the layered latents; see the module docstring for the token scheme.

    Shapes: y_l [N, d_l]; means and scales have the same shapes; scales > scale_bound.
    """

    def __init__(self,
        latent_dims: Sequence[int] = (16, 24, 32),  # d_l of each layer, in coding order (basic, middle, enhanced).
        group_size:  int = 4,                       # g: latent elements per token; must divide every d_l.
        d_model:     int = 128,                     # Transformer width.
        n_blocks:    int = 3,                       # Transformer blocks.
        n_heads:     int = 4,                       # Attention heads.
        mlp_ratio:   int = 2,                       # MLP hidden width / d_model.
        scale_bound: float = 0.11,                  # Lower bound of predicted scales (CompressAI's default).
        static_first_layer: bool = False,           # Layer 0 gets a learned, context-free (mean, scale) per element.
    ):
        super().__init__()
        self.latent_dims = [int(d) for d in latent_dims]
        if not self.latent_dims or any(d < 1 or d % group_size for d in self.latent_dims):
            raise ValueError(f"group_size {group_size} must divide every latent size, got {self.latent_dims}")
        self.num_layers, self.group_size, self.scale_bound = len(self.latent_dims), group_size, float(scale_bound)
        self.num_groups = [d // group_size for d in self.latent_dims]
        slots = [1 + n for n in self.num_groups]
        self.layer_offset = [sum(slots[:l]) for l in range(self.num_layers)]  # index of each layer's start token
        self.seq_len = sum(slots)
        layer_ids, slot_ids = token_layout(slots)
        self.register_buffer("mask", lset_attention_mask(slots), persistent=False)
        self.register_buffer("layer_ids", layer_ids, persistent=False)
        self.register_buffer("slot_ids", slot_ids, persistent=False)

        self.value_embed = nn.Linear(group_size, d_model)
        self.layer_embed = nn.Embedding(self.num_layers, d_model)
        self.slot_embed = nn.Embedding(max(slots), d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, mlp_ratio) for _ in range(n_blocks))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 2 * group_size)
        # A static first layer (basic): p(y_0) is a fixed Gaussian per element (its raw head output,
        # [G_0, 2g], read through _params like the transformer's), so decoding the basic layer alone
        # runs no transformer; its tokens are still the context of the higher layers.
        self.static_first_layer = bool(static_first_layer)
        if self.static_first_layer:
            self.static_raw = nn.Parameter(torch.zeros(self.num_groups[0], 2 * group_size))

    # -- sequence plumbing ------------------------------------------------------------------
    def _tokens(self, n: int, length: int, ys: Sequence[torch.Tensor], partial: torch.Tensor | None = None,
                n_partial: int = 0) -> torch.Tensor:
        """Token values [n, length, g]: layers ``ys``, then ``n_partial`` groups of ``partial``, zeros after."""
        g, dtype, device = self.group_size, self.head.weight.dtype, self.head.weight.device
        values = torch.zeros(n, self.seq_len, g, dtype=dtype, device=device)
        for l, y in enumerate(ys):
            if y.shape != (n, self.latent_dims[l]):
                raise ValueError(f"layer {l}: expected y [{n}, {self.latent_dims[l]}], got {tuple(y.shape)}")
            o = self.layer_offset[l]
            values[:, o + 1:o + 1 + self.num_groups[l]] = y.to(dtype).view(n, -1, g)
        if n_partial:
            l = len(ys)
            if partial is None or partial.ndim != 2 or partial.shape[0] != n or partial.shape[1] < n_partial * g:
                raise ValueError(f"layer {l}: need the first {n_partial * g} decoded values [N, >={n_partial * g}]"
                                 f", got {None if partial is None else tuple(partial.shape)}")
            o = self.layer_offset[l]
            values[:, o + 1:o + 1 + n_partial] = partial[:, :n_partial * g].to(dtype).view(n, n_partial, g)
        return values[:, :length]

    def _run(self, values: torch.Tensor) -> torch.Tensor:
        """values [N, P, g] (the first P tokens) -> raw head outputs [N, P, 2g]; float64 runs in fixed order."""
        p = values.shape[1]
        assert values.ndim == 3 and 1 <= p <= self.seq_len and values.shape[2] == self.group_size
        fixed = values.dtype == torch.float64
        x = (_linear(values, self.value_embed, fixed) + self.layer_embed(self.layer_ids[:p])
             + self.slot_embed(self.slot_ids[:p]))
        for block in self.blocks:
            x = block(x, self.mask[:p, :p], fixed)
        return _linear(_layer_norm(x, self.norm, fixed), self.head, fixed)

    def _params(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """raw [..., 2g] -> (means [..., g], scales [..., g]), scales = scale_bound + squareplus(raw)."""
        g = self.group_size
        return raw[..., :g], self.scale_bound + _squareplus(raw[..., g:])

    # -- public API -------------------------------------------------------------------------
    def forward(self, ys: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Teacher-forced pass: ys = [y_0, ..., y_{m-1}] (m <= num_layers, y_l [N, d_l], e.g. noisy ỹ)
        -> (means, scales), lists of m tensors [N, d_l]: the parameters of p(y_l | y_<l)."""
        if not 1 <= len(ys) <= self.num_layers:
            raise ValueError(f"need 1..{self.num_layers} layers, got {len(ys)}")
        n, last = ys[0].shape[0], len(ys) - 1
        raw = self._run(self._tokens(n, self.layer_offset[last] + self.num_groups[last], ys))
        means, scales = [], []
        for l in range(len(ys)):
            o = self.layer_offset[l]
            r = raw[:, o:o + self.num_groups[l]] if l or not self.static_first_layer else \
                self.static_raw.to(raw.dtype).expand(n, -1, -1)
            m, s = self._params(r)                                  # slots 0..G-1 predict groups 0..G-1
            means.append(m.reshape(n, -1))
            scales.append(s.reshape(n, -1))
        return means, scales

    def static_params(self, group_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales) [1, g] of group ``group_idx`` of a static first layer (no context needed)."""
        assert self.static_first_layer
        return self._params(self.static_raw[group_idx:group_idx + 1].to(self.head.weight.dtype))

    def _check_group(self, context: Sequence[torch.Tensor], layer: int, group_idx: int) -> None:
        """ValueError unless group ``group_idx`` of ``layer`` exists and ``context`` holds what it needs."""
        if not 0 <= layer < self.num_layers or not 0 <= group_idx < self.num_groups[layer]:
            raise ValueError(f"no group {group_idx} in layer {layer} (groups per layer: {self.num_groups})")
        if len(context) < layer + (group_idx > 0):
            raise ValueError(f"layer {layer}, group {group_idx} needs {layer + (group_idx > 0)} context tensors, "
                             f"got {len(context)}")

    def params_for_group(self, context: Sequence[torch.Tensor], layer: int,
                         group_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales) [N, g] of group ``group_idx`` of layer ``layer``.

        context[:layer] are the decoded lower layers ŷ_l [N, d_l]; when group_idx > 0,
        context[layer] holds the current layer's decoded values so far, [N, >= group_idx*g]
        (only its first group_idx*g columns are read). With an empty context (layer 0,
        group 0: the unconditional prior) the batch size is 1. Runs only the tokens up to
        this group's slot; in float64 the result equals :meth:`forward`'s bit for bit.
        """
        self._check_group(context, layer, group_idx)
        if layer == 0 and self.static_first_layer:
            return self.static_params(group_idx)
        partial = context[layer] if group_idx > 0 else None
        n = context[0].shape[0] if len(context) else 1
        length = self.layer_offset[layer] + 1 + group_idx
        raw = self._run(self._tokens(n, length, list(context[:layer]), partial, group_idx))
        return self._params(raw[:, -1])


class LSETCursor:
    """The coder's path through the LSET: :meth:`params_for_group` with the same arguments and
    results as :meth:`LSET.params_for_group`, but each token runs once (keys and values of the
    blocks are cached), so coding a stream costs one pass over the sequence instead of one
    pass per group.

    Calls must come in coding order (layer by layer, group by group, or skipping ahead), and
    the context of tokens already run must not change (asking for an earlier group, or a changed
    value of the last token run, raises ValueError). In
    float64 the results equal :meth:`LSET.forward` bit for bit (the attention mask is causal in
    token order, and the fixed-order sums ignore trailing zeros: see the module docstring).
    """

    def __init__(self, lset: LSET, n: int = 1):
        self.lset, self.n, self.length = lset, int(n), 0
        self._caches = [[None, None] for _ in lset.blocks]
        self._seen: list[torch.Tensor] = []         # values of the tokens run so far, [N, g] each
        self._raw: torch.Tensor | None = None       # head output of the last token run, [N, 2g]

    def _token_value(self, index: int, context: Sequence[torch.Tensor]) -> torch.Tensor:
        lset, g = self.lset, self.lset.group_size
        layer = int(lset.layer_ids[index])
        slot = int(lset.slot_ids[index])
        dtype, device = lset.head.weight.dtype, lset.head.weight.device
        if slot == 0:
            return torch.zeros(self.n, g, dtype=dtype, device=device)
        y = context[layer]
        if y.ndim != 2 or y.shape[0] != self.n or y.shape[1] < slot * g:
            raise ValueError(f"layer {layer}: need the first {slot * g} decoded values [{self.n}, >={slot * g}], "
                             f"got {tuple(y.shape)}")
        return y[:, (slot - 1) * g:slot * g].to(dtype)

    @torch.no_grad()
    def _run_token(self, value: torch.Tensor) -> None:
        lset, p = self.lset, self.length
        fixed = value.dtype == torch.float64
        x = (_linear(value[:, None], lset.value_embed, fixed) + lset.layer_embed(lset.layer_ids[p:p + 1])
             + lset.slot_embed(lset.slot_ids[p:p + 1]))
        for block, cache in zip(lset.blocks, self._caches):
            x = block.step(x, cache, fixed)
        self._raw = _linear(_layer_norm(x, lset.norm, fixed), lset.head, fixed)[:, 0]
        self._seen.append(value)
        self.length += 1

    def params_for_group(self, context: Sequence[torch.Tensor], layer: int,
                         group_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales) [N, g] of group ``group_idx`` of ``layer``; see :meth:`LSET.params_for_group`."""
        lset = self.lset
        lset._check_group(context, layer, group_idx)
        if layer == 0 and lset.static_first_layer:                # no token runs: the tokens of layer 0
            return lset.static_params(group_idx)                  # run later, as context of layer 1
        target = lset.layer_offset[layer] + group_idx          # this group's slot
        if target < self.length - 1:
            raise ValueError(f"LSETCursor: layer {layer} group {group_idx} comes before the tokens already run")
        if self.length and target >= self.length:              # the last token run must still hold
            last = self.length - 1
            if not torch.equal(self._token_value(last, context), self._seen[last]):
                raise ValueError("LSETCursor: the context of a token already run has changed")
        while self.length <= target:
            self._run_token(self._token_value(self.length, context))
        return lset._params(self._raw)
