"""SD 2.1 / SD-Turbo UNet architecture in plain torch (diffusers is not available on our machines).

Mirrors diffusers' UNet2DConditionModel with the config of stabilityai/sd-turbo (= SD 2.1 base):
block_out_channels [320, 640, 1280, 1280], layers_per_block 2, CrossAttnDownBlock2D x3 + DownBlock2D,
UNetMidBlock2DCrossAttn, UpBlock2D + CrossAttnUpBlock2D x3, attention_head_dim [5, 10, 20, 20] (for
SD 2.x that is the number of heads: 64 channels per head), cross_attention_dim 1024,
use_linear_projection, GroupNorm(32), SiLU, GEGLU feed-forward, time embedding 320 -> 1280.
Full size it has ~865.9M parameters, so its compute is the real model's; weights are random: a
benchmark stand-in that never draws anything. `scale` divides every width so the same graph can be
exported and served on a CPU in tests.

Written for torch 1.13 (Debian, our CPU machines) and torch 2.x (the GPU hosts): no newer APIs
except scaled_dot_product_attention, used only when present (same math as the explicit path).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

SD21_UNET = {
    "block_out_channels": [320, 640, 1280, 1280],
    "attention_head_dim": [5, 10, 20, 20],
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "in_channels": 4,
    "out_channels": 4,
    "norm_num_groups": 32,
}
# diffusers' UNet2DConditionModel.from_pretrained("stabilityai/sd-turbo", subfolder="unet").num_parameters()
SD21_UNET_PARAMETERS = 865_910_724


def scaled_config(scale: int) -> dict:
    """The SD 2.1 config with every width divided by `scale` (a power of two up to 16)."""
    if scale not in (1, 2, 4, 8, 16):
        raise ValueError("scale must be 1, 2, 4, 8 or 16")
    c = dict(SD21_UNET)
    c["block_out_channels"] = [ch // scale for ch in SD21_UNET["block_out_channels"]]
    c["cross_attention_dim"] = SD21_UNET["cross_attention_dim"] // scale
    # GroupNorm needs every width divisible by the group count; 32 // scale keeps channels per group fixed.
    c["norm_num_groups"] = SD21_UNET["norm_num_groups"] // scale
    return c


class ResnetBlock(nn.Module):
    """diffusers ResnetBlock2D: GN-SiLU-conv, + projected time embedding, GN-SiLU-conv, skip."""

    def __init__(self, cin: int, cout: int, temb: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(nn.Module):
    """diffusers Attention: q from x, k/v from context (x for self-attention), no qkv bias."""

    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)  # a Python constant, not traced from shapes
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x, context):
        b, n, c = x.shape
        h, d = self.heads, c // self.heads
        q = self.to_q(x).reshape(b, n, h, d).transpose(1, 2)
        k = self.to_k(context).reshape(b, -1, h, d).transpose(1, 2)
        v = self.to_v(context).reshape(b, -1, h, d).transpose(1, 2)
        if hasattr(F, "scaled_dot_product_attention") and not torch.onnx.is_in_onnx_export():
            out = F.scaled_dot_product_attention(q, k, v)  # the fused kernels diffusers uses on torch 2
        else:
            out = torch.softmax((q * self.scale) @ k.transpose(-1, -2), dim=-1) @ v
        return self.to_out(out.transpose(1, 2).reshape(b, n, c))


class TransformerBlock(nn.Module):
    """diffusers BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward (4x)."""

    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff_in = nn.Linear(dim, dim * 8)  # GEGLU: 4x inner width, doubled for the gate
        self.ff_out = nn.Linear(dim * 4, dim)

    def forward(self, x, context):
        n = self.norm1(x)
        x = x + self.attn1(n, n)
        x = x + self.attn2(self.norm2(x), context)
        hidden, gate = self.ff_in(self.norm3(x)).chunk(2, dim=-1)
        return x + self.ff_out(hidden * F.gelu(gate))


class Transformer2D(nn.Module):
    """diffusers Transformer2DModel with use_linear_projection=True and one block."""

    def __init__(self, dim: int, heads: int, context_dim: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim)
        self.block = TransformerBlock(dim, heads, context_dim)
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x, context):
        b, c, hh, ww = x.shape
        h = self.norm(x).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
        h = self.proj_out(self.block(self.proj_in(h), context))
        return x + h.reshape(b, hh, ww, c).permute(0, 3, 1, 2)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def timestep_embedding(timesteps, dim: int):
    """diffusers Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0), computed in float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class StandinUNet(nn.Module):
    """sample [B,4,h,w], timestep int64 [B], encoder_hidden_states [B,77,ctx] -> out_sample [B,4,h,w]."""

    def __init__(self, config: dict):
        super().__init__()
        ch = config["block_out_channels"]
        heads = config["attention_head_dim"]
        ctx = config["cross_attention_dim"]
        g = config["norm_num_groups"]
        layers = config["layers_per_block"]
        temb = ch[0] * 4
        self.time_dim = ch[0]
        self.time_linear_1 = nn.Linear(ch[0], temb)
        self.time_linear_2 = nn.Linear(temb, temb)
        self.conv_in = nn.Conv2d(config["in_channels"], ch[0], 3, padding=1)

        # Down path: (resnet, attention or None) pairs, then a downsample except in the last block.
        self.down = nn.ModuleList()
        skip_channels = [ch[0]]
        cin = ch[0]
        for i, cout in enumerate(ch):
            cross = i < len(ch) - 1
            for _ in range(layers):
                self.down.append(nn.ModuleList([ResnetBlock(cin, cout, temb, g), Transformer2D(cout, heads[i], ctx, g) if cross else nn.Identity()]))
                skip_channels.append(cout)
                cin = cout
            if i < len(ch) - 1:
                self.down.append(Downsample(cout))
                skip_channels.append(cout)

        self.mid_res1 = ResnetBlock(ch[-1], ch[-1], temb, g)
        self.mid_attn = Transformer2D(ch[-1], heads[-1], ctx, g)
        self.mid_res2 = ResnetBlock(ch[-1], ch[-1], temb, g)

        # Up path: layers + 1 resnets per block, each taking one skip; attention except in the first block.
        self.up = nn.ModuleList()
        rch, rheads = list(reversed(ch)), list(reversed(heads))
        cin = ch[-1]
        for i, cout in enumerate(rch):
            cross = i > 0
            for _ in range(layers + 1):
                skip = skip_channels.pop()
                self.up.append(nn.ModuleList([ResnetBlock(cin + skip, cout, temb, g), Transformer2D(cout, rheads[i], ctx, g) if cross else nn.Identity()]))
                cin = cout
            if i < len(rch) - 1:
                self.up.append(Upsample(cout))

        self.norm_out = nn.GroupNorm(g, ch[0], eps=1e-5)
        self.conv_out = nn.Conv2d(ch[0], config["out_channels"], 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states):
        # As diffusers: the sinusoid in float32, then the model's dtype.
        t = timestep_embedding(timestep, self.time_dim).to(sample.dtype)
        temb = self.time_linear_2(F.silu(self.time_linear_1(t)))
        x = self.conv_in(sample)
        skips = [x]
        for layer in self.down:
            if isinstance(layer, Downsample):
                x = layer(x)
            else:
                x = layer[0](x, temb)
                if not isinstance(layer[1], nn.Identity):
                    x = layer[1](x, encoder_hidden_states)
            skips.append(x)
        x = self.mid_res2(self.mid_attn(self.mid_res1(x, temb), encoder_hidden_states), temb)
        for layer in self.up:
            if isinstance(layer, Upsample):
                x = layer(x)
            else:
                x = layer[0](torch.cat([x, skips.pop()], dim=1), temb)
                if not isinstance(layer[1], nn.Identity):
                    x = layer[1](x, encoder_hidden_states)
        return self.conv_out(F.silu(self.norm_out(x)))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
