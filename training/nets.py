"""The networks of the default model, sized for training on a 2-core CPU and for fast inference.

- Encoder / Decoder: a deterministic autoencoder, 8x down/up, 4 latent channels.
- PreviewDecoder: a tiny TAESD-style decoder (unscaled diffusion latents -> RGB in [0, 1]).
- TextEncoder: token + position embeddings and a small transformer over the 77 CLIP token ids.
- UNet: EDM-preconditioned x0 predictor wrapped to the SD interface (epsilon from `sample` =
  x / sqrt(sigma^2 + 1) and an integer timestep).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LATENT_CHANNELS = 4
SEQ_LEN = 77


def sigmas_table() -> np.ndarray:
    """sqrt((1 - abar) / abar) for scaled_linear 0.00085..0.012 over 1000 steps (float64), as
    server/pipeline/schedulers.ts computes it."""
    betas = np.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=np.float64) ** 2
    abar = np.cumprod(1 - betas)
    return np.sqrt((1 - abar) / abar)


# ---------------------------------------------------------------------------------------------
# Autoencoder

class Res(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1, padding_mode="replicate")
        self.c2 = nn.Conv2d(c, c, 3, padding=1, padding_mode="replicate")

    def forward(self, x):
        return x + self.c2(F.silu(self.c1(F.silu(x))))


class Encoder(nn.Module):
    """RGB in [-1, 1] [B,3,H,W] -> latent [B,4,H/8,W/8] (unscaled)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(48, 48, 3, padding=1)
        self.c2 = nn.Conv2d(48, 96, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(96, 96, 3, padding=1)
        self.c4 = nn.Conv2d(96, 96, 3, padding=1)
        self.out = nn.Conv2d(96, LATENT_CHANNELS, 1)

    def forward(self, x):
        h = F.pixel_unshuffle(x, 4)
        h = F.silu(self.c1(h)) + h
        h = F.silu(self.c2(h))
        h = h + self.c4(F.silu(self.c3(h)))
        return self.out(F.silu(h))


class Decoder(nn.Module):
    """Latent [B,4,h,w] (unscaled) -> RGB [B,3,8h,8w] in [-1, 1]."""

    def __init__(self, c0: int = 96, c1: int = 64, c2: int = 32) -> None:
        super().__init__()
        self.inp = nn.Conv2d(LATENT_CHANNELS, c0, 3, padding=1, padding_mode="replicate")
        self.r0 = Res(c0)
        self.u1 = nn.Conv2d(c0, c1 * 4, 1)
        self.r1 = Res(c1)
        self.u2 = nn.Conv2d(c1, c2 * 4, 1)
        self.c2 = nn.Conv2d(c2, c2, 3, padding=1, padding_mode="replicate")
        self.u3 = nn.Conv2d(c2, 12, 1)

    def forward(self, z):
        h = self.r0(self.inp(z))
        h = self.r1(F.pixel_shuffle(self.u1(F.silu(h)), 2))
        h = F.pixel_shuffle(self.u2(F.silu(h)), 2)
        h = h + self.c2(F.silu(h))
        return torch.tanh(F.pixel_shuffle(self.u3(F.silu(h)), 2))


class PreviewDecoder(nn.Module):
    """Diffusion latents (scaled, as the sampler has them) -> RGB [B,3,8h,8w] in [0, 1]."""

    def __init__(self, c0: int = 64, c1: int = 32) -> None:
        super().__init__()
        self.inp = nn.Conv2d(LATENT_CHANNELS, c0, 3, padding=1)
        self.c0 = nn.Conv2d(c0, c0, 3, padding=1)
        self.u1 = nn.Conv2d(c0, c1 * 4, 1)
        self.c1 = nn.Conv2d(c1, c1, 3, padding=1)
        self.u2 = nn.Conv2d(c1, 48, 1)

    def forward(self, z):
        h = F.silu(self.inp(z))
        h = h + self.c0(h)
        h = F.pixel_shuffle(self.u1(F.silu(h)), 2)
        h = h + self.c1(F.silu(h))
        return torch.tanh(F.pixel_shuffle(self.u2(F.silu(h)), 4)) * 0.5 + 0.5


# ---------------------------------------------------------------------------------------------
# Text encoder

class Block(nn.Module):
    """Pre-norm transformer block (bidirectional self-attention + GELU MLP), written out so that it
    exports to plain ONNX ops."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.n1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.n2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, width)

    def forward(self, h):
        b, n, w = h.shape
        q, k, v = self.qkv(self.n1(h)).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(w // self.heads), dim=-1)
        h = h + self.proj((att @ v).transpose(1, 2).reshape(b, n, w))
        return h + self.fc2(F.gelu(self.fc1(self.n2(h))))


class TextEncoder(nn.Module):
    def __init__(self, vocab: int, width: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        nn.init.normal_(self.tok.weight, 0, 0.1)
        self.pos = nn.Parameter(torch.randn(SEQ_LEN, width) * 0.1)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(width)

    def forward(self, ids):
        h = self.tok(ids.long()) + self.pos
        for b in self.blocks:
            h = b(h)
        return self.norm(h)


class TextEncoderExport(nn.Module):
    """input_ids int32 [B,77] -> last_hidden_state [B,77,H], pooler_output [B,H] (state at EOS,
    the largest id, as CLIP)."""

    def __init__(self, te: TextEncoder) -> None:
        super().__init__()
        self.te = te

    def forward(self, input_ids):
        h = self.te(input_ids)
        eos = torch.argmax(input_ids.long(), dim=1)
        pooled = torch.gather(h, 1, eos[:, None, None].expand(-1, 1, h.shape[2]))[:, 0]
        return h, pooled


# ---------------------------------------------------------------------------------------------
# UNet

class FiLMRes(nn.Module):
    def __init__(self, c: int, emb: int, groups: int = 8) -> None:
        super().__init__()
        self.n1 = nn.GroupNorm(groups, c)
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.n2 = nn.GroupNorm(groups, c)
        self.film = nn.Linear(emb, 2 * c)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x, emb):
        h = self.c1(F.silu(self.n1(x)))
        s, b = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.n2(h) * (1 + s) + b
        return x + self.c2(F.silu(h))


class UNetCore(nn.Module):
    """F(c_in x, c_noise, text): a thin block at the latent's own 32x32 (edges and corners are a
    latent pixel wide), the body at 16x16 (folded 2x2 into channels) and 8x8.

    Text: learned queries attend over the token states (attention pooling); the pooled vector
    drives FiLM in every block and a spatial map added at the 8x8 level (where things are).
    """

    def __init__(self, text_width: int = 64, c0: int = 32, c1: int = 64, c2: int = 128, emb: int = 256,
                 queries: int = 4, map_ch: int = 32) -> None:
        super().__init__()
        self.emb = emb
        self.q = nn.Parameter(torch.randn(queries, text_width) * 0.1)
        self.k = nn.Linear(text_width, text_width)
        self.v = nn.Linear(text_width, text_width)
        self.text_mlp = nn.Sequential(nn.Linear(queries * text_width, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.time_mlp = nn.Sequential(nn.Linear(32, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.map = nn.Linear(emb, map_ch * 64)
        self.map_ch = map_ch
        self.map_in = nn.Conv2d(map_ch, c2, 1)
        self.full_in = nn.Conv2d(LATENT_CHANNELS, c0, 3, padding=1)
        self.f1 = FiLMRes(c0, emb)
        self.inp = nn.Conv2d(c0 * 4, c1, 3, padding=1)
        self.r1 = FiLMRes(c1, emb)
        self.r2 = FiLMRes(c1, emb)
        self.down = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.m1 = FiLMRes(c2, emb)
        self.m2 = FiLMRes(c2, emb)
        self.up = nn.Conv2d(c2 + c1, c1, 3, padding=1)
        self.r3 = FiLMRes(c1, emb)
        self.r4 = FiLMRes(c1, emb)
        self.unfold = nn.Conv2d(c1, c0 * 4, 3, padding=1)
        self.full_mix = nn.Conv2d(2 * c0, c0, 3, padding=1)
        self.f2 = FiLMRes(c0, emb)
        self.out_norm = nn.GroupNorm(8, c0)
        self.out = nn.Conv2d(c0, LATENT_CHANNELS, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("freqs", torch.exp(torch.arange(16) * (-math.log(1000.0) / 16)), persistent=False)
        self.always_resize = False  # set for the ONNX export, so that any latent size works

    def forward(self, x_in, c_noise, text):
        # Text pooling.
        k = self.k(text)  # [B,77,T]
        v = self.v(text)
        att = torch.softmax(torch.einsum("qd,bld->bql", self.q, k) / math.sqrt(k.shape[-1]), dim=-1)
        pooled = torch.einsum("bql,bld->bqd", att, v).flatten(1)
        self.last_pooled = pooled  # for the training's auxiliary caption heads
        temb = self.text_mlp(pooled)
        arg = c_noise[:, None] * 10 * self.freqs[None]
        emb = F.silu(temb + self.time_mlp(torch.cat([torch.sin(arg), torch.cos(arg)], 1)))
        full = self.f1(self.full_in(x_in), emb)
        h = self.inp(F.pixel_unshuffle(full, 2))
        h = self.r2(self.r1(h, emb), emb)
        d = self.down(F.silu(h))
        m = self.map(temb).view(-1, self.map_ch, 8, 8)
        if self.always_resize or d.shape[2] != 8 or d.shape[3] != 8:
            m = F.interpolate(m, size=(d.shape[2], d.shape[3]), mode="bilinear", align_corners=False)
        d = d + self.map_in(m)
        d = self.m2(self.m1(d, emb), emb)
        u = F.interpolate(d, scale_factor=2.0, mode="nearest")
        u = self.up(torch.cat([u, h], 1))
        u = self.r4(self.r3(u, emb), emb)
        f = F.pixel_shuffle(self.unfold(F.silu(u)), 2)
        f = self.f2(self.full_mix(torch.cat([f, full], 1)), emb)
        return self.out(F.silu(self.out_norm(f)))


def precondition(sigma):
    """EDM coefficients with sigma_data = 1: x0 = c_skip x + c_out F(c_in x, c_noise)."""
    c_skip = 1 / (sigma ** 2 + 1)
    c_out = sigma / torch.sqrt(sigma ** 2 + 1)
    c_in = 1 / torch.sqrt(sigma ** 2 + 1)
    c_noise = torch.log(sigma) / 4
    return c_skip, c_out, c_in, c_noise


class UNetExport(nn.Module):
    """The SD UNet interface: sample (= x / sqrt(sigma^2+1)), int64 timestep, encoder_hidden_states
    -> out_sample (epsilon)."""

    def __init__(self, core: UNetCore) -> None:
        super().__init__()
        self.core = core
        self.register_buffer("sigmas", torch.tensor(sigmas_table(), dtype=torch.float32))

    def forward(self, sample, timestep, encoder_hidden_states):
        t = torch.clamp(timestep, 0, 999)
        sigma = self.sigmas[t]
        c_skip, c_out, _c_in, c_noise = precondition(sigma)
        s4 = sigma[:, None, None, None]
        x = sample * torch.sqrt(s4 ** 2 + 1)
        f = self.core(sample, c_noise, encoder_hidden_states)
        x0 = c_skip[:, None, None, None] * x + c_out[:, None, None, None] * f
        return (x - x0) / s4
