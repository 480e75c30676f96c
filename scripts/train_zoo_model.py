"""Train a small model of the validation zoo (seeded, reproducible): other families, other data.

    nice -n 10 .venv/bin/python scripts/train_zoo_model.py --model hunyuan --max-minutes 12
    nice -n 10 .venv/bin/python scripts/train_zoo_model.py --model cosmos --max-minutes 12

The zoo models are what the schedule rule is *not* tuned on (issue 13): tiny instances of real
ComfyUI model classes of families other than the demo's Wan, trained on the 8 motion classes of
``benchmarks/zoo_scenes.py`` (not the demo's 4). Written to ``models/zoo/``:

* ``adacache_zoo_<model>.safetensors``: the EMA weights in fp16, keys exactly as ComfyUI's model
  classes name them, so ``comfy.sd.load_diffusion_model`` / "Load Diffusion Model" detects them
  (``comfy/model_detection.py``) as the right model type;
* ``adacache_zoo_<model>_scenes.safetensors``: one fixed random conditioning embedding per class
  (``[classes, 8, context_dim]``, seed 4321; HunyuanVideo also a pooled ``[classes, 768]``) and
  the all-zero negative.

Models (what detection infers from the weights is fixed; the rest is ours):

=========  ==================================================================================
hunyuan    ``comfy.ldm.hunyuan_video.model.HunyuanVideo`` (model type HunyuanVideo, flow
           matching, shift 7): hidden 128 = 1 head of 128 (detection: hidden // 128 heads,
           rope axes 16/56/56), 2 double-stream + 2 single-stream blocks, patch (1, 2, 2),
           16 latent channels, text 4096 (llama-sized), pooled vector 768 (CLIP-L-sized; without
           it detection says HunyuanImage 2.1), no guidance embed.
cosmos     ``comfy.ldm.cosmos.predict2.MiniTrainDIT`` (model type CosmosPredict2 t2v, the pack
           runs it whole-model): 192 channels. Detection fixes 10 blocks, 16 heads, cross-attn
           from 1024 (T5), AdaLN-LoRA 256 for any width but 2048/5120; 192 is the narrowest
           width whose 3-D rope works (head dim 12: 4 + 4 + 4).
=========  ==================================================================================

Objectives (what ComfyUI's sampler integrates for that model type, ``comfy/model_sampling.py``):

* hunyuan, ``ModelSamplingDiscreteFlow`` + ``CONST``: ``x_t = (1 - s) x0 + s n``, target
  ``n - x0``, timestep fed to the model ``1000 s``; ``s`` half from the shifted distribution the
  "simple" scheduler walks (``shift u / (1 + (shift - 1) u)``), half uniform.
* cosmos, ``ModelSamplingCosmosRFlow`` + ``COSMOS_RFLOW`` (EDM sigmas 0.002..80): the model sees
  ``x (1 - t)`` with ``x = x0 + sigma n`` and ``t = sigma / (sigma + 1)``, i.e.
  ``(1 - t) x0 + t n``, its timestep is ``t``, and ComfyUI denoises with
  ``x (1 - t) - out t``, so the target is again ``n - x0``; ``sigma`` half log-uniform over
  [sigma_min, sigma_max] (what "simple"/"karras" walk), half uniform in ``t``.

Both: 10 % of samples get the all-zero embedding (classifier-free guidance), AdamW, warm-up then
cosine learning rate over ``max(step / steps, elapsed / max_minutes)``, gradient clipping, an
EMA of the weights (decay 0.995 for hunyuan, 0.98 for cosmos, which reaches far fewer steps;
saved every ``--save-every`` seconds and at the end). Everything is seeded.
ComfyUI's flux-style blocks (HunyuanVideo) add in place; for them autograd gets copies of the
tensors it saves (``saved_tensors_hooks``; values unchanged), the model code is untouched.

The training loop, the flow-matching batch, host boot and fp16 save are the demo's
(``scripts/train_demo_model.py``: ``train_loop``, ``flow_batch``), imported from it. A 2-step
run of the demo and of each zoo model gave bit-identical weights before and after they were
shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import types
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
ZOO_DIR = ROOT / "models" / "zoo"
EMB_SEED = 4321
TEXT_LEN = 8
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchkit import load_module  # noqa: E402

demo_train = load_module("adacache_train_demo_model", ROOT / "scripts" / "train_demo_model.py")
scenes = load_module("adacache_zoo_scenes", ROOT / "benchmarks" / "zoo_scenes.py")

# what model detection reads back from these weights (tests/test_zoo.py checks it)
MODELS = {
    "hunyuan": {
        "class": "HunyuanVideo", "model_type": "HunyuanVideo", "objective": "flow",
        "context_dim": 4096, "pooled_dim": 768,
        "config": {"in_channels": 16, "out_channels": 16, "vec_in_dim": 768,
                   "context_in_dim": 4096, "hidden_size": 128, "mlp_ratio": 4.0,
                   "num_heads": 1, "depth": 2, "depth_single_blocks": 2,
                   "axes_dim": [16, 56, 56], "theta": 256, "patch_size": [1, 2, 2],
                   "qkv_bias": True, "guidance_embed": False, "byt5": False,
                   "meanflow": False, "use_cond_type_embedding": False,
                   "vision_in_dim": None},
        "lr": 1.5e-3, "batch": 16, "ema": 0.995, "inplace_blocks": True,
    },
    "cosmos": {
        "class": "MiniTrainDIT", "model_type": "CosmosPredict2", "objective": "cosmos_rflow",
        "context_dim": 1024,
        "config": {"max_img_h": 240, "max_img_w": 240, "max_frames": 128, "in_channels": 16,
                   "out_channels": 16, "patch_spatial": 2, "patch_temporal": 1,
                   "concat_padding_mask": True, "model_channels": 192, "num_blocks": 10,
                   "num_heads": 16, "crossattn_emb_channels": 1024, "pos_emb_cls": "rope3d",
                   "pos_emb_learnable": True, "pos_emb_interpolation": "crop", "min_fps": 1,
                   "max_fps": 30, "use_adaln_lora": True, "adaln_lora_dim": 256,
                   "extra_per_block_abs_pos_emb": False, "rope_h_extrapolation_ratio": 4.0,
                   "rope_w_extrapolation_ratio": 4.0, "rope_t_extrapolation_ratio": 1.0,
                   "rope_enable_fps_modulation": False},
        # a few hundred steps in 12 CPU minutes: a 0.995 EMA (a 200-step window) still held
        # mostly early weights after 221 steps (samples were class-coloured noise)
        "lr": 1e-3, "batch": 8, "ema": 0.98,
    },
}


def model_path(name: str) -> Path:
    return ZOO_DIR / f"adacache_zoo_{name}.safetensors"


def scene_embeddings(n: int, dim: int, pooled_dim: int | None):
    """(embeddings [n, 8, dim], pooled [n, pooled_dim] or None), fixed by EMB_SEED."""
    g = torch.Generator().manual_seed(EMB_SEED)
    emb = torch.randn(n, TEXT_LEN, dim, generator=g)
    pooled = torch.randn(n, pooled_dim, generator=g) if pooled_dim else None
    return emb, pooled


def save_scenes(path: Path, emb: torch.Tensor, pooled: torch.Tensor | None):
    from safetensors.torch import save_file

    tensors = {"embeddings": emb.contiguous(), "negative": torch.zeros_like(emb[0])}
    if pooled is not None:
        tensors.update(pooled=pooled.contiguous(), negative_pooled=torch.zeros_like(pooled[0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path),
              metadata={"scenes": json.dumps(scenes.SCENES), "seed": str(EMB_SEED)})


def build_model(name: str, device):
    spec = MODELS[name]
    ops = types.SimpleNamespace(Linear=nn.Linear, Conv3d=nn.Conv3d, Conv2d=nn.Conv2d,
                                LayerNorm=nn.LayerNorm, RMSNorm=nn.RMSNorm)
    if name == "hunyuan":
        import comfy.ldm.hunyuan_video.model as module

        model = module.HunyuanVideo(device=device, dtype=torch.float32, operations=ops,
                                    **spec["config"])
        zero = ("final_layer.linear", "final_layer.adaLN_modulation.1")
    else:
        import comfy.ldm.cosmos.predict2 as module

        model = module.MiniTrainDIT(device=device, dtype=torch.float32, operations=ops,
                                    **spec["config"])
        zero = ("final_layer.linear",)
    for param_name, p in model.named_parameters():
        if param_name.endswith("norm.scale"):  # flux RMSNorm: torch.empty, loaded in ComfyUI
            nn.init.ones_(p)
    for module_name, m in model.named_modules():
        if module_name in zero:
            nn.init.zeros_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def saved_copies(enabled: bool):
    """Autograd keeps copies of the tensors it saves (for blocks that add in place)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autograd.graph.saved_tensors_hooks(torch.Tensor.clone, lambda t: t)


def sampling_settings(name: str) -> dict:
    import comfy.supported_models as sm

    cls = sm.HunyuanVideo if name == "hunyuan" else sm.CosmosT2IPredict2
    return dict(cls.sampling_settings)


def noisy_batch(name: str, x0, gen, settings):
    """(model input, timestep fed to the model, target) for ComfyUI's sampling of this type."""
    if MODELS[name]["objective"] == "flow":
        return demo_train.flow_batch(x0, gen, settings["shift"])
    b, dev = x0.shape[0], x0.device
    noise = torch.randn(x0.shape, generator=gen, device=dev)
    u = torch.rand(b, generator=gen, device=dev)
    half = torch.arange(b, device=dev) % 2 == 1
    lo, hi = math.log(settings["sigma_min"]), math.log(settings["sigma_max"])
    sigma = torch.exp(lo + (hi - lo) * u)
    t_lo, t_hi = (math.exp(lo) / (1 + math.exp(lo)), math.exp(hi) / (1 + math.exp(hi)))
    s = torch.where(half, t_lo + (t_hi - t_lo) * u, sigma / (sigma + 1))
    sv = s.view(-1, 1, 1, 1, 1)
    return (1 - sv) * x0 + sv * noise, s, noise - x0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=None, help="default: per model")
    ap.add_argument("--lr", type=float, default=None, help="default: per model")
    ap.add_argument("--max-minutes", type=float, default=12.0)
    ap.add_argument("--save-every", type=float, default=120.0, help="seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ema", type=float, default=None, help="EMA decay (default: per model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--comfyui", type=Path, default=demo_train.DEFAULT_COMFY)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--init", type=Path, default=None,
                    help="continue from saved weights (e.g. the shipped file, for a longer run)")
    args = ap.parse_args()
    spec = MODELS[args.model]
    batch_size = args.batch or spec["batch"]
    lr_max = args.lr or spec["lr"]
    ema_decay = args.ema or spec["ema"]
    out = args.out or model_path(args.model)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    demo_train.import_wan(args.comfyui, cpu=not cuda)  # boots the host's comfy package
    model = build_model(args.model, device)
    if args.init is not None:
        from safetensors.torch import load_file

        model.load_state_dict({k: v.float() for k, v in load_file(str(args.init)).items()})
    settings = sampling_settings(args.model)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {args.model} ({spec['class']}): {n_params / 1e6:.2f} M params, device "
          f"{device}, batch {batch_size}, lr {lr_max:g}, ema {ema_decay:g}, sampling {settings}",
          flush=True)

    emb, pooled = scene_embeddings(len(scenes.SCENES), spec["context_dim"],
                                   spec.get("pooled_dim"))
    save_scenes(out.with_name(f"{out.stem}_scenes.safetensors"), emb, pooled)
    emb_dev = emb.to(device)
    pooled_dev = pooled.to(device) if pooled is not None else None

    def batch(gen):
        cls = torch.randint(0, len(scenes.SCENES), (batch_size,), generator=gen, device=device)
        x0 = scenes.rgb_to_latent(scenes.render_scenes(cls, gen))
        xt, timestep, target = noisy_batch(args.model, x0, gen, settings)
        ctx = emb_dev[cls]
        drop = torch.rand(batch_size, generator=gen, device=device) < 0.1
        ctx = torch.where(drop[:, None, None], torch.zeros_like(ctx), ctx)
        extra = {}
        if pooled_dev is not None:  # HunyuanVideo's vector_in (ComfyUI passes it as y)
            y = pooled_dev[cls]
            extra["y"] = torch.where(drop[:, None], torch.zeros_like(y), y)
        return (xt, timestep, ctx), extra, target

    meta = {"config": json.dumps(spec["config"]), "class": spec["class"],
            "scenes": json.dumps(scenes.SCENES), "sampling": json.dumps(settings),
            "seed": args.seed, "objective": spec["objective"]}
    demo_train.train_loop(
        model, batch, device=device, seed=args.seed, steps=args.steps, lr_max=lr_max,
        ema_decay=ema_decay, max_minutes=args.max_minutes, save_every=args.save_every, out=out,
        meta=meta, context=lambda: saved_copies(spec.get("inplace_blocks", False)),
    )

if __name__ == "__main__":
    main()
