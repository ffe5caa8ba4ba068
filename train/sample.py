"""The PyTorch reference sampler for the demo model: diffusers' DDIM text-to-image, with
classifier-free guidance and an optional ControlNet, step for step as
StableDiffusion(ControlNet)Pipeline runs it (eta 0, "leading" timesteps, steps_offset 1,
set_alpha_to_one false, initial noise torch.randn from a CPU generator seeded with `seed`,
CFG batch [uncond, cond], decoder input latents / scaling_factor, image
round(255 * clamp(x / 2 + 0.5, 0, 1))). The parity test compares it with `sdserve generate
--sampler ddim`. Usage: python3 sample.py --model models/demo --prompt "..." -o out.png
"""
import argparse

import numpy as np
import torch


def alphas_cumprod(n=1000, start=0.00085, end=0.012):
    """SD's scaled-linear schedule, float32 as diffusers computes it."""
    betas = torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_timesteps(steps, n=1000, offset=1):
    return (np.arange(0, steps) * (n // steps)).round()[::-1].astype(np.int64) + offset


def encode_text(text_model, tok, prompts):
    ids = torch.tensor([tok.sd_ids(p) for p in prompts], dtype=torch.int64)
    return text_model(ids)


def to_uint8(img):
    """(1, 3, H, W) decoder output in [-1, 1] -> (H, W, 3) uint8, numpy round (ties to even)."""
    x = (img[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float32)
    return np.round(x * np.float32(255)).astype(np.uint8)


@torch.no_grad()
def generate(parts, prompt, negative="", seed=0, steps=20, cfg=7.5, width=128, height=128,
             control=None, control_scale=1.0, return_latents=False):
    """parts: dict(tok, text, unet, vae, controlnet) as export.load_export returns.
    control: (H, W, 3) uint8 control image (e.g. Canny edges stacked) or None."""
    ac = alphas_cumprod()
    g = torch.Generator().manual_seed(seed)
    lat = torch.randn((1, 4, height // 8, width // 8), generator=g)
    use_cfg = cfg > 1.0
    ctx = encode_text(parts["text"], parts["tok"], [negative, prompt] if use_cfg else [prompt])
    b = ctx.shape[0]
    cond = None
    if control is not None:
        cond = torch.from_numpy(control.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        cond = cond.repeat(b, 1, 1, 1)
    ts = ddim_timesteps(steps)
    ratio = 1000 // steps
    for t in ts:
        x = torch.cat([lat] * b)
        tt = torch.tensor([float(t)])
        down = mid = None
        if cond is not None:
            down, mid = parts["controlnet"](x, tt, ctx, cond, control_scale)
        eps = parts["unet"](x, tt, ctx, down, mid)
        if use_cfg:
            eu, ec = eps.chunk(2)
            eps = eu + cfg * (ec - eu)
        a_t = ac[t]
        a_prev = ac[t - ratio] if t - ratio >= 0 else ac[0]
        x0 = (lat - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
        lat = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps
    img = parts["vae"].decode(lat / parts["vae"].config["scaling_factor"])
    return (to_uint8(img), lat) if return_latents else to_uint8(img)


def main():
    import export
    from PIL import Image
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--negative-prompt", default="")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg-scale", type=float, default=7.5)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--control-image")
    ap.add_argument("--control-scale", type=float, default=1.0)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    parts = export.load_export(a.model)
    ctl = np.array(Image.open(a.control_image).convert("RGB")) if a.control_image else None
    img = generate(parts, a.prompt, a.negative_prompt, a.seed, a.steps, a.cfg_scale, a.size,
                   a.size, ctl, a.control_scale)
    Image.fromarray(img).save(a.output)


if __name__ == "__main__":
    main()
