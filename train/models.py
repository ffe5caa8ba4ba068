"""The demo model's architectures in plain PyTorch, with diffusers'/transformers' parameter names.

CLIPTextModel (transformers), UNet2DConditionModel, ControlNetModel, AutoencoderKL and VQModel
(diffusers 0.27), restricted to the configuration our engine loads (SD 1.x style: GroupNorm 32,
conv 1x1 transformer projections, GEGLU feed-forward, positional timesteps, silu). A state_dict of
these modules has exactly the tensor names diffusers saves, so the export loads in the C engine
(and in diffusers) unchanged. The sizes live in the *_CONFIG dicts; the config.json writers in
export.py emit them with every key the engine reads. Not here: training losses (train.py).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- text encoder (CLIP)


class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, mask):
        b, n, d = x.shape
        q = self.q_proj(x) * self.hd ** -0.5  # transformers scales q before the product
        k, v = self.k_proj(x), self.v_proj(x)
        sh = lambda t: t.view(b, n, self.heads, self.hd).transpose(1, 2)
        w = torch.softmax(sh(q) @ sh(k).transpose(-1, -2) + mask, dim=-1)
        return self.out_proj((w @ sh(v)).transpose(1, 2).reshape(b, n, d))


class CLIPMLP(nn.Module):
    def __init__(self, d, inter):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, inter), nn.Linear(inter, d)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))  # quick_gelu


class CLIPEncoderLayer(nn.Module):
    def __init__(self, d, heads, inter, eps):
        super().__init__()
        self.self_attn = CLIPAttention(d, heads)
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.mlp = CLIPMLP(d, inter)
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class _Embeddings(nn.Module):
    def __init__(self, vocab, d, npos):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, d)
        self.position_embedding = nn.Embedding(npos, d)


class _Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList(
            CLIPEncoderLayer(c["hidden_size"], c["num_attention_heads"], c["intermediate_size"],
                             c["layer_norm_eps"]) for _ in range(c["num_hidden_layers"]))


class _TextTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = _Embeddings(c["vocab_size"], c["hidden_size"],
                                      c["max_position_embeddings"])
        self.encoder = _Encoder(c)
        self.final_layer_norm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])


class CLIPTextModel(nn.Module):
    """input_ids (B, 77) int64 -> last_hidden_state (B, 77, D): causal mask, no attention mask."""

    def __init__(self, config):
        super().__init__()
        self.config = dict(config)
        self.text_model = _TextTransformer(config)
        for m in self.modules():  # transformers' CLIP init: normal(0.02) embeddings/linears
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

    def forward(self, ids):
        t = self.text_model
        n = ids.shape[1]
        x = t.embeddings.token_embedding(ids) + t.embeddings.position_embedding.weight[:n]
        mask = torch.full((n, n), float("-inf")).triu(1)
        for layer in t.encoder.layers:
            x = layer(x, mask)
        return t.final_layer_norm(x)


# ---------------------------------------------------------------- UNet building blocks


def timestep_embedding(t, dim, flip_sin_to_cos=True, shift=0):
    """diffusers get_timestep_embedding: t (B,) float -> (B, dim)."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - shift)
    emb = t.float()[:, None] * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(cin, dim), nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    """diffusers ResnetBlock2D (time_embedding_norm 'default', output_scale_factor 1)."""

    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout) if temb else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(nn.Module):
    """diffusers Attention as used in BasicTransformerBlock: q/k/v without bias, to_out.0."""

    def __init__(self, dim, heads, cross_dim=None):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(cross_dim or dim, dim, bias=False)
        self.to_v = nn.Linear(cross_dim or dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        b, n, d = x.shape
        h = self.heads
        hd = d // h

        def heads(t):  # (b, m, d) -> (b * heads, m, hd)
            return t.view(b, -1, h, hd).transpose(1, 2).reshape(b * h, -1, hd)

        q, k, v = heads(self.to_q(x)), heads(self.to_k(ctx)), heads(self.to_v(ctx))
        # the scale inside the product (as diffusers' baddbmm): no pass over the n x n scores
        w = torch.baddbmm(q.new_empty(1, 1, 1), q, k.transpose(1, 2), beta=0, alpha=hd ** -0.5)
        o = torch.bmm(w.softmax(dim=-1), v)
        return self.to_out[0](o.view(b, h, n, hd).transpose(1, 2).reshape(b, n, d))


class GEGLU(nn.Module):
    def __init__(self, din, dout):
        super().__init__()
        self.proj = nn.Linear(din, dout * 2)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, cross_dim):
        super().__init__()
        self.norm1, self.attn1 = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.attn2 = nn.LayerNorm(dim), Attention(dim, heads, cross_dim)
        self.norm3, self.ff = nn.LayerNorm(dim), FeedForward(dim)

    def forward(self, x, ctx):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), ctx) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    """GroupNorm(eps 1e-6) -> proj_in conv 1x1 -> blocks over (B, HW, C) -> proj_out -> + x."""

    def __init__(self, ch, heads, cross_dim, groups, layers=1):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.proj_in = nn.Conv2d(ch, ch, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(ch, heads, cross_dim) for _ in range(layers))
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x, ctx):
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        for blk in self.transformer_blocks:
            y = blk(y, ctx)
        return self.proj_out(y.reshape(b, h, w, c).permute(0, 3, 1, 2)) + x


class Downsample2D(nn.Module):
    def __init__(self, ch, padding=1):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:  # the VAE's asymmetric pad (right and bottom only)
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """CrossAttnDownBlock2D (attn=True) or DownBlock2D; returns (x, residual states)."""

    def __init__(self, cin, cout, temb, layers, attn, heads, cross_dim, groups, eps, down):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(cin if i == 0 else cout, cout, temb, groups, eps) for i in range(layers))
        if attn:
            self.attentions = nn.ModuleList(
                Transformer2DModel(cout, heads, cross_dim, groups) for _ in range(layers))
        else:
            self.attentions = None
        self.downsamplers = nn.ModuleList([Downsample2D(cout)]) if down else None

    def forward(self, x, temb, ctx):
        states = []
        for i, r in enumerate(self.resnets):
            x = r(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, ctx)
            states.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            states.append(x)
        return x, states


class UpBlock(nn.Module):
    """CrossAttnUpBlock2D (attn=True) or UpBlock2D; consumes skip states from the end."""

    def __init__(self, cin, cout, prev, temb, layers, attn, heads, cross_dim, groups, eps, up):
        super().__init__()
        res = []
        for i in range(layers):
            skip = cin if i == layers - 1 else cout
            res.append(ResnetBlock2D((prev if i == 0 else cout) + skip, cout, temb, groups, eps))
        self.resnets = nn.ModuleList(res)
        if attn:
            self.attentions = nn.ModuleList(
                Transformer2DModel(cout, heads, cross_dim, groups) for _ in range(layers))
        else:
            self.attentions = None
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if up else None

    def forward(self, x, skips, temb, ctx):
        for i, r in enumerate(self.resnets):
            x = r(torch.cat([x, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                x = self.attentions[i](x, ctx)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class UNetMidBlock2DCrossAttn(nn.Module):
    def __init__(self, ch, temb, heads, cross_dim, groups, eps):
        super().__init__()
        self.attentions = nn.ModuleList([Transformer2DModel(ch, heads, cross_dim, groups)])
        self.resnets = nn.ModuleList(ResnetBlock2D(ch, ch, temb, groups, eps) for _ in range(2))

    def forward(self, x, temb, ctx):
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, ctx), temb)


def _heads(c):
    return c.get("num_attention_heads") or c["attention_head_dim"]


class _UNetTrunk(nn.Module):
    """The parts UNet2DConditionModel and ControlNetModel share (and from_unet copies)."""

    def _build_trunk(self, c):
        boc, groups, eps = c["block_out_channels"], c["norm_num_groups"], c["norm_eps"]
        temb = boc[0] * 4
        self.conv_in = nn.Conv2d(c["in_channels"], boc[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(boc[0], temb)
        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i, kind in enumerate(c["down_block_types"]):
            cin, cout = cout, boc[i]
            self.down_blocks.append(DownBlock(
                cin, cout, temb, c["layers_per_block"], kind.startswith("CrossAttn"), _heads(c),
                c["cross_attention_dim"], groups, eps, down=i < len(boc) - 1))
        self.mid_block = UNetMidBlock2DCrossAttn(boc[-1], temb, _heads(c),
                                                 c["cross_attention_dim"], groups, eps)
        return temb

    def _temb(self, t, batch):
        t = t.reshape(-1).float()
        if t.numel() == 1:
            t = t.expand(batch)
        return self.time_embedding(timestep_embedding(t, self.config["block_out_channels"][0],
                                                      self.config["flip_sin_to_cos"],
                                                      self.config["freq_shift"]))


class UNet2DConditionModel(_UNetTrunk):
    """sample (B,4,h,w), timestep (B,) or scalar, ctx (B,77,D) -> epsilon (B,4,h,w).
    down_res / mid_res: ControlNet residuals added to the skips and the mid output."""

    def __init__(self, config):
        super().__init__()
        self.config = c = dict(config)
        temb = self._build_trunk(c)
        boc, groups, eps = c["block_out_channels"], c["norm_num_groups"], c["norm_eps"]
        rev = list(reversed(boc))
        self.up_blocks = nn.ModuleList()
        cout = rev[0]
        for i, kind in enumerate(c["up_block_types"]):
            prev, cout = cout, rev[i]
            cin = rev[min(i + 1, len(boc) - 1)]
            self.up_blocks.append(UpBlock(
                cin, cout, prev, temb, c["layers_per_block"] + 1, kind.startswith("CrossAttn"),
                _heads(c), c["cross_attention_dim"], groups, eps, up=i < len(boc) - 1))
        self.conv_norm_out = nn.GroupNorm(groups, boc[0], eps=eps)
        self.conv_out = nn.Conv2d(boc[0], c["out_channels"], 3, padding=1)

    def forward(self, x, t, ctx, down_res=None, mid_res=None):
        temb = self._temb(t, x.shape[0])
        x = self.conv_in(x)
        skips = [x]
        for blk in self.down_blocks:
            x, s = blk(x, temb, ctx)
            skips += s
        if down_res is not None:
            skips = [s + r for s, r in zip(skips, down_res)]
        x = self.mid_block(x, temb, ctx)
        if mid_res is not None:
            x = x + mid_res
        for blk in self.up_blocks:
            n = len(blk.resnets)
            x = blk(x, skips[-n:], temb, ctx)
            skips = skips[:-n]
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class ControlNetConditioningEmbedding(nn.Module):
    def __init__(self, cout, chans, cin=3):
        super().__init__()
        self.conv_in = nn.Conv2d(cin, chans[0], 3, padding=1)
        blocks = []
        for a, b in zip(chans[:-1], chans[1:]):
            blocks += [nn.Conv2d(a, a, 3, padding=1), nn.Conv2d(a, b, 3, padding=1, stride=2)]
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = zero(nn.Conv2d(chans[-1], cout, 3, padding=1))

    def forward(self, x):
        x = F.silu(self.conv_in(x))
        for b in self.blocks:
            x = F.silu(b(x))
        return self.conv_out(x)


def zero(m):
    nn.init.zeros_(m.weight)
    nn.init.zeros_(m.bias)
    return m


class ControlNetModel(_UNetTrunk):
    """(sample, t, ctx, cond (B,3,H,W) in [0,1], scale) -> (down residuals, mid residual)."""

    def __init__(self, config):
        super().__init__()
        self.config = c = dict(config)
        self._build_trunk(c)
        boc = c["block_out_channels"]
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            boc[0], c["conditioning_embedding_out_channels"], c["conditioning_channels"])
        zs = [zero(nn.Conv2d(boc[0], boc[0], 1))]
        for i, ch in enumerate(boc):
            zs += [zero(nn.Conv2d(ch, ch, 1)) for _ in range(c["layers_per_block"])]
            if i < len(boc) - 1:
                zs.append(zero(nn.Conv2d(ch, ch, 1)))
        self.controlnet_down_blocks = nn.ModuleList(zs)
        self.controlnet_mid_block = zero(nn.Conv2d(boc[-1], boc[-1], 1))

    @classmethod
    def from_unet(cls, unet, config):
        cn = cls(config)
        own = cn.state_dict()
        for k, v in unet.state_dict().items():
            if k in own and k.split(".")[0] in ("conv_in", "time_embedding", "down_blocks",
                                                "mid_block"):
                own[k].copy_(v)
        return cn

    def forward(self, x, t, ctx, cond, scale=1.0):
        temb = self._temb(t, x.shape[0])
        x = self.conv_in(x) + self.controlnet_cond_embedding(cond)
        skips = [x]
        for blk in self.down_blocks:
            x, s = blk(x, temb, ctx)
            skips += s
        x = self.mid_block(x, temb, ctx)
        down = [z(s) * scale for z, s in zip(self.controlnet_down_blocks, skips)]
        return down, self.controlnet_mid_block(x) * scale


# ---------------------------------------------------------------- autoencoders


class VAEAttention(nn.Module):
    """The VAE mid-block attention: one head over C channels, biases, residual."""

    def __init__(self, ch, groups):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.to_q, self.to_k, self.to_v = nn.Linear(ch, ch), nn.Linear(ch, ch), nn.Linear(ch, ch)
        self.to_out = nn.ModuleList([nn.Linear(ch, ch)])

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        q, k, v = self.to_q(y), self.to_k(y), self.to_v(y)
        a = torch.softmax((q @ k.transpose(1, 2)) * c ** -0.5, dim=-1) @ v
        return self.to_out[0](a).transpose(1, 2).reshape(b, c, h, w) + x


class UNetMidBlock2D(nn.Module):
    def __init__(self, ch, groups):
        super().__init__()
        self.attentions = nn.ModuleList([VAEAttention(ch, groups)])
        self.resnets = nn.ModuleList(ResnetBlock2D(ch, ch, None, groups, 1e-6) for _ in range(2))

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class _EncBlock(nn.Module):
    def __init__(self, cin, cout, layers, groups, down):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(cin if i == 0 else cout, cout, None, groups, 1e-6) for i in range(layers))
        self.downsamplers = nn.ModuleList([Downsample2D(cout, padding=0)]) if down else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        return self.downsamplers[0](x) if self.downsamplers is not None else x


class _DecBlock(nn.Module):
    def __init__(self, cin, cout, layers, groups, up):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(cin if i == 0 else cout, cout, None, groups, 1e-6) for i in range(layers))
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if up else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        return self.upsamplers[0](x) if self.upsamplers is not None else x


class Encoder(nn.Module):
    def __init__(self, c, double_z):
        super().__init__()
        boc, g, n = c["block_out_channels"], c["norm_num_groups"], len(c["block_out_channels"])
        self.conv_in = nn.Conv2d(c["in_channels"], boc[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            _EncBlock(boc[max(i - 1, 0)], boc[i], c["layers_per_block"], g, i < n - 1)
            for i in range(n))
        self.mid_block = UNetMidBlock2D(boc[-1], g)
        self.conv_norm_out = nn.GroupNorm(g, boc[-1], eps=1e-6)
        zc = c["latent_channels"] * (2 if double_z else 1)
        self.conv_out = nn.Conv2d(boc[-1], zc, 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for b in self.down_blocks:
            x = b(x)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(x))))


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        rev, g, n = list(reversed(c["block_out_channels"])), c["norm_num_groups"], \
            len(c["block_out_channels"])
        self.conv_in = nn.Conv2d(c["latent_channels"], rev[0], 3, padding=1)
        self.mid_block = UNetMidBlock2D(rev[0], g)
        self.up_blocks = nn.ModuleList(
            _DecBlock(rev[max(i - 1, 0)], rev[i], c["layers_per_block"] + 1, g, i < n - 1)
            for i in range(n))
        self.conv_norm_out = nn.GroupNorm(g, rev[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(rev[-1], c["out_channels"], 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            x = b(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class VectorQuantizer(nn.Module):
    """Nearest-codebook quantisation (diffusers VectorQuantizer, legacy, no remap).
    Returns (z_q with straight-through gradient, codebook loss, commitment loss, indices)."""

    def __init__(self, n, dim):
        super().__init__()
        self.embedding = nn.Embedding(n, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n, 1.0 / n)

    def forward(self, z):
        b, c, h, w = z.shape
        zf = z.permute(0, 2, 3, 1).reshape(-1, c)
        idx = torch.argmin(torch.cdist(zf, self.embedding.weight), dim=1)
        zq = self.embedding(idx).view(b, h, w, c).permute(0, 3, 1, 2)
        codebook = F.mse_loss(zq, z.detach())
        commit = F.mse_loss(z, zq.detach())
        return z + (zq - z).detach(), codebook, commit, idx


class AutoencoderKL(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = c = dict(config)
        lc = c["latent_channels"]
        self.encoder = Encoder(c, double_z=True)
        self.decoder = Decoder(c)
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1)
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)

    def encode(self, x):
        """-> (mean, logvar clamped to [-30, 20]), each (B, lc, H/8, W/8)."""
        m = self.quant_conv(self.encoder(x))
        mean, logvar = m.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


class VQModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = c = dict(config)
        lc, ed = c["latent_channels"], c["vq_embed_dim"]
        self.encoder = Encoder(c, double_z=False)
        self.decoder = Decoder(c)
        self.quant_conv = nn.Conv2d(lc, ed, 1)
        self.quantize = VectorQuantizer(c["num_vq_embeddings"], ed)
        self.post_quant_conv = nn.Conv2d(ed, lc, 1)

    def encode(self, x):
        """-> unquantised latents h (B, vq_embed_dim, H/8, W/8), as diffusers' VQModel.encode."""
        return self.quant_conv(self.encoder(x))

    def decode(self, h, quantize=True):
        """diffusers VQModel.decode: quantise (unless told not to), post_quant_conv, decoder."""
        q = self.quantize(h)[0] if quantize else h
        return self.decoder(self.post_quant_conv(q))


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix / taming-transformers NLayerDiscriminator, with
    GroupNorm instead of BatchNorm so it is deterministic for any batch): (B,3,H,W) -> logits
    (B,1,H/8-ish,W/8-ish). Training only; never exported."""

    def __init__(self, ch=32, layers=3):
        super().__init__()
        seq = [nn.Conv2d(3, ch, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = ch
        for i in range(1, layers):
            seq += [nn.Conv2d(c, c * 2, 4, 2, 1), nn.GroupNorm(8, c * 2), nn.LeakyReLU(0.2)]
            c *= 2
        seq += [nn.Conv2d(c, c, 4, 1, 1), nn.GroupNorm(8, c), nn.LeakyReLU(0.2),
                nn.Conv2d(c, 1, 4, 1, 1)]
        self.net = nn.Sequential(*seq)

    def forward(self, x):
        return self.net(x)
