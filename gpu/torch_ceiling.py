#!/usr/bin/env python3
"""PyTorch timing of the stand-in's UNet and decoders on the GPU: the ceiling our ONNX Runtime numbers
are compared with (same architecture and size, same random-weight stand-in, fp16, cuDNN autotuning,
PyTorch's fused scaled-dot-product attention where the torch has it).

  python3 gpu/torch_ceiling.py --out results/torch.json [--batches 1,4,8] [--size 512] [--iters 20]

Times are CUDA-event times of the model call alone (inputs already on the GPU), medians over
--iters after --warmup runs. --device cpu exists for smoke tests on machines without a GPU (fp32).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.dont_write_bytecode = True  # no __pycache__ beside the sources (repository, read-only bundles)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin"))
from decoders import TaesdDecoder, VaeDecoder  # noqa: E402
from unet import StandinUNet, count_parameters, scaled_config  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--batches", default="1,4,8")
    p.add_argument("--size", type=int, default=512, help="image size in pixels (latents are size/8)")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--scale", type=int, default=1, help="1 = SD-Turbo size; more only for smoke tests")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args()


def timer(device):
    """Milliseconds of fn(): CUDA events on a GPU (kernels are asynchronous), wall clock on a CPU."""
    if device.type == "cuda":
        def run(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end)
    else:
        def run(fn):
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1000
    return run


def measure(fn, iters, warmup, run):
    for _ in range(warmup):
        run(fn)
    times = sorted(run(fn) for _ in range(iters))
    return {"medianMs": round(statistics.median(times), 3), "p90Ms": round(times[min(len(times) - 1, int(len(times) * 0.9))], 3), "minMs": round(times[0], 3), "iters": iters}


def main():
    a = parse_args()
    device = torch.device(a.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the ceiling: let cuDNN pick the fastest kernels per shape
    torch.manual_seed(0)
    cfg = scaled_config(a.scale)
    unet = StandinUNet(cfg).to(device, dtype).eval()
    vae = VaeDecoder([c // a.scale for c in (128, 256, 512, 512)], cfg["norm_num_groups"]).to(device, dtype).eval()
    taesd = TaesdDecoder(64 // a.scale).to(device, dtype).eval()
    run = timer(device)
    lat = a.size // 8
    results = {
        "kind": "torch-ceiling",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "dtype": str(dtype).replace("torch.", ""),
        "sdpa": hasattr(torch.nn.functional, "scaled_dot_product_attention"),
        "scale": a.scale,
        "size": a.size,
        "parameters": {"unet": count_parameters(unet), "vae_decoder": count_parameters(vae), "preview_decoder": count_parameters(taesd)},
        "unet": {},
        "vaeDecode": {},
        "previewDecode": {},
    }
    with torch.inference_mode():
        for batch in [int(b) for b in a.batches.split(",")]:
            sample = torch.randn(batch, 4, lat, lat, device=device, dtype=dtype)
            t = torch.full((batch,), 999, device=device, dtype=torch.int64)
            ctx = torch.randn(batch, 77, cfg["cross_attention_dim"], device=device, dtype=dtype)
            results["unet"][str(batch)] = measure(lambda: unet(sample, t, ctx), a.iters, a.warmup, run)
            results["vaeDecode"][str(batch)] = measure(lambda: vae(sample), a.iters, a.warmup, run)
            results["previewDecode"][str(batch)] = measure(lambda: taesd(sample), a.iters, a.warmup, run)
            print(f"batch {batch}: unet {results['unet'][str(batch)]['medianMs']} ms, vae decode {results['vaeDecode'][str(batch)]['medianMs']} ms, "
                  f"taesd {results['previewDecode'][str(batch)]['medianMs']} ms", flush=True)
    if device.type == "cuda":
        results["maxMemoryGiB"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
