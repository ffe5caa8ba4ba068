"""Model sizes, config.json writers and the diffusers-layout export of the demo model.

The config dicts carry every key diffusers 0.27 / transformers 4.38 write (the same key set as
tests/data/models/tiny-sd), so the C engine and diffusers read the folder unchanged. `export()`
writes model_index.json, scheduler/, tokenizer/, text_encoder/, unet/, vae/ and (when given)
controlnet/, with weights as f16 safetensors. `load_export()` reads one back (float32 modules),
for the parity test. Not here: training (train.py).
"""
import copy
import json
import os

import torch

import models
import st_io

DIFFUSERS = "0.27.2"


def text_config(vocab_size, hidden=128, layers=3, heads=4, inter=512, bos=None, eos=None):
    return {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0,
            "bos_token_id": bos if bos is not None else vocab_size - 2,
            "eos_token_id": eos if eos is not None else vocab_size - 1,
            "hidden_act": "quick_gelu", "hidden_size": hidden, "initializer_factor": 1.0,
            "initializer_range": 0.02, "intermediate_size": inter, "layer_norm_eps": 1e-05,
            "max_position_embeddings": 77, "model_type": "clip_text_model",
            "num_attention_heads": heads, "num_hidden_layers": layers,
            "pad_token_id": eos if eos is not None else vocab_size - 1,
            "projection_dim": hidden, "torch_dtype": "float32",
            "transformers_version": "4.38.0", "vocab_size": vocab_size}


_UNET_COMMON = {
    "act_fn": "silu", "addition_embed_type": None, "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": None, "class_embed_type": None, "downsample_padding": 1,
    "encoder_hid_dim": None, "encoder_hid_dim_type": None, "flip_sin_to_cos": True,
    "freq_shift": 0, "in_channels": 4, "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32,
    "num_attention_heads": None, "num_class_embeds": None, "only_cross_attention": False,
    "projection_class_embeddings_input_dim": None, "resnet_time_scale_shift": "default",
    "transformer_layers_per_block": 1, "upcast_attention": False,
    "use_linear_projection": False,
}


def unet_config(block_out=(64, 128, 128), layers=1, cross_dim=128, heads=4, sample_size=16,
                attn=(True, True, False)):
    c = copy.deepcopy(_UNET_COMMON)
    c.update({
        "_class_name": "UNet2DConditionModel", "_diffusers_version": DIFFUSERS,
        "attention_head_dim": heads, "attention_type": "default",
        "block_out_channels": list(block_out), "center_input_sample": False,
        "class_embeddings_concat": False, "conv_in_kernel": 3, "conv_out_kernel": 3,
        "cross_attention_dim": cross_dim, "cross_attention_norm": None,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "dropout": 0.0, "dual_cross_attention": False, "layers_per_block": layers,
        "mid_block_only_cross_attention": None, "out_channels": 4,
        "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False,
        "reverse_transformer_layers_per_block": None, "sample_size": sample_size,
        "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
        "time_embedding_type": "positional", "timestep_post_act": None,
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
    })
    return dict(sorted(c.items()))


def controlnet_config(ucfg, emb=(16, 32, 96, 256)):
    c = copy.deepcopy(_UNET_COMMON)
    for k in ("attention_head_dim", "block_out_channels", "cross_attention_dim",
              "down_block_types", "layers_per_block", "in_channels", "norm_num_groups",
              "norm_eps", "use_linear_projection", "num_attention_heads"):
        c[k] = copy.deepcopy(ucfg[k])
    c.update({"_class_name": "ControlNetModel", "_diffusers_version": DIFFUSERS,
              "conditioning_channels": 3, "conditioning_embedding_out_channels": list(emb),
              "controlnet_conditioning_channel_order": "rgb", "global_pool_conditions": False})
    return dict(sorted(c.items()))


def vae_config(kind="vq", block_out=(32, 64, 128, 128), layers=1, latent=4, n_embed=256,
               sample_size=128, scaling_factor=1.0):
    n = len(block_out)
    c = {"_diffusers_version": DIFFUSERS, "act_fn": "silu", "block_out_channels": list(block_out),
         "down_block_types": ["DownEncoderBlock2D"] * n, "in_channels": 3,
         "latent_channels": latent, "layers_per_block": layers, "norm_num_groups": 32,
         "out_channels": 3, "sample_size": sample_size, "scaling_factor": scaling_factor,
         "up_block_types": ["UpDecoderBlock2D"] * n}
    if kind == "vq":
        c.update({"_class_name": "VQModel", "force_upcast": False, "lookup_from_codebook": False,
                  "mid_block_add_attention": True, "norm_type": "group",
                  "num_vq_embeddings": n_embed, "vq_embed_dim": latent})
    else:
        c.update({"_class_name": "AutoencoderKL", "force_upcast": True, "latents_mean": None,
                  "latents_std": None})
    return dict(sorted(c.items()))


SCHEDULER = {"_class_name": "PNDMScheduler", "_diffusers_version": DIFFUSERS,
             "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
             "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon",
             "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
             "timestep_spacing": "leading", "trained_betas": None}


def make_vae(cfg):
    return models.VQModel(cfg) if cfg["_class_name"] == "VQModel" else models.AutoencoderKL(cfg)


def _json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def _weights(path, module, dtype):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    st_io.save(path, module.state_dict(), dtype=dtype, metadata={"format": "pt"})


def export(out, tok, text, unet, vae, controlnet=None, dtype="F16"):
    """Write the diffusers folder `out` (controlnet/ inside it when given)."""
    null = [None, None]
    _json(os.path.join(out, "model_index.json"), {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": DIFFUSERS,
        "feature_extractor": null, "image_encoder": null, "requires_safety_checker": False,
        "safety_checker": null, "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", vae.config["_class_name"]]})
    _json(os.path.join(out, "scheduler", "scheduler_config.json"), SCHEDULER)
    tok.save(os.path.join(out, "tokenizer"))
    _json(os.path.join(out, "text_encoder", "config.json"), text.config)
    _weights(os.path.join(out, "text_encoder", "model.safetensors"), text, dtype)
    for name, m in (("unet", unet), ("vae", vae), ("controlnet", controlnet)):
        if m is None:
            continue
        _json(os.path.join(out, name, "config.json"), m.config)
        _weights(os.path.join(out, name, "diffusion_pytorch_model.safetensors"), m, dtype)


def _load(module, path):
    sd = {k: torch.from_numpy(v.astype("float32")) for k, v in st_io.load(path).items()}
    module.load_state_dict(sd, strict=True)
    return module.eval()


def load_export(d):
    """-> dict(tok, text, unet, vae, controlnet or None), float32 modules from an export."""
    import tokenizer
    def rd(*p):
        with open(os.path.join(d, *p)) as f:
            return json.load(f)

    out = {"tok": tokenizer.Tokenizer.from_dir(os.path.join(d, "tokenizer"))}
    out["text"] = _load(models.CLIPTextModel(rd("text_encoder", "config.json")),
                        os.path.join(d, "text_encoder", "model.safetensors"))
    out["unet"] = _load(models.UNet2DConditionModel(rd("unet", "config.json")),
                        os.path.join(d, "unet", "diffusion_pytorch_model.safetensors"))
    out["vae"] = _load(make_vae(rd("vae", "config.json")),
                       os.path.join(d, "vae", "diffusion_pytorch_model.safetensors"))
    out["controlnet"] = None
    if os.path.exists(os.path.join(d, "controlnet", "config.json")):
        out["controlnet"] = _load(models.ControlNetModel(rd("controlnet", "config.json")),
                                  os.path.join(d, "controlnet",
                                               "diffusion_pytorch_model.safetensors"))
    return out
