"""The stand-in's other models: the SD VAE decoder, the TAESD decoder and a tiny text encoder.

- VaeDecoder mirrors diffusers AutoencoderKL's decoder half as optimum exports it (post_quant_conv +
  Decoder): block_out_channels [128, 256, 512, 512], layers_per_block 2 (3 resnets per up block),
  a mid block with one attention, GroupNorm(32), SiLU. ~49.5M parameters, like the real one.
- TaesdDecoder mirrors madebyollin/taesd's decoder (~1.2M parameters): unscaled latents in, about
  [0, 1] out, which is what the server's preview decoder expects.
- TextEncoder is NOT CLIP's size: token embedding + one linear layer with CLIP's output shape
  [B, 77, width]. The server caches prompt encodings, so the text encoder is off every timed path.
Weights are random: benchmark stand-ins, never models that draw.
"""
import torch
import torch.nn.functional as F
from torch import nn

from unet import Upsample

SD_VAE_DECODER_PARAMETERS = 49_490_199  # post_quant_conv + decoder of stabilityai/sd-turbo's vae
TAESD_DECODER_PARAMETERS = 1_222_531  # madebyollin/taesd decoder


class VaeResnet(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class VaeAttention(nn.Module):
    """Single-head self-attention over pixels (diffusers' VAE mid-block attention)."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.to_q = nn.Linear(ch, ch)
        self.to_k = nn.Linear(ch, ch)
        self.to_v = nn.Linear(ch, ch)
        self.to_out = nn.Linear(ch, ch)

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        q, k, v = self.to_q(n), self.to_k(n), self.to_v(n)
        attn = torch.softmax((q * (c ** -0.5)) @ k.transpose(1, 2), dim=-1)
        return x + self.to_out(attn @ v).transpose(1, 2).reshape(b, c, h, w)


class VaeDecoder(nn.Module):
    """latent_sample [B,4,h,w] (diffusion latents / scaling_factor) -> sample [B,3,8h,8w] in about [-1, 1]."""

    def __init__(self, channels=(128, 256, 512, 512), groups: int = 32, latent: int = 4):
        super().__init__()
        rch = list(reversed(channels))
        self.post_quant_conv = nn.Conv2d(latent, latent, 1)
        self.conv_in = nn.Conv2d(latent, rch[0], 3, padding=1)
        self.mid = nn.ModuleList([VaeResnet(rch[0], rch[0], groups), VaeAttention(rch[0], groups), VaeResnet(rch[0], rch[0], groups)])
        layers = []
        cin = rch[0]
        for i, cout in enumerate(rch):
            for _ in range(3):
                layers.append(VaeResnet(cin, cout, groups))
                cin = cout
            if i < len(rch) - 1:
                layers.append(Upsample(cout))
        self.up = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(groups, rch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(rch[-1], 3, 3, padding=1)

    def forward(self, latent_sample):
        x = self.conv_in(self.post_quant_conv(latent_sample))
        for layer in self.mid:
            x = layer(x)
        return self.conv_out(F.silu(self.norm_out(self.up(x))))


class TaesdBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x):
        return F.relu(self.conv(x) + x)


class TaesdDecoder(nn.Module):
    """latent_sample [B,4,h,w] (unscaled diffusion latents) -> sample [B,3,8h,8w] in about [0, 1]."""

    def __init__(self, ch: int = 64, latent: int = 4):
        super().__init__()
        layers = [nn.Conv2d(latent, ch, 3, padding=1), nn.ReLU()]
        for _ in range(3):
            layers += [TaesdBlock(ch), TaesdBlock(ch), TaesdBlock(ch), nn.Upsample(scale_factor=2), nn.Conv2d(ch, ch, 3, padding=1, bias=False)]
        layers += [TaesdBlock(ch), nn.Conv2d(ch, 3, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, latent_sample):
        return self.layers(torch.tanh(latent_sample / 3) * 3)


class TextEncoder(nn.Module):
    """input_ids int64 [B,77] -> last_hidden_state [B,77,width]. Shape-compatible, not CLIP-sized."""

    def __init__(self, vocab: int, width: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.position_embedding = nn.Parameter(torch.randn(77, width) * 0.01)
        self.proj = nn.Linear(width, width)

    def forward(self, input_ids):
        return self.proj(self.token_embedding(input_ids) + self.position_embedding)
