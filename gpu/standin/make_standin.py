#!/usr/bin/env python3
"""Writes the SD-Turbo benchmark stand-in: a model folder in the diffusers/optimum ONNX layout the
server loads, with SD-Turbo's UNet architecture and size (~865.9M parameters), decoders of the SD
VAE decoder's and TAESD's sizes, and RANDOM weights. It exists so GPU timings reflect the real
model's compute without downloading weights; it never draws anything and is named a stand-in
everywhere (folder, model_index.json, the name the server reports). Never commit its output.

  /usr/bin/python3 gpu/standin/make_standin.py --out DIR [--fp16] [--scale 8 --sample-size 32]

--scale divides every width (same graph, fewer channels) so tests can serve it on a CPU.
Full size: ~3.5 GB of fp32 weights (~1.7 GB fp16) in unet/model.onnx_data; a GPU host's job.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings

import torch

sys.dont_write_bytecode = True  # no __pycache__ beside the sources (repository, read-only bundles)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decoders import SD_VAE_DECODER_PARAMETERS, TAESD_DECODER_PARAMETERS, TaesdDecoder, TextEncoder, VaeDecoder  # noqa: E402
from unet import SD21_UNET_PARAMETERS, StandinUNet, count_parameters, scaled_config  # noqa: E402

NAME = "sd-turbo-standin (random weights, benchmark only)"
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SEQ = 77


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="model folder to write (replaced if it is a stand-in)")
    p.add_argument("--scale", type=int, default=1, help="divide every width by this (1, 2, 4, 8, 16); 1 = SD-Turbo size")
    p.add_argument("--sample-size", type=int, default=64, help="latent size in unet/config.json: 64 = 512x512 images")
    p.add_argument("--fp16", action="store_true", help="float16 weights and I/O (what a GPU serves)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--tokenizer", default=os.path.join(REPO, "models", "default", "tokenizer"))
    p.add_argument("--count-only", action="store_true", help="print and check parameter counts on the meta device; write nothing")
    return p.parse_args()


def export(module, args, path, input_names, output_names, dynamic_axes, opset, fp16, external):
    """torch -> ONNX in float32 (works on every torch), then fp16 on the graph, then one file or
    model.onnx + model.onnx_data. TorchScript exporter first: torch >= 2.9 defaults to dynamo."""
    import inspect

    import onnx

    from fp16 import convert_to_float16

    tmp = tempfile.mkdtemp(prefix="standin-export-")
    try:
        raw = os.path.join(tmp, "model.onnx")
        kwargs = dict(input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True)
        if "dynamo" in inspect.signature(torch.onnx.export).parameters:
            kwargs["dynamo"] = False
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and shape-inference chatter, not actionable here
            try:
                torch.onnx.export(module, args, raw, **kwargs)
            except Exception as err:  # a torch without the TorchScript exporter: try dynamo (needs onnxscript)
                if kwargs.get("dynamo") is not False:
                    raise
                print(f"TorchScript export failed ({err}); retrying with dynamo=True", file=sys.stderr)
                kwargs["dynamo"] = True
                torch.onnx.export(module, args, raw, **kwargs)
        model = onnx.load(raw)  # pulls in external data the exporter wrote for > 2 GB
        if fp16:
            model = convert_to_float16(model)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if external:
            onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx_data", size_threshold=1024)
        else:
            onnx.save_model(model, path)
        onnx.checker.check_model(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_count(label, got, expected, scale):
    print(f"{label}: {got:,} parameters" + (f" (SD-Turbo: {expected:,})" if scale == 1 else f" (scale 1/{scale})"))
    if scale == 1 and got != expected:
        sys.exit(f"{label}: {got:,} parameters, expected {expected:,}: the architecture does not match SD-Turbo's")


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def count_only(scale):
    """Exact parameter counts without allocating weights (safe on small machines, full size too)."""
    from meta import meta_layers

    cfg = scaled_config(scale)
    with meta_layers():
        unet = StandinUNet(cfg)
        vae = VaeDecoder([c // scale for c in (128, 256, 512, 512)], cfg["norm_num_groups"])
        taesd = TaesdDecoder(64 // scale)
    check_count("unet", count_parameters(unet), SD21_UNET_PARAMETERS, scale)
    check_count("vae_decoder", count_parameters(vae), SD_VAE_DECODER_PARAMETERS, scale)
    check_count("preview_decoder", count_parameters(taesd), TAESD_DECODER_PARAMETERS, scale)


def main():
    a = parse_args()
    if a.count_only:
        return count_only(a.scale)
    if not a.out:
        sys.exit("--out DIR is required")
    torch.manual_seed(a.seed)
    out = os.path.abspath(a.out)
    if os.path.exists(out):
        marker = os.path.join(out, "standin.json")
        if not os.path.exists(marker):
            sys.exit(f"{out} exists and is not a stand-in folder: refusing to overwrite it")
        shutil.rmtree(out)
    cfg = scaled_config(a.scale)
    s, ctx, groups = a.sample_size, cfg["cross_attention_dim"], cfg["norm_num_groups"]
    vae_channels = [c // a.scale for c in (128, 256, 512, 512)]

    with open(os.path.join(a.tokenizer, "vocab.json")) as f:
        vocab = max(json.load(f).values()) + 1
    models = {
        "unet": StandinUNet(cfg).eval(),
        "vae_decoder": VaeDecoder(vae_channels, groups).eval(),
        "preview_decoder": TaesdDecoder(64 // a.scale).eval(),
        "text_encoder": TextEncoder(vocab, ctx).eval(),
    }
    counts = {name: count_parameters(m) for name, m in models.items()}
    check_count("unet", counts["unet"], SD21_UNET_PARAMETERS, a.scale)
    check_count("vae_decoder", counts["vae_decoder"], SD_VAE_DECODER_PARAMETERS, a.scale)
    check_count("preview_decoder", counts["preview_decoder"], TAESD_DECODER_PARAMETERS, a.scale)

    latents = torch.randn(1, 4, s, s)
    batch_hw = {0: "batch", 2: "height", 3: "width"}
    export(models["unet"], (latents, torch.tensor([999], dtype=torch.int64), torch.randn(1, SEQ, ctx)), os.path.join(out, "unet", "model.onnx"),
           ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
           {"sample": batch_hw, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch"}, "out_sample": batch_hw}, a.opset, a.fp16, True)
    for name in ("vae_decoder", "preview_decoder"):
        export(models[name], (latents,), os.path.join(out, name, "model.onnx"), ["latent_sample"], ["sample"],
               {"latent_sample": batch_hw, "sample": batch_hw}, a.opset, a.fp16, False)
    export(models["text_encoder"], (torch.zeros(1, SEQ, dtype=torch.int64),), os.path.join(out, "text_encoder", "model.onnx"),
           ["input_ids"], ["last_hidden_state"], {"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}}, a.opset, a.fp16, False)

    shutil.copytree(a.tokenizer, os.path.join(out, "tokenizer"))
    write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0", "_name_or_path": NAME,
        "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "requires_safety_checker": False,
    })
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), {
        "_class_name": "EulerAncestralDiscreteScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "timestep_spacing": "trailing", "steps_offset": 1,
    })
    write_json(os.path.join(out, "unet", "config.json"), {
        "_class_name": "UNet2DConditionModel", "sample_size": s, "in_channels": 4, "out_channels": 4,
        "block_out_channels": cfg["block_out_channels"], "layers_per_block": 2, "attention_head_dim": cfg["attention_head_dim"],
        "cross_attention_dim": ctx, "norm_num_groups": groups, "use_linear_projection": True,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    })
    write_json(os.path.join(out, "vae_decoder", "config.json"), {
        "_class_name": "AutoencoderKL", "latent_channels": 4, "scaling_factor": 0.18215, "block_out_channels": vae_channels,
        "layers_per_block": 2, "norm_num_groups": groups, "sample_size": s * 8,
    })
    write_json(os.path.join(out, "preview_decoder", "config.json"), {"_class_name": "AutoencoderTiny", "latent_channels": 4, "scaling_factor": 1})
    write_json(os.path.join(out, "text_encoder", "config.json"), {
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_size": ctx, "max_position_embeddings": SEQ,
        "vocab_size": vocab, "_standin_note": "shape-compatible stand-in, not CLIP's size",
    })
    write_json(os.path.join(out, "standin.json"), {
        "name": NAME, "standin": True, "randomWeights": True, "scale": a.scale, "sampleSize": s, "dtype": "float16" if a.fp16 else "float32",
        "parameters": counts, "seed": a.seed, "opset": a.opset, "torch": torch.__version__,
    })
    print(f"wrote {out} ({'full size' if a.scale == 1 else f'scale 1/{a.scale}'}, {'float16' if a.fp16 else 'float32'}, {s * 8}x{s * 8})")


if __name__ == "__main__":
    main()
