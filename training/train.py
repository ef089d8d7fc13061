"""Trains the embedded default model from scratch on procedurally drawn scenes and writes it in the
diffusers/optimum ONNX layout the server loads (see training/README.md).

    /usr/bin/python3 training/train.py --out models/default

Stages (fixed seeds, fixed step counts sized for a 2-core CPU):
  1. autoencoder (encoder + decoder, 8x, 4 latent channels) on crops of clean scenes and rough drawings
  2. latent data set: canonical scenes, free-position scenes and their rough drawings, encoded once
  3. text encoder + UNet, trained directly for the server's few-step Euler-ancestral sampler
  4. preview decoder distilled from the decoder
  5. ONNX export (opset 17) + configs + tokenizer files
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time

# OpenMP threads that spin while they wait make training many times slower whenever another
# process wants the same cores (measured on the 2-core machines: 4-6 s instead of 0.45 s a UNet
# step); passive waiting costs little when the cores are free. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402
from clip_tokenizer import Tokenizer  # noqa: E402
from nets import (Decoder, Encoder, PreviewDecoder, TextEncoder, TextEncoderExport, UNetCore,  # noqa: E402
                  UNetExport, precondition, sigmas_table)

SIGMAS = torch.tensor(sigmas_table(), dtype=torch.float32)
T0 = time.time()


def log(msg: str) -> None:
    print(f"[{(time.time() - T0) / 60:6.2f} min] {msg}", flush=True)


def to_tensor(imgs: list[np.ndarray]) -> torch.Tensor:
    """HxWx3 [0,255] float -> [B,3,H,W] in [-1, 1]."""
    return torch.from_numpy(np.stack(imgs).astype(np.float32)).permute(0, 3, 1, 2).contiguous() / 127.5 - 1


def lr_at(step: int, total: int, base: float, warmup: int = 100, floor: float = 0.05) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        self.decay = decay
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1 - d)


class Deadline:
    """Stops a stage early when the whole run would exceed --max-minutes (a safety net: the
    step counts are what make the run reproducible)."""

    def __init__(self, minutes: float, share: float, start: float) -> None:
        self.end = start + minutes * 60 * share

    def passed(self) -> bool:
        return time.time() > self.end


# ---------------------------------------------------------------------------------------------
# Stage 1: autoencoder

def random_scene(rng: np.random.Generator) -> dict:
    return scenes.canonical_scene(rng, held_out=None) if rng.random() < 0.5 else scenes.free_scene(rng, held_out=None)


def crop_batch(rng: np.random.Generator, n: int, crop: int) -> torch.Tensor:
    imgs = []
    for _ in range(n):
        sc = random_scene(rng)
        if rng.random() < 0.75:  # around the shape's edge, where the detail is
            ang = rng.uniform(0, 2 * math.pi)
            cx = sc["cx"] + math.cos(ang) * sc["r"] + rng.uniform(-crop / 3, crop / 3)
            cy = sc["cy"] + math.sin(ang) * sc["r"] + rng.uniform(-crop / 3, crop / 3)
        else:
            cx, cy = rng.uniform(0, scenes.SIZE), rng.uniform(0, scenes.SIZE)
        x0 = int(np.clip(round((cx - crop / 2) / 8) * 8, 0, scenes.SIZE - crop))
        y0 = int(np.clip(round((cy - crop / 2) / 8) * 8, 0, scenes.SIZE - crop))
        win = (x0, y0, crop, crop)
        if rng.random() < 0.3:
            imgs.append(scenes.render_rough(sc, scenes.rough_params(sc, rng), win)[0])
        else:
            imgs.append(scenes.render(sc, win))
    return to_tensor(imgs)


def train_autoencoder(args, rng: np.random.Generator, deadline: Deadline):
    enc, dec = Encoder(), Decoder()
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=args.ae_lr)
    log(f"autoencoder: encoder {sum(p.numel() for p in enc.parameters())} + decoder "
        f"{sum(p.numel() for p in dec.parameters())} parameters, {args.ae_steps} steps of {args.ae_batch} crops")
    ema_l = None
    for step in range(args.ae_steps):
        if deadline.passed():
            log(f"autoencoder: time budget reached at step {step}")
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.ae_steps, args.ae_lr)
        x = crop_batch(rng, args.ae_batch, args.ae_crop)
        z = enc(x)
        zn = z + torch.randn_like(z) * 0.05 * z.detach().std()
        rec = dec(zn)
        pooled = F.avg_pool2d(x, 8)
        loss = (rec - x).abs().mean() + F.mse_loss(rec, x) + 0.05 * F.mse_loss(z[:, :3], pooled) + 1e-3 * z.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_l = loss.item() if ema_l is None else 0.98 * ema_l + 0.02 * loss.item()
        if step % 200 == 0 or step == args.ae_steps - 1:
            log(f"autoencoder step {step}: loss {ema_l:.4f}")
    return enc.eval(), dec.eval()


# ---------------------------------------------------------------------------------------------
# Stage 2: latent data set

@torch.no_grad()
def encode_images(enc: Encoder, imgs: list[np.ndarray]) -> torch.Tensor:
    return enc(to_tensor(imgs))


def latent_mask(scene: dict) -> torch.Tensor:
    """Foreground coverage of each latent pixel (32x32), for weighting the loss."""
    ys, xs = np.mgrid[0:32, 0:32].astype(np.float32)
    d = scenes.shape_sdf(scene["shape"], scene["cx"], scene["cy"], scene["r"], scene["rot"], xs * 8 + 4, ys * 8 + 4)
    return torch.from_numpy(np.clip(0.5 - d / 8, 0, 1).astype(np.float32))[None]


def labels(scene: dict) -> list[int]:
    return [scenes.COLOURS.index(scene["colour"]), scenes.COLOURS.index(scene["bg"]), scenes.SHAPES.index(scene["shape"]),
            scenes.POSITION_NAMES.index(scene["position"]), [s[0] for s in scenes.SIZES].index(scene["size"])]


HEADS = [len(scenes.COLOURS), len(scenes.COLOURS), len(scenes.SHAPES), len(scenes.POSITION_NAMES), len(scenes.SIZES)]


@torch.no_grad()
def build_dataset(args, enc: Encoder, rng: np.random.Generator):
    canon, canon_z = [], []
    free, free_z, rough_z = [], [], []
    chunk = 64
    for i in range(0, args.n_canonical, chunk):
        batch = [scenes.canonical_scene(rng, held_out=False) for _ in range(min(chunk, args.n_canonical - i))]
        canon += batch
        canon_z.append(encode_images(enc, [scenes.render(s) for s in batch]))
    log(f"data: {len(canon)} canonical scenes encoded")
    for i in range(0, args.n_free, chunk):
        batch = [scenes.free_scene(rng, held_out=False) for _ in range(min(chunk, args.n_free - i))]
        free += batch
        free_z.append(encode_images(enc, [scenes.render(s) for s in batch]))
        rough_z.append(encode_images(enc, [scenes.render_rough(s, scenes.rough_params(s, rng))[0] for s in batch]))
    log(f"data: {len(free)} free scenes and their rough drawings encoded")
    canon_z, free_z, rough_z = torch.cat(canon_z), torch.cat(free_z), torch.cat(rough_z)
    scale = 1.0 / float(torch.cat([canon_z, free_z]).std())
    log(f"data: latent std {1 / scale:.4f} -> scaling_factor {scale:.5f}; channel means "
        f"{[round(float(v) * scale, 3) for v in canon_z.mean((0, 2, 3))]}")
    return {"canon": canon, "canon_z": canon_z * scale, "free": free, "free_z": free_z * scale,
            "rough_z": rough_z * scale, "scale": scale,
            "canon_m": torch.stack([latent_mask(sc) for sc in canon]), "free_m": torch.stack([latent_mask(sc) for sc in free])}


# ---------------------------------------------------------------------------------------------
# Stage 3: text encoder + UNet

# Timesteps the server's trailing schedules visit (1-4 steps and image-to-image starts), with weights.
T_SET = [999, 749, 666, 499, 332, 249]
T_WEIGHTS = [0.45, 0.08, 0.05, 0.2, 0.04, 0.08]  # remaining 0.10: uniform in [50, 998]


def sample_t(rng: np.random.Generator) -> int:
    u = rng.random()
    acc = 0.0
    for t, w in zip(T_SET, T_WEIGHTS):
        acc += w
        if u < acc:
            return t
    return int(rng.integers(50, 999))


def unet_batch(args, data, tok: Tokenizer, rng: np.random.Generator, n: int):
    ids, x0s, starts, ts, masks, labs, own = [], [], [], [], [], [], []
    for _ in range(n):
        t = sample_t(rng)
        from_own = False
        if t > 800 or rng.random() < args.canon_share:
            i = int(rng.integers(len(data["canon"])))
            scene, x0, mask = data["canon"][i], data["canon_z"][i], data["canon_m"][i]
            start = x0
            u = rng.random()
            if t <= 800 and u < args.own_start:
                # Noise around the model's own 1-step estimate (filled in by train_unet), as the
                # sampler's later steps see it: they learn to sharpen that estimate, not copy it.
                from_own = True
            elif t <= 800 and u < args.own_start + 0.15:  # a blurred start
                start = F.avg_pool2d(x0[None], 3, 1, 1, count_include_pad=False)[0]
        else:
            i = int(rng.integers(len(data["free"])))
            scene, x0, mask = data["free"][i], data["free_z"][i], data["free_m"][i]
            start = data["rough_z"][i] if rng.random() < 0.5 else x0
        ids.append(tok.encode(scenes.caption(scene, rng)))
        x0s.append(x0)
        starts.append(start)
        ts.append(t)
        masks.append(mask)
        labs.append(labels(scene))
        own.append(from_own)
    return (torch.tensor(ids, dtype=torch.int32), torch.stack(x0s), torch.stack(starts),
            torch.tensor(ts, dtype=torch.long), torch.stack(masks), torch.tensor(labs, dtype=torch.long),
            torch.tensor(own, dtype=torch.bool))


def train_unet(args, data, tok: Tokenizer, rng: np.random.Generator, deadline: Deadline):
    torch.manual_seed(args.seed + 3)
    te = TextEncoder(len(tok.vocab), width=args.text_width)
    core = UNetCore(text_width=args.text_width)
    # Auxiliary heads (training only): the pooled text must tell colour, background, shape, position
    # and size apart. They speed up learning the caption -> scene mapping a lot on this budget.
    heads = torch.nn.Linear(core.q.numel(), sum(HEADS))
    params = list(te.parameters()) + list(core.parameters()) + list(heads.parameters())
    log(f"unet: {sum(p.numel() for p in core.parameters())} + text encoder {sum(p.numel() for p in te.parameters())} "
        f"parameters, {args.unet_steps} steps of {args.unet_batch}")
    opt = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=0.0)
    ema_te, ema_core = EMA(te, args.ema), EMA(core, args.ema)
    gen = torch.Generator().manual_seed(args.seed + 4)
    ema_l = None
    for step in range(args.unet_steps):
        if deadline.passed():
            log(f"unet: time budget reached at step {step}")
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.unet_steps, args.unet_lr, warmup=200)
        ids, x0, start, t, mask, lab, own = unet_batch(args, data, tok, rng, args.unet_batch)
        s4 = lambda v: v[:, None, None, None]  # noqa: E731
        if own.any():
            with torch.no_grad():
                sig = SIGMAS[999].expand(int(own.sum()))
                cs, co, ci, cn = precondition(sig)
                x_top = x0[own] + s4(sig) * torch.randn(x0[own].shape, generator=gen)
                start = start.clone()
                start[own] = s4(cs) * x_top + s4(co) * core(s4(ci) * x_top, cn, te(ids[own]))
        sigma = SIGMAS[t]
        c_skip, c_out, c_in, c_noise = precondition(sigma)
        xt = start + s4(sigma) * torch.randn(x0.shape, generator=gen)
        f = core(s4(c_in) * xt, c_noise, te(ids))
        target = (x0 - s4(c_skip) * xt) / s4(c_out)
        # Foreground latents weigh more: a shape is a small part of the picture.
        weight = 1 + args.fg_weight * mask
        loss = ((f - target) ** 2 * weight).mean() / weight.mean()
        logits = heads(core.last_pooled).split(HEADS, dim=1)
        aux = sum(F.cross_entropy(lg, lab[:, k]) for k, lg in enumerate(logits)) / len(HEADS)
        loss = loss + args.aux_weight * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_te.update(te, step)
        ema_core.update(core, step)
        ema_l = loss.item() if ema_l is None else 0.98 * ema_l + 0.02 * loss.item()
        if step % 100 == 0 or step == args.unet_steps - 1:
            log(f"unet step {step}: loss {ema_l:.4f} (caption heads {aux.item():.3f})")
    return ema_te.model, ema_core.model


# ---------------------------------------------------------------------------------------------
# Stage 4: preview decoder

def train_preview(args, dec: Decoder, data, rng: np.random.Generator, deadline: Deadline):
    torch.manual_seed(args.seed + 5)
    prev = PreviewDecoder()
    opt = torch.optim.Adam(prev.parameters(), lr=args.preview_lr)
    lat = torch.cat([data["canon_z"][: args.preview_pool // 2], data["free_z"][: args.preview_pool // 4],
                     data["rough_z"][: args.preview_pool // 4]])
    with torch.no_grad():
        targets = torch.cat([(dec(lat[i:i + 32] / data["scale"]) * 0.5 + 0.5) for i in range(0, len(lat), 32)])
    log(f"preview: {sum(p.numel() for p in prev.parameters())} parameters, {len(lat)} decoded targets, "
        f"{args.preview_steps} steps")
    cl = args.preview_crop // 8
    ema_l = None
    for step in range(args.preview_steps):
        if deadline.passed():
            log(f"preview: time budget reached at step {step}")
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.preview_steps, args.preview_lr)
        idx = rng.integers(len(lat), size=args.preview_batch)
        zs, ys = [], []
        for i in idx:
            a, b = rng.integers(0, 32 - cl + 1, size=2)
            zs.append(lat[i, :, a:a + cl, b:b + cl])
            ys.append(targets[i, :, a * 8:(a + cl) * 8, b * 8:(b + cl) * 8])
        z, y = torch.stack(zs), torch.stack(ys)
        out = prev(z + torch.randn_like(z) * 0.02)
        loss = F.mse_loss(out, y) + 0.5 * (out - y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_l = loss.item() if ema_l is None else 0.98 * ema_l + 0.02 * loss.item()
        if step % 200 == 0 or step == args.preview_steps - 1:
            log(f"preview step {step}: loss {ema_l:.5f}")
    prev.eval()
    with torch.no_grad():
        z = lat[-64:]
        mse = F.mse_loss(prev(z), targets[-64:]).item()
    log(f"preview: full-image PSNR vs decoder on 64 latents: {10 * math.log10(1 / mse):.2f} dB")
    return prev


# ---------------------------------------------------------------------------------------------
# Stage 5: export

def export(args, tok: Tokenizer, enc, dec, prev, te, core, scale: float) -> None:
    out = args.out
    for sub in ["text_encoder", "unet", "vae_decoder", "vae_encoder", "preview_decoder", "scheduler", "tokenizer"]:
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    kw = dict(opset_version=17, do_constant_folding=True)

    with torch.no_grad():
        ids = torch.tensor([tok.encode("a red circle on a blue background")] * 2, dtype=torch.int32)
        torch.onnx.export(TextEncoderExport(te).eval(), (ids,), os.path.join(out, "text_encoder/model.onnx"),
                          input_names=["input_ids"], output_names=["last_hidden_state", "pooler_output"],
                          dynamic_axes={"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"},
                                        "pooler_output": {0: "batch"}}, **kw)
        core.always_resize = True
        unet = UNetExport(core).eval()
        sample = torch.randn(2, 4, 32, 32)
        torch.onnx.export(unet, (sample, torch.tensor([999, 499]), te(ids)), os.path.join(out, "unet/model.onnx"),
                          input_names=["sample", "timestep", "encoder_hidden_states"], output_names=["out_sample"],
                          dynamic_axes={"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
                                        "encoder_hidden_states": {0: "batch"},
                                        "out_sample": {0: "batch", 2: "height", 3: "width"}}, **kw)
        core.always_resize = False
        img_axes = {0: "batch", 2: "image_height", 3: "image_width"}
        lat_axes = {0: "batch", 2: "height", 3: "width"}
        torch.onnx.export(dec.eval(), (torch.randn(1, 4, 32, 32),), os.path.join(out, "vae_decoder/model.onnx"),
                          input_names=["latent_sample"], output_names=["sample"],
                          dynamic_axes={"latent_sample": lat_axes, "sample": img_axes}, **kw)
        torch.onnx.export(enc.eval(), (torch.rand(1, 3, 256, 256) * 2 - 1,), os.path.join(out, "vae_encoder/model.onnx"),
                          input_names=["sample"], output_names=["latent_sample"],
                          dynamic_axes={"sample": img_axes, "latent_sample": lat_axes}, **kw)
        torch.onnx.export(prev.eval(), (torch.randn(1, 4, 32, 32),), os.path.join(out, "preview_decoder/model.onnx"),
                          input_names=["latent_sample"], output_names=["sample"],
                          dynamic_axes={"latent_sample": lat_axes, "sample": img_axes}, **kw)

    def write_json(path: str, value) -> None:
        with open(os.path.join(out, path), "w") as f:
            f.write(json.dumps(value, indent=2) + "\n")

    write_json("model_index.json", {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0", "_name_or_path": "shapes-sd",
        "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "requires_safety_checker": False,
    })
    write_json("scheduler/scheduler_config.json", {
        "_class_name": "EulerAncestralDiscreteScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
        "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "epsilon",
        "timestep_spacing": "trailing", "steps_offset": 1,
    })
    write_json("text_encoder/config.json", {
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_size": args.text_width,
        "num_hidden_layers": len(te.blocks), "max_position_embeddings": 77, "vocab_size": len(tok.vocab),
        "bos_token_id": tok.bos, "eos_token_id": tok.eos, "pad_token_id": 0,
    })
    # Three UNet levels (32 -> 16 -> 8 latent pixels): sizes are multiples of 8 x 2^2 = 32 pixels.
    write_json("unet/config.json", {
        "_class_name": "UNet2DConditionModel", "sample_size": 32, "in_channels": 4, "out_channels": 4,
        "block_out_channels": [16, 64, 128], "cross_attention_dim": args.text_width, "time_cond_proj_dim": None,
        "prediction_type": "epsilon",
    })
    vae = {"_class_name": "AutoencoderKL", "latent_channels": 4, "scaling_factor": round(scale, 6),
           "block_out_channels": [32, 32, 64, 96], "sample_size": 256}
    write_json("vae_decoder/config.json", vae)
    write_json("vae_encoder/config.json", vae)
    write_json("preview_decoder/config.json", {"_class_name": "AutoencoderTiny", "latent_channels": 4, "scaling_factor": 1.0})
    tok.write(os.path.join(out, "tokenizer"))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    log(f"export: wrote {out} ({total / 1e6:.2f} MB)")


# ---------------------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="models/default", help="model folder to write")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=110.0,
                   help="safety net: stages stop early (with a log line) past their share of this")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every step count (e.g. 0.02 for a smoke test)")
    p.add_argument("--ae-steps", type=int, default=4000)
    p.add_argument("--ae-batch", type=int, default=16)
    p.add_argument("--ae-crop", type=int, default=96)
    p.add_argument("--ae-lr", type=float, default=2e-3)
    p.add_argument("--n-canonical", type=int, default=8000)
    p.add_argument("--n-free", type=int, default=3500)
    p.add_argument("--text-width", type=int, default=64)
    p.add_argument("--unet-steps", type=int, default=5000)
    p.add_argument("--unet-batch", type=int, default=32)
    p.add_argument("--unet-lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--canon-share", type=float, default=0.6,
                   help="share of caption-determined scenes at t <= 800 (the rest: free scenes and drawings)")
    p.add_argument("--own-start", type=float, default=0.5,
                   help="share of those that start from the model's own 1-step estimate")
    p.add_argument("--fg-weight", type=float, default=4.0)
    p.add_argument("--aux-weight", type=float, default=0.3)
    p.add_argument("--preview-steps", type=int, default=1500)
    p.add_argument("--preview-batch", type=int, default=16)
    p.add_argument("--preview-crop", type=int, default=96)
    p.add_argument("--preview-lr", type=float, default=2e-3)
    p.add_argument("--preview-pool", type=int, default=1024)
    p.add_argument("--save-stages", default="", help="folder to keep stage checkpoints in (optional)")
    p.add_argument("--resume-autoencoder", default="", help="autoencoder.pt or weights.pt of an earlier run: skip stage 1 (the later stages are unchanged)")
    args = p.parse_args()
    for k in ["ae_steps", "n_canonical", "n_free", "unet_steps", "preview_steps", "preview_pool"]:
        setattr(args, k, max(2, int(getattr(args, k) * args.scale)))

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    # One generator per stage, so that loading stage 1 (--resume-autoencoder) leaves the data and
    # every later stage exactly as a full run draws them.
    rng = np.random.default_rng(args.seed)
    rng_data, rng_preview = np.random.default_rng(args.seed + 1), np.random.default_rng(args.seed + 2)
    tok = Tokenizer()
    start = time.time()
    log(f"training into {args.out}: {vars(args)}")

    if args.resume_autoencoder:
        w = torch.load(args.resume_autoencoder)
        enc, dec = Encoder(), Decoder()
        enc.load_state_dict(w["enc"])
        dec.load_state_dict(w["dec"])
        enc.eval(), dec.eval()
        log(f"autoencoder: loaded from {args.resume_autoencoder}")
    else:
        enc, dec = train_autoencoder(args, rng, Deadline(args.max_minutes, 0.2, start))
    if args.save_stages:
        os.makedirs(args.save_stages, exist_ok=True)
        torch.save({"enc": enc.state_dict(), "dec": dec.state_dict()}, os.path.join(args.save_stages, "autoencoder.pt"))
    data = build_dataset(args, enc, rng_data)
    te, core = train_unet(args, data, tok, rng_data, Deadline(args.max_minutes, 0.90, start))
    if args.save_stages:
        torch.save({"te": te.state_dict(), "core": core.state_dict(), "scale": data["scale"]},
                   os.path.join(args.save_stages, "unet.pt"))
    prev = train_preview(args, dec, data, rng_preview, Deadline(args.max_minutes, 0.98, start))
    if args.save_stages:
        os.makedirs(args.save_stages, exist_ok=True)
        torch.save({"enc": enc.state_dict(), "dec": dec.state_dict(), "prev": prev.state_dict(), "te": te.state_dict(),
                    "core": core.state_dict(), "scale": data["scale"]}, os.path.join(args.save_stages, "weights.pt"))
    export(args, tok, enc, dec, prev, te, core, data["scale"])
    log("done")


if __name__ == "__main__":
    main()
