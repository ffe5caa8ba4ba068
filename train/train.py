"""Train the bundled demo model, stage by stage, and export it in diffusers layout.

Stages, in order (each resumable from <ckpt>/<stage>.pt, each with its own time budget):
  ae          the autoencoder: VQ-GAN (codebook + commitment + L1/L2 reconstruction + hinge
              patch-discriminator loss with the adaptive weight of Esser et al.), or KL (--ae kl);
              then the latent scaling factor 1/std(latents), as SD's 0.18215 was chosen.
  dec         the decoder fine-tuned on its own (encoder, codebook: the latent space, kept).
  clip        the text encoder pre-trained as CLIP is: a symmetric contrastive loss between its
              pooled (end-of-text) output and a small image encoder's embedding of the cached
              latents, with a learned temperature. Shape words barely change the pixels, so a
              text encoder trained only through the UNet learns colours and backgrounds and
              leaves "circle" next to "square" (measured); this gives every word its own
              direction before the UNet starts. Each batch also holds every caption with one
              shape word swapped, as negatives: the "circle" vs "square" difference is a
              few corner pixels, which random negatives almost never test.
  unet        the CLIP-style text encoder trained jointly with the UNet (epsilon prediction,
              SD's scaled-linear schedule, 10% caption dropout for classifier-free guidance),
              on latents of the data set cached once; EMA weights are exported.
  controlnet  ControlNetModel.from_unet (zero convolutions) on Canny maps, UNet and text
              encoder frozen, 50% caption dropout (ControlNet paper); edge F1 vs step is
              logged and plotted to <ckpt>/controlnet_curve.png.
Everything is a function of --seed (data indices, noise and timesteps are drawn per step from
seeded generators, so a resumed run continues the same sequence). Logs: <ckpt>/log.jsonl.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time


# One OpenBLAS thread, set before numpy/torch load it: torch runs batched products (attention's
# bmm) on its own --threads pool, one BLAS call per matrix, and an OpenBLAS pool inside each
# call oversubscribes the cores. Measured on the idle 2-core machine, --threads 2: a UNet
# training step 3.4 -> 2.2 s, a decoder step 2.4 -> 1.4 s (OPENBLAS_NUM_THREADS 2 -> 1).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import evaluate  # noqa: E402
import export  # noqa: E402
import models  # noqa: E402
import plot  # noqa: E402
import sample  # noqa: E402
import tokenizer  # noqa: E402

# Stage names; their index seeds each stage's generator. They run in the order ae, dec, clip,
# unet, controlnet (dec and clip came later, so they are last here and the others keep their
# streams).
STAGES = ("ae", "unet", "controlnet", "dec", "clip")
HELD_OUT = 1_000_003  # data seed offset of the held-aside images (never trained on)


# ---------------------------------------------------------------- configuration


def configs(a, vocab_size):
    """Model configs for the full model or the --tiny one (used by the tests)."""
    if a.tiny:
        return dict(
            vae=export.vae_config(a.ae, (32, 32, 32, 32), n_embed=64, sample_size=a.size),
            text=export.text_config(vocab_size, hidden=32, layers=1, heads=2, inter=64),
            unet=export.unet_config((32, 64), cross_dim=32, heads=2, sample_size=a.size // 8,
                                    attn=(True, False)),
            cn_emb=(16, 16, 16, 32))
    return dict(
        vae=export.vae_config(a.ae, (32, 64, 128, 128), n_embed=256, sample_size=a.size),
        text=export.text_config(vocab_size, hidden=128, layers=3, heads=4, inter=512),
        unet=export.unet_config((64, 128, 128), cross_dim=128, heads=4, sample_size=a.size // 8,
                                attn=unet_attn(a)),
        cn_emb=(16, 32, 96, 256))


def unet_attn(a):
    """--unet-attn "0,1,1": which UNet levels (highest resolution first) have transformers."""
    parts = a.unet_attn.split(",")
    if len(parts) != 3 or not set(parts) <= {"0", "1"}:
        raise SystemExit("train.py: --unet-attn: three of 0/1, e.g. 1,1,0")
    return tuple(x == "1" for x in parts)


class Run:
    """Shared state of one training run: args, paths, logging, checkpoints."""

    def __init__(self, a):
        self.a = a
        os.makedirs(a.ckpt, exist_ok=True)
        self.log_path = os.path.join(a.ckpt, "log.jsonl")

    def log(self, stage, **kv):
        rec = dict(stage=stage, time=round(time.time(), 1), **kv)
        with open(self.log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if not self.a.quiet:
            print(json.dumps(rec), flush=True)

    def path(self, stage):
        return os.path.join(self.a.ckpt, stage + ".pt")

    def load(self, stage):
        p = self.path(stage)
        return torch.load(p) if os.path.exists(p) else None

    def save(self, stage, state):
        tmp = self.path(stage) + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.path(stage))

    def gen(self, stage, step):
        """The per-step generator: noise, timesteps and dropout of step `step`."""
        return torch.Generator().manual_seed(self.a.seed * 1_000_003 + STAGES.index(stage) * 7919
                                             + step)


def slim(run, dst):
    """Copy run's checkpoint folder to dst with the finished stages cut to what the later
    stages read (a training run resumed from dst gives the same weights): no optimiser or
    discriminator states, the UNet's EMA weights only, and no autoencoder weights in ae.pt when
    dec.pt is finished (it holds the whole autoencoder). The latent cache is copied (building
    it takes 20 minutes). Unfinished stages are copied whole. A slim stage cannot continue with
    a larger budget."""
    src = run.a.ckpt
    os.makedirs(dst, exist_ok=True)
    shutil.copytree(os.path.join(src, "tokenizer"), os.path.join(dst, "tokenizer"),
                    dirs_exist_ok=True)
    for f in ("log.jsonl", "latents.pt", "controlnet_curve.png", "controlnet_curve.csv"):
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), dst)
    states = {s: run.load(s) for s in ("ae", "dec", "clip", "unet", "controlnet")}
    dec_done = bool(states["dec"] and states["dec"]["done"])
    drop = dict(ae=["disc", "opt_g", "opt_d"] + (["vae"] if dec_done else []),
                dec=["opt"], clip=["opt"], unet=["opt", "text", "unet"], controlnet=["opt"])
    for stage, st in states.items():
        if st is None:
            continue
        if st["done"]:
            st = {k: v for k, v in st.items() if k not in drop[stage]}
            st["slim"] = True
        torch.save(st, os.path.join(dst, stage + ".pt"))


def get_tokenizer(run):
    d = os.path.join(run.a.ckpt, "tokenizer")
    if os.path.exists(os.path.join(d, "merges.txt")):
        return tokenizer.Tokenizer.from_dir(d)
    caps = [data.caption(run.a.seed, i) for i in range(2000)]
    tok = tokenizer.build(caps + data.words())
    for w in data.words():
        assert len(tok.encode(w)) == 1, w
    tok.save(d)
    return tok


def _loop(run, stage, state, step_fn, max_steps, minutes, save_fn, eval_fn=None):
    """Run step_fn(step) until max_steps or the stage's time budget; checkpoint every
    --ckpt-minutes and at the end. state holds 'step' and 'elapsed' (seconds, all sessions)."""
    t0, last_save = time.time(), time.time()
    base = state["elapsed"]
    while state["step"] < max_steps and state["elapsed"] < minutes * 60:
        ts = time.time()
        info = step_fn(state["step"])
        state["step"] += 1
        state["elapsed"] = base + time.time() - t0
        if state["step"] % run.a.log_every == 0 or state["step"] == 1:
            run.log(stage, step=state["step"], sec_per_step=round(time.time() - ts, 3),
                    elapsed=round(state["elapsed"]), **info)
        if eval_fn and state["step"] % run.a.eval_every == 0:
            eval_fn(state["step"])
        if time.time() - last_save > run.a.ckpt_minutes * 60:
            save_fn()
            last_save = time.time()
    save_fn()


def _continue_if_raised(run, stage, state, max_steps, minutes):
    """A finished stage runs again, from where it stopped, when its budget has been raised
    (only for stages whose successors notice: the ControlNet checks the UNet's step)."""
    if state["done"] and state["step"] < max_steps and state["elapsed"] < minutes * 60:
        if state.get("slim"):
            raise SystemExit(f"{stage}.pt is slim (no optimiser state): it cannot continue")
        state["done"] = False
        run.log(stage, continued=True, step=state["step"])


# ---------------------------------------------------------------- stage 1: autoencoder


def _ae_forward(vae, x, g):
    """-> (reconstruction, regulariser loss, dict of logged numbers, code indices or None)."""
    if isinstance(vae, models.VQModel):
        h = vae.encode(x)
        zq, cb, cm, idx = vae.quantize(h)
        rec = vae.decoder(vae.post_quant_conv(zq))
        return rec, cb + 0.25 * cm, dict(codebook=cb.item(), commit=cm.item()), idx
    mean, logvar = vae.encode(x)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean()
    return vae.decode(z), 1e-6 * kl * mean[0].numel(), dict(kl=kl.item()), None


def stage_ae(run, cfgs):
    a = run.a
    torch.manual_seed(a.seed)
    vae = export.make_vae(cfgs["vae"])
    disc = models.PatchDiscriminator()
    opt_g = torch.optim.Adam(vae.parameters(), lr=a.lr_ae, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=a.lr_ae, betas=(0.5, 0.9))
    st = run.load("ae") or dict(step=0, elapsed=0.0, done=False)
    if "vae" not in st and st.get("slim"):  # the decoder stage's holds the whole autoencoder
        st["vae"] = run.load("dec")["vae"]
    if "vae" in st:
        vae.load_state_dict(st["vae"])
    if "opt_g" in st:
        disc.load_state_dict(st["disc"])
        opt_g.load_state_dict(st["opt_g"])
        opt_d.load_state_dict(st["opt_d"])
    usage = torch.zeros(cfgs["vae"].get("num_vq_embeddings", 1))
    last = vae.decoder.conv_out.weight

    if isinstance(vae, models.VQModel) and st["step"] == 0:
        # Data-dependent codebook init: encoder outputs of a batch (VQ-VAE papers init by
        # k-means; random outputs avoid the collapse a tiny uniform init starts with).
        with torch.no_grad():
            g0 = run.gen("ae", -1)
            x = torch.from_numpy(data.batch(a.seed + HELD_OUT, 10_000, 16, a.size)[0])
            ed = vae.quantize.embedding.weight.shape[1]
            h = vae.encode(x).permute(0, 2, 3, 1).reshape(-1, ed)
            pick = torch.randint(0, h.shape[0], (usage.numel(),), generator=g0)
            vae.quantize.embedding.weight.copy_(h[pick] + 0.01 * h.std() *
                                                torch.randn(usage.numel(), ed, generator=g0))

    def step(i):
        g = run.gen("ae", i)
        x = torch.from_numpy(data.batch(a.seed, i * a.batch_ae, a.batch_ae, a.size)[0])
        if a.ae_crop and a.ae_crop < a.size:  # random crops: the nets are convolutional
            oy, ox = torch.randint(0, a.size - a.ae_crop + 1, (2,), generator=g).tolist()
            x = x[:, :, oy // 8 * 8:oy // 8 * 8 + a.ae_crop, ox // 8 * 8:ox // 8 * 8 + a.ae_crop]
        rec, reg, info, idx = _ae_forward(vae, x, g)
        rec_loss = (x - rec).abs().mean() + F.mse_loss(rec, x)
        loss = rec_loss + reg
        use_gan = i >= a.disc_start
        if use_gan:
            g_adv = -disc(rec).mean()
            gr = torch.autograd.grad(rec_loss, last, retain_graph=True)[0].norm()
            ga = torch.autograd.grad(g_adv, last, retain_graph=True)[0].norm()
            w = (gr / (ga + 1e-4)).clamp(0, 1e4).detach() * a.disc_weight
            loss = loss + w * g_adv
            info["g_adv"] = g_adv.item()
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        if use_gan:
            d_loss = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(rec.detach())).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            info["d_loss"] = d_loss.item()
        if idx is not None:  # restart dead codes from current encoder outputs (k-means style)
            usage.mul_(0.99).index_add_(0, idx, torch.ones(idx.numel()))
            if i % (20 if i < 1000 else 100) == 19:
                dead = (usage < 1e-3).nonzero().flatten()
                if len(dead):
                    ed = vae.quantize.embedding.weight.shape[1]
                    h = vae.encode(x).detach().permute(0, 2, 3, 1).reshape(-1, ed)
                    pick = torch.randint(0, h.shape[0], (len(dead),), generator=g)
                    with torch.no_grad():
                        vae.quantize.embedding.weight[dead] = h[pick]
                    usage[dead] = 1.0
                info["dead_codes"] = int(len(dead))
        info.update(rec=round(rec_loss.item(), 5), psnr=round(
            float(10 * math.log10(4.0 / max(F.mse_loss(rec, x).item(), 1e-10))), 2))
        return info

    def save():
        run.save("ae", dict(st, vae=vae.state_dict(), disc=disc.state_dict(),
                            opt_g=opt_g.state_dict(), opt_d=opt_d.state_dict()))

    if not st["done"]:
        _loop(run, "ae", st, step, a.steps_ae, a.minutes_ae, save)
        st["scaling_factor"] = latent_scale(run, vae)
        st["done"] = True
        save()
        run.log("ae", done=True, step=st["step"], scaling_factor=st["scaling_factor"])
    vae.config["scaling_factor"] = st["scaling_factor"]
    return vae.eval()


@torch.no_grad()
def encode_latents(vae, x):
    """Images -> the latents the UNet models (before scaling): quantised codes for VQ (what
    VQModel.decode would produce from them), the posterior mean for KL."""
    if isinstance(vae, models.VQModel):
        return vae.quantize(vae.encode(x))[0]
    return vae.encode(x)[0]


@torch.no_grad()
def latent_scale(run, vae, n=128):
    vae.eval()
    lat = torch.cat([encode_latents(vae, torch.from_numpy(
        data.batch(run.a.seed + HELD_OUT, i, 32, run.a.size)[0])) for i in range(0, n, 32)])
    vae.train()
    return float(1.0 / lat.std())


# ---------------------------------------------------------------- stage 1b: decoder fine-tune


def stage_decoder(run, vae):
    """The decoder alone (post_quant_conv + decoder), fine-tuned on the cached latents at the
    full image size with L1 + L2 reconstruction: the encoder and codebook stay as they are, so
    the latent space the UNet learns does not change (SD's later VAE decoders were fine-tuned
    the same way). The autoencoder stage trains on crops and leaves small shapes blurred and
    their colours shifted; this sharpens them and removes the frame at the image border."""
    a = run.a
    params = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    opt = torch.optim.Adam(params, lr=a.lr_dec)
    st = run.load("dec") or dict(step=0, elapsed=0.0, done=False)
    if "vae" in st:
        vae.load_state_dict(st["vae"])
    if "opt" in st:
        opt.load_state_dict(st["opt"])
    if not st["done"]:
        lat, _ = latent_cache(run, vae)
        sf = vae.config["scaling_factor"]
        vq = isinstance(vae, models.VQModel)
        vae.train()

        def step(i):
            g = run.gen("dec", i)
            idx = torch.randint(0, lat.shape[0], (a.batch_dec,), generator=g).tolist()
            x = torch.from_numpy(data.batch_of(a.seed, idx, a.size)[0])
            z = lat[idx] / sf
            with torch.no_grad():  # back onto the codebook (the cache is float16)
                z = vae.quantize(z)[0] if vq else z
            rec = vae.decoder(vae.post_quant_conv(z))
            mse = F.mse_loss(rec, x)
            loss = (x - rec).abs().mean() + mse
            opt.zero_grad()
            loss.backward()
            opt.step()
            return dict(rec=round(loss.item(), 5),
                        psnr=round(float(10 * math.log10(4.0 / max(mse.item(), 1e-10))), 2))

        def save():
            run.save("dec", dict(st, vae=vae.state_dict(), opt=opt.state_dict()))

        _loop(run, "dec", st, step, a.steps_dec, a.minutes_dec, save)
        st["done"] = True
        save()
        run.log("dec", done=True, step=st["step"])
    return vae.eval()


# ---------------------------------------------------------------- stage 2: text encoder + UNet


def latent_cache(run, vae):
    """Scaled latents and captions of data examples 0..N-1, built once (resumable in chunks)."""
    p = os.path.join(run.a.ckpt, "latents.pt")
    c = torch.load(p) if os.path.exists(p) else dict(lat=[], caps=[])
    n, chunk, sf = run.a.cache, 64, vae.config["scaling_factor"]
    t0 = time.time()
    while len(c["caps"]) < n:
        k = len(c["caps"])
        x, caps = data.batch(run.a.seed, k, min(chunk, n - k), run.a.size)
        c["lat"].append((encode_latents(vae, torch.from_numpy(x)) * sf).half())
        c["caps"] += caps
        if len(c["caps"]) % 1024 < chunk or len(c["caps"]) >= n:
            torch.save(c, p + ".tmp")
            os.replace(p + ".tmp", p)
            run.log("cache", n=len(c["caps"]), sec=round(time.time() - t0, 1))
    return torch.cat(c["lat"]).float(), c["caps"]


class LatentEncoder(torch.nn.Module):
    """The clip stage's image tower: scaled latents (B, 4, h, w) -> (B, dim). Training only.
    No global pooling: captions name positions, so the layout must reach the embedding."""

    def __init__(self, h, dim, ch=64):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(4, ch, 3, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(2 * ch, 2 * ch, 3, stride=2, padding=1), torch.nn.SiLU(),
            torch.nn.Flatten(), torch.nn.Linear(2 * ch * (h // 4) ** 2, 4 * dim), torch.nn.SiLU(),
            torch.nn.Linear(4 * dim, dim))

    def forward(self, x):
        return self.net(x)


def text_pooled(text, ids, eos):
    """CLIP's pooled text feature: the final hidden state at the (first) end-of-text token."""
    h = text(ids)
    return h[torch.arange(ids.shape[0]), (ids == eos).int().argmax(1)]


class ClipHead(torch.nn.Module):
    """What the clip stage trains besides the text encoder: the latent image tower, CLIP's text
    projection and the learned temperature. loss() is CLIP's symmetric contrastive loss."""

    def __init__(self, h, dim):
        super().__init__()
        self.img = LatentEncoder(h, dim)
        self.proj = torch.nn.Linear(dim, dim, bias=False)  # CLIP's text_projection
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def param_list(self):  # the optimiser's order (checkpoints depend on it)
        return [*self.img.parameters(), *self.proj.parameters(), self.logit_scale]

    def parts(self):
        return dict(img=self.img.state_dict(), proj=self.proj.state_dict(),
                    logit_scale=self.logit_scale.detach().clone())

    def load_parts(self, st):
        self.img.load_state_dict(st["img"])
        self.proj.load_state_dict(st["proj"])
        with torch.no_grad():
            self.logit_scale.copy_(st["logit_scale"])

    def text_features(self, text, ids, eos):
        return F.normalize(self.proj(text_pooled(text, ids, eos)), dim=-1)

    def loss(self, text, lat, ids, neg, eos):
        """Images lat (B, ...) against their captions ids (B, n); neg: extra negative captions
        (image -> text only). Identical captions in a batch are not negatives of each other."""
        n = len(ids)
        zi = F.normalize(self.img(lat), dim=-1)
        zt = self.text_features(text, torch.cat([ids, neg]), eos)
        same = (ids[:, None] == ids[None]).all(-1) & ~torch.eye(n, dtype=torch.bool)
        logits = self.logit_scale.clamp(max=math.log(100)).exp() * zi @ zt.T
        logits[:, :n] = logits[:, :n].masked_fill(same, -1e4)
        target = torch.arange(n)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, :n].T, target)) / 2


def zero_shot(text, head, tok, lat, idx, seed):
    """Fractions of single-shape examples idx whose image embedding picks the caption with the
    right shape word among the 4 shapes, and the right colour among the 11 non-background ones."""
    ok = dict(shape=0, colour=0)
    n = 0
    with torch.no_grad():
        for i in idx:
            sc = data._scene(np.random.default_rng([seed, int(i)]))
            if len(sc["shapes"]) != 1:
                continue
            s, n = sc["shapes"][0], n + 1
            z = F.normalize(head.img(lat[i:i + 1]), dim=-1)
            for key, opts, right in (
                    ("shape", data.SHAPES, s["shape"]),
                    ("colour", [c for c in data.COLOURS if c != sc["bg"]], s["colour"])):
                caps = [sc["caption"].replace(f"{s['colour']} {s['shape']}",
                                              f"{o} {s['shape']}" if key == "colour"
                                              else f"{s['colour']} {o}") for o in opts]
                ids = torch.tensor([tok.sd_ids(c) for c in caps])
                zt = head.text_features(text, ids, tok.eos)
                ok[key] += opts[int((zt @ z.T).argmax())] == right
    return {k: round(v / max(n, 1), 3) for k, v in ok.items()}


def swap_shape(ids, shape_ids, g):
    """Hard negatives: each caption (token ids, one token per shape word) with one of its shape
    words replaced by another shape (a caption differing from the image in that word alone)."""
    is_shape = (ids[..., None] == shape_ids).any(-1)
    # a random shape-word position per row (rows have one or two)
    pos = (is_shape.float() * torch.rand(ids.shape, generator=g)).argmax(1)
    rows = torch.arange(ids.shape[0])
    k = (ids[rows, pos, None] == shape_ids).int().argmax(-1)
    shift = torch.randint(1, len(shape_ids), (ids.shape[0],), generator=g)
    out = ids.clone()
    out[rows, pos] = shape_ids[(k + shift) % len(shape_ids)]
    return out


def shape_token_ids(tok):
    """The token id of each shape word (one token each), as swap_shape takes them."""
    return torch.tensor([tok.encode(w)[0] for w in data.SHAPES])


def log_zero_shot(run, stage, step, text, head, tok, lat):
    """zero_shot on the cache's held-out end, logged under stage."""
    text.eval()
    n = lat.shape[0]
    res = zero_shot(text, head, tok, lat, range(n - clip_held_out(n), n), run.a.seed)
    text.train()
    run.log(stage, step=step, **res)


def clip_held_out(n):
    """How many of the cache's last examples the clip loss never sees (zero-shot evaluation)."""
    return min(256, n // 4)


def pooled_ids(ids, eos):
    """sd_ids rows cut for the pooled feature alone: it sits at the first end-of-text token
    and attention is causal, so the padding after the longest caption's end changes nothing
    and is dropped (3x faster)."""
    return ids[:, :int((ids == eos).int().argmax(1).max()) + 1]


def stage_clip(run, cfgs, tok, vae):
    """-> the pre-trained text encoder's state dict (see the module docstring)."""
    a = run.a
    torch.manual_seed(a.seed + 3)
    text = models.CLIPTextModel(cfgs["text"])
    head = ClipHead(a.size // 8, cfgs["text"]["hidden_size"])
    opt = torch.optim.AdamW([*text.parameters(), *head.param_list()], lr=a.lr_clip,
                            weight_decay=0.1)
    st = run.load("clip") or dict(step=0, elapsed=0.0, done=False)
    if "text" in st:
        text.load_state_dict(st["text"])
        head.load_parts(st)
    if "opt" in st:
        opt.load_state_dict(st["opt"])
    if not st["done"]:
        lat, caps = latent_cache(run, vae)
        n_train = lat.shape[0] - clip_held_out(lat.shape[0])
        ids_all = pooled_ids(torch.tensor([tok.sd_ids(c) for c in caps]), tok.eos)
        shape_ids = shape_token_ids(tok)

        def step(i):
            g = run.gen("clip", i)
            for pg in opt.param_groups:
                pg["lr"] = a.lr_clip * min(1.0, (i + 1) / a.warmup)
            idx = torch.randint(0, n_train, (a.batch_clip,), generator=g)
            ids = ids_all[idx]
            neg = swap_shape(ids, shape_ids, g) if a.clip_hard_negatives else ids[:0]
            loss = head.loss(text, lat[idx], ids, neg, tok.eos)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return dict(loss=round(loss.item(), 5))

        def evaluate_(i):
            log_zero_shot(run, "clip", i, text, head, tok, lat)

        def save():
            run.save("clip", dict(st, text=text.state_dict(), opt=opt.state_dict(),
                                  **head.parts()))

        if st["step"] == 0:
            evaluate_(0)
        _loop(run, "clip", st, step, a.steps_clip, a.minutes_clip, save, evaluate_)
        st["done"] = True
        save()
        run.log("clip", done=True, step=st["step"])
    return st["text"] if "text" in st else text.state_dict()


def q_sample(ac, x0, t, eps):
    """DDPM's forward process: sqrt(alphas_cumprod[t]) x0 + sqrt(1 - alphas_cumprod[t]) eps."""
    at = ac[t].view(-1, 1, 1, 1)
    return at.sqrt() * x0 + (1 - at).sqrt() * eps


class EMA:
    def __init__(self, module, decay):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module, step):
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in module.state_dict().items():
            self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)


def unet_lr(a, i):
    """The UNet stage's learning rate at step i: linear warm-up to --lr-unet; then phases:
    from step --lr-unet-late-from[k] on, linear decay from the level so far to
    --lr-unet-late[k] over --lr-unet-decay-steps[k] (lists of equal length, or one value)."""
    lr = a.lr_unet * min(1.0, (i + 1) / a.warmup)
    for to, start, n in late_phases(a):
        if to > 0 and i >= start:
            f = min(1.0, (i - start + 1) / max(1, n))
            lr = lr * (1 - f) + to * f
    return lr


def late_phases(a):
    """(to, from, steps) of each learning-rate phase of --lr-unet-late*, a single value of
    --lr-unet-decay-steps serving every phase."""
    to, start, n = a.lr_unet_late, a.lr_unet_late_from, a.lr_unet_decay_steps
    n = n * len(to) if len(n) == 1 else n
    if not len(to) == len(start) == len(n) or start != sorted(start):
        raise SystemExit("train.py: --lr-unet-late, --lr-unet-late-from, --lr-unet-decay-steps: "
                         "lists of equal length, steps ascending")
    return list(zip(to, start, n))


def caption_drop(a, r, t):
    """Which examples of a UNet batch lose their caption, from uniform draws r and timesteps t:
    --caption-dropout, or --caption-dropout-low where t < --caption-dropout-low-t."""
    low = torch.tensor(a.caption_dropout_low)
    return r < torch.where(t < a.caption_dropout_low_t, low, torch.tensor(a.caption_dropout))


def agree_loss(a, unet, text, xt, t, pred, drop, empty):
    """Mean squared difference of the captioned and the caption-less prediction for the
    captioned examples with t < --cfg-agree-t (None if there are none). There the nearly clean
    image tells what the caption would, so an exact model gives both branches the same
    prediction; a gap is what classifier-free guidance multiplies."""
    if a.cfg_agree <= 0:
        return None
    sel = ((t < a.cfg_agree_t) & ~drop).nonzero().flatten()
    if len(sel) == 0:
        return None
    pred_u = unet(xt[sel], t[sel], text(empty.expand(len(sel), -1)))
    return ((pred[sel] - pred_u) ** 2).mean()


def batch_indices(g, n, focus, size, frac):
    """size random indices of 0..n-1, of which round(frac * size) are drawn from focus only."""
    k = int(round(frac * size)) if len(focus) else 0
    rest = torch.randint(0, n, (size - k,), generator=g)
    pick = focus[torch.randint(0, len(focus), (k,), generator=g)] if k else rest[:0]
    return torch.cat([pick, rest])


def stage_unet(run, cfgs, tok, vae, text_init=None):
    """text_init: the clip stage's text encoder (a fresh run starts from it). A finished stage
    continues when its budget (--steps-unet, --minutes-unet) is raised."""
    a = run.a
    torch.manual_seed(a.seed + 1)
    text = models.CLIPTextModel(cfgs["text"])
    unet = models.UNet2DConditionModel(cfgs["unet"])
    if text_init is not None:
        text.load_state_dict(text_init)
    params = list(text.parameters()) + list(unet.parameters())
    st = run.load("unet") or dict(step=0, elapsed=0.0, done=False)
    head = None
    if a.clip_weight > 0:  # keep the clip loss on, with the clip stage's head
        head = ClipHead(a.size // 8, cfgs["text"]["hidden_size"])
        pre = st.get("clip_head") or run.load("clip")  # a resumed run has its own
        if pre is None or "img" not in pre:
            raise SystemExit("--clip-weight needs the clip stage's checkpoint (clip.pt)")
        head.load_parts(pre)
        params += head.param_list()
    opt = torch.optim.AdamW(params, lr=a.lr_unet, weight_decay=0.01)
    ema_t, ema_u = EMA(text, a.ema), EMA(unet, a.ema)
    if "opt" in st:  # a slim finished stage has only the EMA weights
        text.load_state_dict(st["text"])
        unet.load_state_dict(st["unet"])
        opt.load_state_dict(st["opt"])
    if "ema_unet" in st:
        ema_t.shadow, ema_u.shadow = st["ema_text"], st["ema_unet"]
    _continue_if_raised(run, "unet", st, a.steps_unet, a.minutes_unet)
    if not st["done"]:
        lat, caps = latent_cache(run, vae)
        ac = sample.alphas_cumprod()
        empty = torch.tensor([tok.sd_ids("")])
        ids_all = torch.tensor([tok.sd_ids(c) for c in caps])
        sizes = a.unet_focus_sizes.split(",")
        focus = torch.tensor([k for k, c in enumerate(caps) if data.one_shape_size(c) in sizes],
                             dtype=torch.long)
        if head is not None:
            n_clip = lat.shape[0] - clip_held_out(lat.shape[0])
            ids_pooled = pooled_ids(ids_all, tok.eos)
            shape_ids = shape_token_ids(tok)

        def step(i):
            g = run.gen("unet", i)
            lr = unet_lr(a, i)
            for pg in opt.param_groups:
                pg["lr"] = lr
            frac = a.unet_focus if i >= a.unet_focus_from else 0.0
            idx = batch_indices(g, lat.shape[0], focus, a.batch_unet, frac)
            x0, ids = lat[idx], ids_all[idx].clone()
            r = torch.rand(a.batch_unet, generator=g)
            t = torch.randint(0, 1000, (a.batch_unet,), generator=g)
            drop = caption_drop(a, r, t)
            ids[drop] = empty
            eps = torch.randn(x0.shape, generator=g)
            if a.offset_noise > 0:  # hide the image mean at high noise: only the caption tells it
                eps = eps + a.offset_noise * torch.randn(x0.shape[:2] + (1, 1), generator=g)
            xt = q_sample(ac, x0, t, eps)
            pred = unet(xt, t, text(ids))
            cap = a.loss_weight_cap
            if a.loss_weight_cap_late > 0 and i >= a.loss_weight_late_from:
                cap = a.loss_weight_cap_late
            if cap > 0 and i >= a.loss_weight_from:  # still epsilon prediction
                w = (1.0 / ac[t]).clamp(max=cap)
                loss = (((pred - eps) ** 2).mean((1, 2, 3)) * w).mean()
            else:
                loss = F.mse_loss(pred, eps)
            info = dict(loss=round(loss.item(), 5), lr=float(f"{lr:.4g}"))
            la = agree_loss(a, unet, text, xt, t, pred, drop, empty)
            if la is not None:
                loss = loss + a.cfg_agree * la
                info["agree_loss"] = round(la.item(), 5)
            keep = (~drop & (idx < n_clip)).nonzero().flatten() if head else []
            if len(keep) >= 2:  # the batch's captioned examples the clip loss may see
                ids_k = ids_pooled[idx[keep]]
                lc = head.loss(text, x0[keep], ids_k, swap_shape(ids_k, shape_ids, g), tok.eos)
                loss = loss + a.clip_weight * lc
                info["clip_loss"] = round(lc.item(), 5)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            ema_t.update(text, i)
            ema_u.update(unet, i)
            return info

        def save():
            run.save("unet", dict(st, text=text.state_dict(), unet=unet.state_dict(),
                                  opt=opt.state_dict(), ema_text=ema_t.shadow,
                                  ema_unet=ema_u.shadow,
                                  **({"clip_head": head.parts()} if head else {})))

        def evaluate_(i):  # do the text features still tell the shapes apart?
            log_zero_shot(run, "unet", i, text, head, tok, lat)

        _loop(run, "unet", st, step, a.steps_unet, a.minutes_unet, save,
              evaluate_ if head is not None else None)
        st["done"] = True
        save()
        run.log("unet", done=True, step=st["step"])
        text.load_state_dict(ema_t.shadow)
        unet.load_state_dict(ema_u.shadow)
        if a.adherence_images:  # does text steer the image, and does CFG strengthen it?
            parts = dict(tok=tok, text=text.eval(), unet=unet.eval(), vae=vae, controlnet=None)
            for cfg in (1.0, 5.0):
                res = evaluate.adherence(parts, a.adherence_images, cfg, size=a.size)
                run.log("unet", adherence_cfg=cfg, **res)
    text.load_state_dict(ema_t.shadow)
    unet.load_state_dict(ema_u.shadow)
    return text.eval(), unet.eval(), st["step"]


# ---------------------------------------------------------------- stage 3: ControlNet


def edge_agreement(parts, seed, n, size, steps=10):
    """Mean edge F1 (2 px) between Canny(generated) and the control map over n held-aside
    images, sampled with their captions, DDIM `steps`, no CFG."""
    f1 = []
    for i in range(n):
        im, cap, _ = data.example(seed + HELD_OUT, 10_000 + i, size)
        e = data.canny(im)
        out = sample.generate(parts, cap, seed=i, steps=steps, cfg=1.0, width=size, height=size,
                              control=np.repeat(e[..., None], 3, 2))
        f1.append(data.edge_f1(data.canny(out), e))
    return float(np.mean(f1))


def stage_controlnet(run, cfgs, tok, vae, text, unet, unet_step):
    """unet_step: the UNet's training step (a ControlNet belongs to the UNet it was trained on)."""
    a = run.a
    torch.manual_seed(a.seed + 2)
    ccfg = export.controlnet_config(unet.config, cfgs["cn_emb"])
    cn = models.ControlNetModel.from_unet(unet, ccfg)
    opt = torch.optim.AdamW(cn.parameters(), lr=a.lr_cn, weight_decay=0.0)
    st = run.load("controlnet") or dict(step=0, elapsed=0.0, done=False, curve=[],
                                        unet_step=unet_step)
    if st.get("unet_step", unet_step) != unet_step:
        raise SystemExit(f"controlnet.pt was trained on the UNet of step {st['unet_step']}, "
                         f"the UNet is now at step {unet_step}: move it away to train it again")
    if "cn" in st:
        cn.load_state_dict(st["cn"])
        opt.load_state_dict(st["opt"])
    _continue_if_raised(run, "controlnet", st, a.steps_cn, a.minutes_cn)
    for p in list(text.parameters()) + list(unet.parameters()):
        p.requires_grad_(False)
    parts = dict(tok=tok, text=text, unet=unet, vae=vae, controlnet=cn)
    curve_png = os.path.join(a.ckpt, "controlnet_curve.png")

    def evaluate(i):
        cn.eval()
        f1 = edge_agreement(parts, a.seed, a.eval_images, a.size)
        cn.train()
        st["curve"].append([i, f1])
        run.log("controlnet", step=i, edge_f1=round(f1, 4))
        plot.line_chart(curve_png, [s for s, _ in st["curve"]], [f for _, f in st["curve"]])

    if not st["done"]:
        ac = sample.alphas_cumprod()
        empty = tok.sd_ids("")
        if not st["curve"]:
            evaluate(0)

        lat, caps = latent_cache(run, vae)

        def step(i):
            g = run.gen("controlnet", i)
            # The UNet's cached latents; each example's Canny map is re-rendered (15 ms).
            idx = torch.randint(0, lat.shape[0], (a.batch_cn,), generator=g).tolist()
            x0 = lat[idx]
            cond = data.batch_of(a.seed, idx, a.size, with_canny=True)[2]
            with torch.no_grad():
                drop = torch.rand(a.batch_cn, generator=g) < a.cn_caption_dropout
                ids = torch.tensor([empty if d else tok.sd_ids(caps[k])
                                    for k, d in zip(idx, drop.tolist())])
                ctx = text(ids)
            t = torch.randint(0, 1000, (a.batch_cn,), generator=g)
            eps = torch.randn(x0.shape, generator=g)
            xt = q_sample(ac, x0, t, eps)
            down, mid = cn(xt, t, ctx, torch.from_numpy(cond))
            loss = F.mse_loss(unet(xt, t, ctx, down, mid), eps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return dict(loss=round(loss.item(), 5))

        def save():
            run.save("controlnet", dict(st, cn=cn.state_dict(), opt=opt.state_dict()))

        _loop(run, "controlnet", st, step, a.steps_cn, a.minutes_cn, save, evaluate)
        if not st["curve"] or st["curve"][-1][0] != st["step"]:
            evaluate(st["step"])
        st["done"] = True
        save()
        run.log("controlnet", done=True, step=st["step"])
        with open(os.path.join(a.ckpt, "controlnet_curve.csv"), "w") as f:
            f.write("step,edge_f1\n" + "".join(f"{s},{v:.4f}\n" for s, v in st["curve"]))
    return cn.eval()


# ---------------------------------------------------------------- main


def parse(argv=None):
    ap = argparse.ArgumentParser(description="Train the demo model (see train/README.md).")
    ap.add_argument("--ckpt", default=os.path.join(os.path.dirname(__file__), "ckpt"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "models",
                                                  "demo"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--ae", choices=("vq", "kl"), default="vq")
    ap.add_argument("--tiny", action="store_true", help="tiny model sizes (tests)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stages", default="ae,dec,clip,unet,controlnet")
    ap.add_argument("--minutes-ae", type=float, default=40)
    ap.add_argument("--minutes-dec", type=float, default=20)
    ap.add_argument("--minutes-clip", type=float, default=10)
    ap.add_argument("--steps-clip", type=int, default=10 ** 9)
    ap.add_argument("--batch-clip", type=int, default=256)
    ap.add_argument("--lr-clip", type=float, default=5e-4)
    ap.add_argument("--clip-weight", type=float, default=0.0,
                    help="UNet stage: W > 0 adds W x the clip stage's contrastive loss (its "
                    "image tower, on the batch's latents; text encoder shared), so training "
                    "through the UNet cannot merge words the UNet does not use yet")
    ap.add_argument("--clip-hard-negatives", type=int, default=1,
                    help="1: add each caption with a shape word swapped as a negative text")
    ap.add_argument("--minutes-unet", type=float, default=95)
    ap.add_argument("--minutes-cn", type=float, default=30)
    ap.add_argument("--steps-ae", type=int, default=10 ** 9)
    ap.add_argument("--steps-dec", type=int, default=10 ** 9)
    ap.add_argument("--steps-unet", type=int, default=10 ** 9)
    ap.add_argument("--steps-cn", type=int, default=10 ** 9)
    ap.add_argument("--batch-ae", type=int, default=8)
    ap.add_argument("--batch-dec", type=int, default=8)
    ap.add_argument("--batch-unet", type=int, default=32)
    ap.add_argument("--batch-cn", type=int, default=16)
    ap.add_argument("--ae-crop", type=int, default=64, help="AE training crop (0 = full)")
    ap.add_argument("--lr-ae", type=float, default=2e-4)
    ap.add_argument("--lr-dec", type=float, default=1e-4)
    ap.add_argument("--lr-unet", type=float, default=3e-4)
    ap.add_argument("--lr-cn", type=float, default=1e-4)
    ap.add_argument("--lr-unet-late", type=float, nargs="+", default=[0.0],
                    help="UNet: decay the learning rate linearly to this (0 = constant); "
                    "several values: one phase each")
    ap.add_argument("--lr-unet-late-from", type=int, nargs="+", default=[0],
                    help="UNet step each decay starts")
    ap.add_argument("--lr-unet-decay-steps", type=int, nargs="+", default=[200])
    ap.add_argument("--unet-focus", type=float, default=0.0,
                    help="UNet: fraction of each batch drawn from the one-shape examples of "
                    "--unet-focus-sizes (the rest from all), from step --unet-focus-from on")
    ap.add_argument("--unet-focus-from", type=int, default=0)
    ap.add_argument("--unet-focus-sizes", default="large,any",
                    help="size words of --unet-focus (small, large, any = none named)")
    ap.add_argument("--unet-attn", default="1,1,0",
                    help="transformers at the UNet levels 16x16,8x8,4x4 (1 = CrossAttn block; "
                         "the full model only, --tiny has its own)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--disc-start", type=int, default=2000)
    ap.add_argument("--disc-weight", type=float, default=0.5)
    ap.add_argument("--cache", type=int, default=16000, help="latent cache size (examples)")
    ap.add_argument("--caption-dropout", type=float, default=0.1)
    ap.add_argument("--caption-dropout-low", type=float, default=0.0,
                    help="caption dropout of the UNet examples whose t < --caption-dropout-low-t "
                    "(more unconditional training where the outline is settled)")
    ap.add_argument("--caption-dropout-low-t", type=int, default=0)
    ap.add_argument("--cfg-agree", type=float, default=0.0,
                    help="UNet: weight W of the squared difference between the captioned and "
                    "the caption-less prediction, for captioned examples with t < --cfg-agree-t")
    ap.add_argument("--cfg-agree-t", type=int, default=0)
    ap.add_argument("--loss-weight-cap", type=float, default=0.0,
                    help="UNet stage: 0 = plain epsilon MSE; C > 0 weights each example's "
                    "epsilon MSE by min(1/alphas_cumprod[t], C) (1/alphas_cumprod is the weight "
                    "that makes it the v-prediction loss)")
    ap.add_argument("--loss-weight-from", type=int, default=0,
                    help="UNet step from which --loss-weight-cap applies")
    ap.add_argument("--loss-weight-cap-late", type=float, default=0.0,
                    help="the cap from UNet step --loss-weight-late-from on (0 = keep one cap): "
                    "high-noise steps first (layout, colours, background), then more weight "
                    "for the middle ones (outlines)")
    ap.add_argument("--loss-weight-late-from", type=int, default=0)
    ap.add_argument("--offset-noise", type=float, default=0.0,
                    help="UNet: std of a per-channel constant added to the training noise")
    ap.add_argument("--cn-caption-dropout", type=float, default=0.5)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--eval-images", type=int, default=8)
    ap.add_argument("--adherence-images", type=int, default=48,
                    help="after the UNet stage: colour/shape/background adherence at cfg 1 and 5")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--ckpt-minutes", type=float, default=5)
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="log to <ckpt>/log.jsonl only")
    ap.add_argument("--slim", metavar="DIR",
                    help="only copy --ckpt to DIR with its finished stages cut to what the "
                    "later stages read (no optimiser states)")
    a = ap.parse_args(argv)
    late_phases(a)  # checked here, before any stage runs (or the log's start line)
    unet_attn(a)
    unknown = set(a.unet_focus_sizes.split(",")) - set(data.ONE_SHAPE_SIZES)
    if unknown:
        raise SystemExit(f"train.py: --unet-focus-sizes: unknown size word(s) "
                         f"{', '.join(sorted(unknown))} ({', '.join(data.ONE_SHAPE_SIZES)})")
    return a


def main(argv=None):
    a = parse(argv)
    run = Run(a)
    if a.slim:
        return slim(run, a.slim)
    torch.set_num_threads(a.threads)
    # paths relative to the working directory: logs are kept in the repository
    run.log("start", args=dict(vars(a), ckpt=os.path.relpath(a.ckpt), out=os.path.relpath(a.out)))
    tok = get_tokenizer(run)
    cfgs = configs(a, len(tok.vocab))
    todo = a.stages.split(",")
    vae = stage_ae(run, cfgs)
    if "dec" in todo:
        vae = stage_decoder(run, vae)
    text_init = stage_clip(run, cfgs, tok, vae) if "clip" in todo else None
    if "unet" not in todo and "controlnet" not in todo:
        return
    text, unet, unet_step = stage_unet(run, cfgs, tok, vae, text_init)
    cn = None
    if "controlnet" in todo:
        cn = stage_controlnet(run, cfgs, tok, vae, text, unet, unet_step)
    if not a.no_export:
        export.export(a.out, tok, text, unet, vae, cn)
        run.log("export", out=os.path.relpath(a.out))


if __name__ == "__main__":
    main()
