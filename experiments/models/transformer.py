"""Encoder-decoder Transformer (Vaswani et al. 2017) with greedy and beam-search decoding.

Base model: ``d_model`` 512, 6 + 6 layers, 8 heads, feed-forward 2048, dropout 0.1 (on the
residual branches, the attention weights and the feed-forward hidden layer), sinusoidal
positions, and one embedding matrix shared by the source, the target and the output
projection, multiplied by sqrt(d_model) on input (§3.4).

Layers are pre-norm (LayerNorm at the start of each residual branch, one more at the end of
each stack), as in tensor2tensor's ``transformer_base`` that the paper trained, rather than
the post-norm of the original paper; pre-norm trains stably without warmup, which the
"Lookahead + Adam without warmup" arm of Fig. 7(b) needs.

Decoding reuses the layers' own weights with a key/value cache, so each step costs one
position per layer instead of the whole prefix; a test checks that cached decoding gives the
same logits as the teacher-forced decoder.

Dropout masks on CPU (``dropout_masks``). torch's CPU dropout draws its mask with
``bernoulli_``, one generator call and a double comparison per element, and multiplies by it
in float: at Multi30k's cpu scale that was 13-14 % of a training step's op time, more than any
op but the matmuls. By default (``"bits"``) every ``nn.Dropout`` of the model (residual,
feed-forward and embedding dropout: 23 of the 32 masks of a 3 + 3-layer step) instead cuts
64-bit draws of the same default generator (``random_``) into four 16-bit integers and drops an
element when its integer is below ``round(p * 2**16)``: it is dropped with probability
``q = round(p * 2**16) / 2**16`` (within 2**-17 of p; 0.1 becomes 0.1000061) and a kept one is
scaled by ``1 / (1 - q)``, so the output's expectation is the input as with torch's. Forward and
backward together cost about a third of torch's (``results/bench/token_steps_cpu.md``). It is
another random stream than torch's, so a CPU run's numbers differ from those of the code before
this choice (the same procedure up to q - p), and they are as reproducible from the seed, and as
bit-identical on resume (the generator state is checkpointed), as before. ``"bernoulli"`` keeps
torch's masks (the stream of the earlier runs). On CUDA, under ``torch.compile``
(``trainer.compile``) and for the attention-weight dropout inside ``nn.MultiheadAttention``,
torch's dropout runs in either case: GPU and compiled runs are unchanged.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

Cache = List[Dict[str, torch.Tensor]]
DROPOUT_MASKS = ("bits", "bernoulli")


def drop_level(p: float) -> int:
    """The 16-bit threshold of :func:`keep_mask`: ``round(p * 2**16)``, at most 2**16."""
    return min(round(p * 2**16), 2**16)


def keep_mask(shape: Tuple[int, ...] | torch.Size, p: float, dtype: torch.dtype = torch.bool,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A CPU mask of ``shape``: 0 (drop) with probability ``q = drop_level(p) / 2**16``, else 1.

    Draws ``ceil(numel / 4)`` 64-bit integers over the full int64 range from ``generator`` (the
    default CPU generator if None), reads them as four times as many uniform 16-bit integers u
    and keeps those with ``u + 2**15 >= drop_level(p)``; the comparison writes ``dtype`` directly.
    """
    n, level = math.prod(shape), drop_level(p)
    if level == 2**16:  # q = 1: everything dropped (the threshold would not fit 16 bits)
        return torch.zeros(shape, dtype=dtype)
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None, generator=generator)
    u = bits.view(torch.int16)[:n].view(shape)
    return torch.ge(u, level - 2**15, out=torch.empty(shape, dtype=dtype))


class BitsDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU training masks come from :func:`keep_mask` (see the module doc).

    Evaluation, ``p == 0``, non-CPU tensors and code traced by ``torch.compile`` (which would
    break its graph at every mask) take ``nn.Dropout``'s own path. The output is a new tensor
    also when ``inplace`` is set.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or torch.compiler.is_compiling():
            return super().forward(x)  # torch.compile traces torch's dropout (inductor draws its own masks)
        q = drop_level(self.p) / 2**16
        if q == 1:
            return x * 0.0
        # The mask in x's dtype times 1 / (1 - q) (so E[output] = x): no casts in the product or
        # in its backward, which multiplies the gradient by the saved mask.
        return x * keep_mask(x.shape, self.p, x.dtype).mul_(1.0 / (1.0 - q))


def sinusoids(length: int, dim: int, device: torch.device, offset: int = 0) -> torch.Tensor:
    """PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(p / 10000^(2i/d)); shape (length, dim)."""
    pos = torch.arange(offset, offset + length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


def _heads(mha: nn.MultiheadAttention, x: torch.Tensor, which: int) -> torch.Tensor:
    """Project ``x`` (B, L, d) with the q (0), k (1) or v (2) weights of ``mha``; (B, H, L, d/H)."""
    d = mha.embed_dim
    w, b = mha.in_proj_weight[which * d : (which + 1) * d], mha.in_proj_bias[which * d : (which + 1) * d]
    return F.linear(x, w, b).unflatten(-1, (mha.num_heads, -1)).transpose(1, 2)


def _attend(mha: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return mha.out_proj(out.transpose(1, 2).flatten(2))


class Transformer(nn.Module):
    """``forward(src, tgt_in) -> logits`` (B, T, vocab); ids 0 are padding."""

    def __init__(self, vocab_size: int, d_model: int = 512, num_layers: int = 6, num_heads: int = 8,
                 ff_size: int = 2048, dropout: float = 0.1, pad_id: int = 0, dropout_masks: str = "bits") -> None:
        super().__init__()
        if d_model % num_heads or d_model % 2:
            raise ValueError(f"d_model={d_model} must be even and divisible by num_heads={num_heads}")
        if dropout_masks not in DROPOUT_MASKS:
            raise ValueError(f"dropout_masks={dropout_masks!r}; choose one of {', '.join(DROPOUT_MASKS)}")
        self.d_model, self.pad_id = d_model, pad_id
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        enc = nn.TransformerEncoderLayer(d_model, num_heads, ff_size, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(d_model, num_heads, ff_size, dropout, batch_first=True, norm_first=True)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        for name, p in self.named_parameters():
            if p.dim() > 1 and not name.startswith("embed"):
                nn.init.xavier_uniform_(p)
        # Shared input/output embedding: N(0, d^-1/2), so the sqrt(d)-scaled input has unit scale.
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.dropout_masks = dropout_masks
        if dropout_masks == "bits":
            for module in list(self.modules()):
                for name, child in module.named_children():
                    if type(child) is nn.Dropout:
                        setattr(module, name, BitsDropout(child.p, child.inplace))

    def _embed(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        x = self.embed(ids) * math.sqrt(self.d_model) + sinusoids(ids.size(1), self.d_model, ids.device, offset)
        return self.dropout(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.embed.weight)

    def encode(self, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(memory (B, S, d), source padding mask (B, S), True at padding)."""
        pad = src.eq(self.pad_id)
        return self.encoder(self._embed(src), src_key_padding_mask=pad), pad

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoder: logits for every position of ``tgt_in`` (causal self-attention)."""
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.size(1), device=tgt_in.device)
        x = self._embed(tgt_in)
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=pad)
        return self.logits(self.norm(x))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, pad = self.encode(src)
        return self.decode(tgt_in, memory, pad)

    def start_cache(self, memory: torch.Tensor, pad: torch.Tensor) -> Cache:
        """Per layer: the projected memory keys/values and an empty self-attention cache."""
        heads = self.layers[0].self_attn.num_heads
        empty = memory.new_zeros(memory.size(0), heads, 0, self.d_model // heads)
        mask = ~pad[:, None, None, :]
        return [{"mk": _heads(l.multihead_attn, memory, 1), "mv": _heads(l.multihead_attn, memory, 2), "mask": mask,
                 "k": empty, "v": empty} for l in self.layers]

    def step(self, last: torch.Tensor, cache: Cache, position: int) -> torch.Tensor:
        """Logits (B, vocab) of the next token after ``last`` (B,) at ``position``; updates ``cache``."""
        x = self._embed(last[:, None], offset=position)
        for layer, c in zip(self.layers, cache):
            h = layer.norm1(x)
            c["k"] = torch.cat([c["k"], _heads(layer.self_attn, h, 1)], 2)
            c["v"] = torch.cat([c["v"], _heads(layer.self_attn, h, 2)], 2)
            x = x + _attend(layer.self_attn, _heads(layer.self_attn, h, 0), c["k"], c["v"])
            h = layer.norm2(x)
            x = x + _attend(layer.multihead_attn, _heads(layer.multihead_attn, h, 0), c["mk"], c["mv"], c["mask"])
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
        return self.logits(self.norm(x[:, 0]))


def reorder(cache: Cache, index: torch.Tensor) -> Cache:
    return [{k: v.index_select(0, index) for k, v in c.items()} for c in cache]


def _strip(tokens: List[int], eos: int) -> List[int]:
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


@torch.no_grad()
def greedy(model: Transformer, src: torch.Tensor, max_len: int, bos: int, eos: int) -> List[List[int]]:
    """Arg-max decoding of each source row; returns the target ids without bos/eos."""
    memory, pad = model.encode(src)
    cache = model.start_cache(memory, pad)
    last = src.new_full((src.size(0),), bos)
    alive = torch.ones_like(last, dtype=torch.bool)
    out = []
    for t in range(max_len):
        last = model.step(last, cache, t).argmax(-1)
        out.append(last)
        alive &= last.ne(eos)
        if not alive.any():
            break
    rows = torch.stack(out, 1).tolist() if out else [[] for _ in range(src.size(0))]
    return [_strip(r, eos) for r in rows]


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty lp(L) = ((5 + L) / 6)^alpha (Wu et al. 2016, eq. 14)."""
    return ((5 + length) / 6) ** alpha


@torch.no_grad()
def beam_search(model: Transformer, src: torch.Tensor, beam: int, max_len: int, alpha: float,
                bos: int, eos: int) -> List[List[int]]:
    """Beam search; a finished hypothesis Y scores log P(Y | X) / lp(|Y|), |Y| counting the eos.

    Each step extends every live hypothesis by every token and keeps the 2 * beam best
    continuations per sentence by log-probability; those ending in eos among the first
    ``beam`` are finished, the ``beam`` best others stay live. A sentence is done when it has
    ``beam`` finished hypotheses; at ``max_len`` its live ones are finished as they are. With
    ``beam=1`` this is greedy decoding.
    """
    n, device = src.size(0), src.device
    memory, pad = model.encode(src)
    rows = torch.arange(n, device=device).repeat_interleave(beam)
    cache = model.start_cache(memory[rows], pad[rows])
    scores = torch.full((n, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # a single live hypothesis per sentence at the start
    history = src.new_zeros(n * beam, 0)
    last = src.new_full((n * beam,), bos)
    finished: List[List[Tuple[float, List[int]]]] = [[] for _ in range(n)]
    base = (torch.arange(n, device=device) * beam)[:, None]
    for t in range(max_len):
        logp = F.log_softmax(model.step(last, cache, t).float(), -1)
        vocab = logp.size(-1)
        top, pos = (scores.view(-1, 1) + logp).view(n, beam * vocab).topk(2 * beam, dim=1)
        origin, token = pos // vocab, pos % vocab
        ends = token.eq(eos)
        for i, r in (ends[:, :beam] & top[:, :beam].isfinite()).nonzero().tolist():
            if len(finished[i]) < beam:
                hyp = history[base[i, 0] + origin[i, r]].tolist()
                finished[i].append((top[i, r].item() / length_penalty(t + 1, alpha), hyp))
        if all(len(f) >= beam for f in finished):
            break
        scores, keep = top.masked_fill(ends, float("-inf")).topk(beam, dim=1)
        flat = (base + origin.gather(1, keep)).view(-1)
        last = token.gather(1, keep).view(-1)
        history = torch.cat([history[flat], last[:, None]], 1)
        cache = reorder(cache, flat)
    else:  # out of length: the live hypotheses finish as they are
        for i in range(n):
            for b in range(beam):
                if len(finished[i]) < beam and torch.isfinite(scores[i, b]):
                    score = scores[i, b].item() / length_penalty(max_len, alpha)
                    finished[i].append((score, history[i * beam + b].tolist()))
    return [_strip(max(f, key=lambda h: h[0])[1], eos) for f in finished]
