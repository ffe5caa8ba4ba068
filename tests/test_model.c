/* test_model.c: model loading (engine/model.c) and the CompVis name translators
 * (engine/compvis.c).
 *
 * - The translators against name pairs written out by hand from SD 1.5's and ControlNet's
 *   published key lists and from the tiny model's layout (independent of compvis.c's code).
 * - tests/data/models/tiny-sd and tiny-ldm-vq load from their folders with the right info.
 * - A single CompVis-named file built from tiny-sd (VAE attention stored as 1x1 convs, as
 *   CompVis does) loads to the same configuration and bit-identical weights and text-encoder
 *   output as the folder.
 * - Missing, corrupt, pickled and incomplete inputs fail with the right status and a message
 *   naming the file.
 */
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "st_write.h"
#include "compvis.h"
#include "model.h"

#define TINY SD_TEST_DATA "/models/tiny-sd"
static char tmpdir[64];


/* ---- translators against hand-written pairs ---- */

static void check_pairs(sd__wname_fn fn, void *map, const char *const pairs[][2], size_t n) {
  for (size_t i = 0; i < n; i++) {
    char out[256] = "";
    int rc = fn(map, pairs[i][0], out, sizeof out);
    if (pairs[i][1]) {
      CHECK_INT(rc, 0);
      CHECK_STR(out, pairs[i][1]);
    } else {
      if (rc == 0) fprintf(stderr, "  %s should have no counterpart, got %s\n", pairs[i][0], out);
      CHECK(rc != 0);
    }
  }
}

/* An in-memory safetensors holding empty tensors with the given names. */
static unsigned char *skeleton_bytes;
static sd_safetensors *skeleton(const char *const *names, size_t n) {
  free(skeleton_bytes);
  size_t cap = 1 << 16, len = 0;
  char *h = malloc(cap);
  len += (size_t)snprintf(h, cap, "{");
  for (size_t i = 0; i < n; i++)
    len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[0],"
                            "\"data_offsets\":[0,0]}", i ? "," : "", names[i]);
  len += (size_t)snprintf(h + len, cap - len, "}");
  unsigned char *b = malloc(8 + len);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)len >> (8 * i));
  memcpy(b + 8, h, len);
  free(h);
  skeleton_bytes = b; /* kept alive while the file is open; freed by the next call */
  sd_safetensors *st = NULL;
  sd_error e = {0};
  CHECK_INT(sd__st_open_memory(b, 8 + len, "skeleton", &st, &e), SD_OK);
  if (e.status) fprintf(stderr, "%s\n", e.msg);
  /* The header was parsed into the tensor list; the data pointers are never read. */
  return st;
}

static void test_translators_sd15(void) {
  /* The keys of SD 1.5's UNet that reveal its layout (levels 4, 2 ResBlocks per level,
   * attention at the three outer levels), as published in v1-5-pruned.safetensors. */
  char names[64][96];
  const char *ptrs[64];
  size_t n = 0;
  for (int b = 0; b < 12; b++) snprintf(names[n++], 96, "model.diffusion_model.input_blocks.%d.0.%s", b,
                                        (b == 3 || b == 6 || b == 9) ? "op.weight" : "in_layers.2.weight");
  for (int b = 1; b <= 8; b++)
    if (b % 3 != 0) snprintf(names[n++], 96, "model.diffusion_model.input_blocks.%d.1.proj_in.weight", b);
  for (int b = 0; b < 12; b++) snprintf(names[n++], 96, "model.diffusion_model.output_blocks.%d.0.in_layers.2.weight", b);
  for (int b = 3; b < 12; b++) snprintf(names[n++], 96, "model.diffusion_model.output_blocks.%d.1.proj_in.weight", b);
  snprintf(names[n++], 96, "model.diffusion_model.output_blocks.2.1.conv.weight");
  snprintf(names[n++], 96, "model.diffusion_model.output_blocks.5.2.conv.weight");
  snprintf(names[n++], 96, "model.diffusion_model.output_blocks.8.2.conv.weight");
  for (size_t i = 0; i < n; i++) ptrs[i] = names[i];
  sd_safetensors *st = skeleton(ptrs, n);
  if (!st) return;
  sd__cv_unet_map m;
  sd_error e = {0};
  CHECK_INT(sd__cv_unet_map_init(st, SD_CV_UNET_PREFIX, &m, &e), SD_OK);
  CHECK_INT(m.levels, 4);
  CHECK_INT(m.layers_per_block, 2);
  CHECK(m.down_attn[0] && m.down_attn[1] && m.down_attn[2] && !m.down_attn[3]);
  CHECK(!m.up_attn[0] && m.up_attn[1] && m.up_attn[2] && m.up_attn[3]);
  static const char *const pairs[][2] = {
      {"time_embedding.linear_1.weight", "time_embed.0.weight"},
      {"time_embedding.linear_2.bias", "time_embed.2.bias"},
      {"conv_in.weight", "input_blocks.0.0.weight"},
      {"conv_norm_out.bias", "out.0.bias"},
      {"conv_out.weight", "out.2.weight"},
      {"down_blocks.0.resnets.0.norm1.weight", "input_blocks.1.0.in_layers.0.weight"},
      {"down_blocks.0.resnets.1.conv1.weight", "input_blocks.2.0.in_layers.2.weight"},
      {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
       "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"},
      {"down_blocks.0.attentions.1.proj_out.bias", "input_blocks.2.1.proj_out.bias"},
      {"down_blocks.0.downsamplers.0.conv.weight", "input_blocks.3.0.op.weight"},
      {"down_blocks.1.resnets.0.conv_shortcut.weight", "input_blocks.4.0.skip_connection.weight"},
      {"down_blocks.2.resnets.0.time_emb_proj.weight", "input_blocks.7.0.emb_layers.1.weight"},
      {"down_blocks.2.downsamplers.0.conv.bias", "input_blocks.9.0.op.bias"},
      {"down_blocks.3.resnets.1.norm2.weight", "input_blocks.11.0.out_layers.0.weight"},
      {"mid_block.resnets.0.conv2.weight", "middle_block.0.out_layers.3.weight"},
      {"mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
       "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight"},
      {"mid_block.resnets.1.norm1.bias", "middle_block.2.in_layers.0.bias"},
      {"up_blocks.0.resnets.0.conv2.weight", "output_blocks.0.0.out_layers.3.weight"},
      {"up_blocks.0.resnets.2.conv_shortcut.bias", "output_blocks.2.0.skip_connection.bias"},
      {"up_blocks.0.upsamplers.0.conv.weight", "output_blocks.2.1.conv.weight"},
      {"up_blocks.1.attentions.0.norm.weight", "output_blocks.3.1.norm.weight"},
      {"up_blocks.1.upsamplers.0.conv.weight", "output_blocks.5.2.conv.weight"},
      {"up_blocks.2.upsamplers.0.conv.bias", "output_blocks.8.2.conv.bias"},
      {"up_blocks.3.attentions.2.proj_out.weight", "output_blocks.11.1.proj_out.weight"},
      {"up_blocks.3.resnets.2.time_emb_proj.bias", "output_blocks.11.0.emb_layers.1.bias"},
      /* no counterpart */
      {"down_blocks.3.attentions.0.proj_in.weight", NULL},
      {"down_blocks.3.downsamplers.0.conv.weight", NULL},
      {"down_blocks.0.resnets.2.conv1.weight", NULL},
      {"down_blocks.4.resnets.0.conv1.weight", NULL},
      {"up_blocks.0.attentions.0.proj_in.weight", NULL},
      {"up_blocks.3.upsamplers.0.conv.weight", NULL},
      {"up_blocks.0.resnets.3.conv1.weight", NULL},
      {"mid_block.resnets.2.conv1.weight", NULL},
      {"down_blocks.0.resnets.0.bogus.weight", NULL},
      {"down_blocks.x.resnets.0.conv1.weight", NULL},
      {"something_else.weight", NULL},
  };
  check_pairs(sd__cv_unet_name, &m, pairs, sizeof pairs / sizeof pairs[0]);
  sd__st_close(st);

  /* ControlNet (control_v11p_sd15_canny's keys): encoder half, hint block, zero convs. */
  n = 0;
  for (int b = 0; b < 12; b++) snprintf(names[n++], 96, "control_model.input_blocks.%d.0.%s", b,
                                        (b == 3 || b == 6 || b == 9) ? "op.weight" : "in_layers.2.weight");
  for (int b = 0; b <= 14; b += 2) snprintf(names[n++], 96, "control_model.input_hint_block.%d.weight", b);
  snprintf(names[n++], 96, "control_model.zero_convs.11.0.weight");
  snprintf(names[n++], 96, "control_model.middle_block_out.0.weight");
  for (size_t i = 0; i < n; i++) ptrs[i] = names[i];
  st = skeleton(ptrs, n);
  if (!st) return;
  CHECK_INT(sd__cv_unet_map_init(st, SD_CV_CONTROL_PREFIX, &m, &e), SD_OK);
  CHECK_INT(m.has_decoder, 0);
  CHECK_INT(m.hint_blocks, 6);
  static const char *const cpairs[][2] = {
      {"controlnet_cond_embedding.conv_in.weight", "input_hint_block.0.weight"},
      {"controlnet_cond_embedding.blocks.0.bias", "input_hint_block.2.bias"},
      {"controlnet_cond_embedding.blocks.5.weight", "input_hint_block.12.weight"},
      {"controlnet_cond_embedding.conv_out.weight", "input_hint_block.14.weight"},
      {"controlnet_down_blocks.0.weight", "zero_convs.0.0.weight"},
      {"controlnet_down_blocks.11.bias", "zero_convs.11.0.bias"},
      {"controlnet_mid_block.weight", "middle_block_out.0.weight"},
      {"down_blocks.1.downsamplers.0.conv.weight", "input_blocks.6.0.op.weight"},
      {"controlnet_down_blocks.12.weight", NULL},
      {"controlnet_cond_embedding.blocks.6.weight", NULL},
      {"up_blocks.0.resnets.0.conv1.weight", NULL},
      {"conv_out.weight", NULL},
  };
  check_pairs(sd__cv_unet_name, &m, cpairs, sizeof cpairs / sizeof cpairs[0]);
  sd__st_close(st);

  /* SD's VAE: 4 levels, decoder.up numbered from the deepest. */
  sd__cv_vae_map vm = {4};
  static const char *const vpairs[][2] = {
      {"encoder.conv_in.weight", "encoder.conv_in.weight"},
      {"encoder.down_blocks.0.resnets.1.norm2.bias", "encoder.down.0.block.1.norm2.bias"},
      {"encoder.down_blocks.1.resnets.0.conv_shortcut.weight", "encoder.down.1.block.0.nin_shortcut.weight"},
      {"encoder.down_blocks.2.downsamplers.0.conv.weight", "encoder.down.2.downsample.conv.weight"},
      {"encoder.mid_block.resnets.0.conv1.weight", "encoder.mid.block_1.conv1.weight"},
      {"encoder.mid_block.resnets.1.norm1.weight", "encoder.mid.block_2.norm1.weight"},
      {"encoder.mid_block.attentions.0.group_norm.weight", "encoder.mid.attn_1.norm.weight"},
      {"encoder.mid_block.attentions.0.to_q.weight", "encoder.mid.attn_1.q.weight"},
      {"decoder.mid_block.attentions.0.to_v.bias", "decoder.mid.attn_1.v.bias"},
      {"decoder.mid_block.attentions.0.to_out.0.weight", "decoder.mid.attn_1.proj_out.weight"},
      {"encoder.conv_norm_out.weight", "encoder.norm_out.weight"},
      {"decoder.conv_norm_out.bias", "decoder.norm_out.bias"},
      {"decoder.up_blocks.0.resnets.2.conv1.weight", "decoder.up.3.block.2.conv1.weight"},
      {"decoder.up_blocks.0.upsamplers.0.conv.weight", "decoder.up.3.upsample.conv.weight"},
      {"decoder.up_blocks.2.resnets.0.conv_shortcut.bias", "decoder.up.1.block.0.nin_shortcut.bias"},
      {"decoder.up_blocks.3.resnets.0.conv2.weight", "decoder.up.0.block.0.conv2.weight"},
      {"quant_conv.weight", "quant_conv.weight"},
      {"post_quant_conv.bias", "post_quant_conv.bias"},
      {"quantize.embedding.weight", "quantize.embedding.weight"},
      {"decoder.up_blocks.4.resnets.0.conv1.weight", NULL},
      {"encoder.down_blocks.4.resnets.0.conv1.weight", NULL},
      {"decoder.mid_block.resnets.2.conv1.weight", NULL},
      {"decoder.mid_block.attentions.0.query.weight", NULL},
  };
  check_pairs(sd__cv_vae_name, &vm, vpairs, sizeof vpairs / sizeof vpairs[0]);

  /* Text encoder: with and without the text_model level. */
  sd__cv_clip_map cm = {0};
  static const char *const tpairs[][2] = {
      {"text_model.encoder.layers.0.self_attn.q_proj.weight", "text_model.encoder.layers.0.self_attn.q_proj.weight"}};
  check_pairs(sd__cv_clip_name, &cm, tpairs, 1);
  cm.strip_text_model = 1;
  static const char *const tpairs2[][2] = {
      {"text_model.final_layer_norm.weight", "final_layer_norm.weight"}};
  check_pairs(sd__cv_clip_name, &cm, tpairs2, 1);
}

/* ---- building a CompVis single file from the tiny-sd folder ---- */

/* tiny-sd's UNet: 2 levels, 1 ResBlock per level, attention in down level 0 and up block 1. */
static const char *const tiny_pairs[][2] = {
    {"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
     "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"},
    {"down_blocks.0.downsamplers.0.conv.weight", "input_blocks.2.0.op.weight"},
    {"down_blocks.1.resnets.0.conv_shortcut.weight", "input_blocks.3.0.skip_connection.weight"},
    {"up_blocks.0.upsamplers.0.conv.bias", "output_blocks.1.1.conv.bias"},
    {"up_blocks.1.attentions.1.proj_out.weight", "output_blocks.3.1.proj_out.weight"},
    {"up_blocks.1.resnets.1.time_emb_proj.weight", "output_blocks.3.0.emb_layers.1.weight"},
    {"mid_block.resnets.1.norm2.weight", "middle_block.2.out_layers.0.weight"},
    {"down_blocks.1.attentions.0.proj_in.weight", NULL},
};

typedef struct part {
  const char *file, *prefix;
  sd__wname_fn fn;
  void *map;
} part;

/* Rename every tensor of the three component files into one CompVis-named file. */
static int build_single(const char *out_path, int old_text_layout) {
  sd__cv_unet_map um = {.levels = 2, .layers_per_block = 1, .down_attn = {1, 0},
                        .up_attn = {0, 1}, .has_decoder = 1};
  sd__cv_vae_map vm = {4};
  check_pairs(sd__cv_unet_name, &um, tiny_pairs, sizeof tiny_pairs / sizeof tiny_pairs[0]);
  part parts[3] = {{TINY "/unet/diffusion_pytorch_model.safetensors", SD_CV_UNET_PREFIX, sd__cv_unet_name, &um},
                   {TINY "/vae/diffusion_pytorch_model.safetensors", SD_CV_VAE_PREFIX, sd__cv_vae_name, &vm},
                   {TINY "/text_encoder/model.safetensors", SD_CV_CLIP_PREFIX, NULL, NULL}};
  sd_safetensors *files[3] = {0};
  wtensor *all = calloc(1024, sizeof *all);
  size_t n = 0;
  int rc = -1;
  for (int p = 0; p < 3; p++) {
    sd_error e = {0};
    if (sd__st_open(parts[p].file, &files[p], &e) != SD_OK) {
      fprintf(stderr, "%s\n", e.msg);
      goto out;
    }
    for (size_t i = 0; i < files[p]->count && n < 1024; i++) {
      const sd_st_tensor *t = &files[p]->tensors[i];
      wtensor *w = &all[n++];
      size_t pl = (size_t)snprintf(w->name, sizeof w->name, "%s", parts[p].prefix);
      const char *name = t->name;
      if (!parts[p].fn && old_text_layout && strncmp(name, "text_model.", 11) == 0)
        name += 11; /* the older layout */
      if (parts[p].fn) {
        if (parts[p].fn(parts[p].map, t->name, w->name + pl, sizeof w->name - pl) != 0) {
          fprintf(stderr, "no CompVis name for %s\n", t->name);
          CHECK(0);
          goto out;
        }
      } else {
        snprintf(w->name + pl, sizeof w->name - pl, "%s", name);
      }
      w->dtype = sd__dtype_name(t->dtype);
      w->ndim = t->ndim;
      memcpy(w->shape, t->shape, sizeof t->shape);
      /* CompVis's VAE attention projections are 1x1 convolutions. */
      if (p == 1 && strstr(t->name, "attentions.0.to_") && t->ndim == 2) {
        w->ndim = 4;
        w->shape[2] = w->shape[3] = 1;
      }
      w->data = t->data;
      w->nbytes = t->nbytes;
    }
  }
  rc = write_st(out_path, all, n);
out:
  for (int p = 0; p < 3; p++) sd__st_close(files[p]);
  free(all);
  return rc;
}

static sd__wsrc *source(const sd_model *m, const char *label) {
  for (int i = 0; i < m->nsources; i++)
    if (strcmp(sd__wsrc_label(m->sources[i]), label) == 0) return m->sources[i];
  return NULL;
}

/* Every tensor of a component file is bit-identical through both models' sources. */
static void compare_sources(const sd_model *a, const sd_model *b, const char *label,
                            const char *file) {
  sd__wsrc *sa = source(a, label), *sb = source(b, label);
  CHECK(sa && sb);
  if (!sa || !sb) return;
  const sd_safetensors *f = sd__wsrc_file(sa);
  size_t same = 0;
  for (size_t i = 0; i < f->count; i++) {
    const sd_st_tensor *t = &f->tensors[i];
    int64_t s1[8], s2[8];
    memcpy(s1, t->shape, sizeof s1);
    memcpy(s2, t->shape, sizeof s2);
    sd_error e = {0};
    const float *x = sd__wsrc_get(sa, t->name, t->ndim, s1, &e);
    const float *y = sd__wsrc_get(sb, t->name, t->ndim, s2, &e);
    if (x && y && memcmp(x, y, t->nbytes) == 0) same++;
    else fprintf(stderr, "  %s %s differs: %s\n", label, t->name, e.msg);
  }
  if (same != f->count) fprintf(stderr, "  %s (%s): %zu of %zu identical\n", label, file, same, f->count);
  CHECK_INT(same, f->count);
}

/* The text encoder built from b's weights with a's configuration gives bit-identical
 * last_hidden_state. (A checkpoint does not store the head count: inference uses CLIP's
 * 64-wide heads, which the tiny model, 32 wide with 4 heads, does not follow.) */
static void compare_text_encoders(const sd_model *a, const sd_model *b) {
  int32_t ids[SD_TOKENS];
  char msg[SD_ERRMSG_MAX];
  CHECK_INT(sd_model_tokenize(a, "a red circle", ids, msg), SD_OK);
  const sd__clip_config *ca = sd__clip_get_config(a->clip), *cb = sd__clip_get_config(b->clip);
  CHECK_INT(ca->hidden, cb->hidden);
  CHECK_INT(ca->layers, cb->layers);
  CHECK_INT(ca->intermediate, cb->intermediate);
  CHECK_INT(ca->vocab_size, cb->vocab_size);
  CHECK_INT(ca->max_positions, cb->max_positions);
  CHECK_INT(cb->heads, cb->hidden / 64 > 0 ? cb->hidden / 64 : 1);
  sd__clip *bc = NULL;
  sd_error e = {0};
  CHECK_INT(sd__clip_load(source(b, "text encoder"), ca, &bc, &e), SD_OK);
  if (!bc) return;
  size_t n = (size_t)SD_TOKENS * (size_t)ca->hidden;
  float *ya = calloc(n, sizeof *ya), *yb = calloc(n, sizeof *yb);
  sd__ctx ctx = {.threads = 1, .arena = sd__arena_create(1 << 20)};
  CHECK_INT(sd__clip_forward(a->clip, &ctx, ids, SD_TOKENS, ya), SD_OK);
  CHECK_INT(sd__clip_forward(bc, &ctx, ids, SD_TOKENS, yb), SD_OK);
  CHECK(memcmp(ya, yb, n * sizeof(float)) == 0);
  CHECK(check_std(ya, n) > 0);
  sd__arena_destroy(ctx.arena);
  sd__clip_destroy(bc);
  free(ya);
  free(yb);
}

static void compare_configs(const sd_model *a, const sd_model *b) {
  const sd__unet_config *ua = sd__unet_get_config(a->unet), *ub = sd__unet_get_config(b->unet);
  CHECK_INT(ua->levels, ub->levels);
  CHECK_INT(ua->layers_per_block, ub->layers_per_block);
  for (int i = 0; i < ua->levels; i++) {
    CHECK_INT(ua->block_out_channels[i], ub->block_out_channels[i]);
    CHECK_INT(ua->down_has_attn[i], ub->down_has_attn[i]);
    CHECK_INT(ua->up_has_attn[i], ub->up_has_attn[i]);
    CHECK_INT(ua->heads[i], ub->heads[i]);
  }
  CHECK_INT(ua->cross_attention_dim, ub->cross_attention_dim);
  CHECK_INT(ua->in_channels, ub->in_channels);
  const sd__vae_config *va = sd__vae_get_config(a->vae), *vb = sd__vae_get_config(b->vae);
  CHECK_INT(va->levels, vb->levels);
  CHECK_INT(va->layers_per_block, vb->layers_per_block);
  CHECK_INT(va->latent_channels, vb->latent_channels);
  for (int i = 0; i < va->levels; i++) CHECK_INT(va->block_out_channels[i], vb->block_out_channels[i]);
  CHECK_NEAR(va->scaling_factor, vb->scaling_factor, 0);
  CHECK_INT(b->cv_unet.levels, 2); /* inferred from the file's keys */
  CHECK_INT(b->cv_unet.layers_per_block, 1);
  CHECK(b->cv_unet.down_attn[0] && !b->cv_unet.down_attn[1]);
  CHECK(!b->cv_unet.up_attn[0] && b->cv_unet.up_attn[1]);
  CHECK_INT(b->cv_vae.levels, 4);
}

static int logged;
static void count_log(void *user, sd_log_level lvl, const char *msg) {
  (void)user, (void)lvl, (void)msg;
  logged++;
}

static void test_folders(sd_model **tiny) {
  char msg[SD_ERRMSG_MAX];
  sd_load_options opt;
  sd_load_options_init(&opt);
  opt.log = count_log;
  sd_model *m = NULL;
  sd_status st = sd_model_load(TINY, &opt, &m, msg);
  if (st != SD_OK) fprintf(stderr, "tiny-sd: %s\n", msg);
  CHECK_INT(st, SD_OK);
  if (m) {
    sd_model_info info;
    sd_model_get_info(m, &info);
    CHECK_STR(info.name, "tiny-sd");
    CHECK_INT(info.native_width, 64); /* sample_size 8 x VAE factor 8 */
    CHECK_INT(info.native_height, 64);
    CHECK_INT(info.latent_channels, 4);
    CHECK_INT(info.text_hidden, 32);
    CHECK_STR(info.vae_kind, "kl");
    CHECK_INT(m->sched.num_train_timesteps, 1000);
    CHECK_INT(m->sched.steps_offset, 1);
    CHECK(logged > 0);
    int32_t ids[SD_TOKENS];
    CHECK_INT(sd_model_tokenize(m, "", ids, msg), SD_OK);
    CHECK_INT(ids[0], 1512); /* BOS, then EOS padding (GOLDEN.md) */
    CHECK_INT(ids[1], 1513);
    CHECK_INT(ids[76], 1513);
  }
  *tiny = m;
  m = NULL;
  st = sd_model_load(SD_TEST_DATA "/models/tiny-ldm-vq/", NULL, &m, msg);
  if (st != SD_OK) fprintf(stderr, "tiny-ldm-vq: %s\n", msg);
  CHECK_INT(st, SD_OK);
  if (m) {
    sd_model_info info;
    sd_model_get_info(m, &info);
    CHECK_STR(info.name, "tiny-ldm-vq");
    CHECK_STR(info.vae_kind, "vq");
  }
  sd_model_destroy(m);
  sd_model_destroy(NULL);
}

static void expect_fail(const char *path, const sd_load_options *opt, sd_status want,
                        const char *needle1, const char *needle2) {
  char msg[SD_ERRMSG_MAX] = "";
  sd_model *m = (sd_model *)1;
  sd_status st = sd_model_load(path, opt, &m, msg);
  if (st != want) fprintf(stderr, "  %s: got %d: %s\n", path, st, msg);
  CHECK_INT(st, want);
  CHECK(m == NULL);
  if (needle1 && !strstr(msg, needle1)) {
    fprintf(stderr, "  %s: message lacks \"%s\": %s\n", path, needle1, msg);
    CHECK(0);
  }
  if (needle2 && !strstr(msg, needle2)) {
    fprintf(stderr, "  %s: message lacks \"%s\": %s\n", path, needle2, msg);
    CHECK(0);
  }
  if (st == SD_OK) sd_model_destroy(m);
}

static void tmp_path(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static void test_single_file(const sd_model *tiny) {
  char path[256], tok[256], msg[SD_ERRMSG_MAX];
  tmp_path(path, sizeof path, "tiny-cv.safetensors");
  CHECK_INT(build_single(path, 0), 0);
  /* No tokenizer beside it: the message says what to pass. */
  expect_fail(path, NULL, SD_ERR_MISSING, "--tokenizer", path);
  sd_load_options opt;
  sd_load_options_init(&opt);
  opt.tokenizer_dir = TINY "/tokenizer";
  sd_model *m = NULL;
  sd_status st = sd_model_load(path, &opt, &m, msg);
  if (st != SD_OK) fprintf(stderr, "single file: %s\n", msg);
  CHECK_INT(st, SD_OK);
  if (m && tiny) {
    sd_model_info info;
    sd_model_get_info(m, &info);
    CHECK_STR(info.name, "tiny-cv");
    CHECK_INT(info.text_hidden, 32);
    CHECK_STR(info.vae_kind, "kl");
    compare_configs(tiny, m);
    compare_sources(tiny, m, "unet", "unet");
    compare_sources(tiny, m, "vae", "vae");
    compare_sources(tiny, m, "text encoder", "text_encoder");
    compare_text_encoders(tiny, m);
  }
  sd_model_destroy(m);

  /* The older text-encoder layout (no text_model. level), tokenizer/ found beside the file. */
  tmp_path(path, sizeof path, "old-layout.safetensors");
  CHECK_INT(build_single(path, 1), 0);
  tmp_path(tok, sizeof tok, "tokenizer");
  CHECK_INT(symlink(TINY "/tokenizer", tok), 0);
  m = NULL;
  st = sd_model_load(path, NULL, &m, msg);
  if (st != SD_OK) fprintf(stderr, "old layout: %s\n", msg);
  CHECK_INT(st, SD_OK);
  if (m && tiny) compare_text_encoders(tiny, m);
  sd_model_destroy(m);
}

static void copy_truncated(const char *src, const char *dst, long keep) {
  FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
  CHECK(in && out);
  if (!in || !out) return;
  char buf[4096];
  size_t n;
  long left = keep;
  while (left > 0 && (n = fread(buf, 1, (size_t)(left < 4096 ? left : 4096), in)) > 0) {
    fwrite(buf, 1, n, out);
    left -= (long)n;
  }
  fclose(in);
  fclose(out);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

/* A copy of tiny-sd (symlinks) with one part replaced. */
static void make_variant(const char *dir, const char *replaced_part) {
  static const char *parts[] = {"model_index.json", "scheduler", "text_encoder", "tokenizer",
                                "unet", "vae"};
  mkdir(dir, 0755);
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    char src[512], dst[512];
    snprintf(src, sizeof src, "%s/%s", TINY, parts[i]);
    snprintf(dst, sizeof dst, "%s/%s", dir, parts[i]);
    if (strcmp(parts[i], replaced_part) == 0) mkdir(dst, 0755);
    else CHECK_INT(symlink(src, dst), 0);
  }
}

static void test_errors(void) {
  char path[256], dir[256], file[512];
  sd_load_options opt;
  sd_load_options_init(&opt);
  opt.tokenizer_dir = TINY "/tokenizer";
  expect_fail("/nonexistent/model", NULL, SD_ERR_IO, "/nonexistent/model", NULL);
  expect_fail(TINY "/unet", NULL, SD_ERR_MISSING, "model_index.json", NULL);
  expect_fail(TINY "/model_index.json", NULL, SD_ERR_INVALID, "model_index.json", NULL);
  /* A diffusers component file alone is not a model. */
  expect_fail(TINY "/unet/diffusion_pytorch_model.safetensors", &opt, SD_ERR_UNSUPPORTED,
              "model folder", NULL);

  tmp_path(path, sizeof path, "truncated.safetensors");
  copy_truncated(TINY "/unet/diffusion_pytorch_model.safetensors", path, 5000);
  expect_fail(path, &opt, SD_ERR_FORMAT, path, NULL);

  tmp_path(path, sizeof path, "model.ckpt");
  write_text(path, "\x80\x02}q\x00(X\x0a\x00\x00\x00state_dictq");
  expect_fail(path, &opt, SD_ERR_UNSUPPORTED, path, ".safetensors");
  tmp_path(path, sizeof path, "pickled.safetensors"); /* the content decides, not the name */
  write_text(path, "PK\x03\x04 zip archive");
  expect_fail(path, &opt, SD_ERR_UNSUPPORTED, "convert", NULL);
  tmp_path(path, sizeof path, "notes.txt");
  write_text(path, "hello");
  expect_fail(path, &opt, SD_ERR_INVALID, path, NULL);

  /* Folder variants: corrupt config, missing weights, a tensor missing, a wrong shape. */
  tmp_path(dir, sizeof dir, "bad-config");
  make_variant(dir, "unet");
  snprintf(file, sizeof file, "%s/unet/config.json", dir);
  write_text(file, "{\"block_out_channels\": [32, 64,]}");
  expect_fail(dir, NULL, SD_ERR_FORMAT, file, NULL);

  tmp_path(dir, sizeof dir, "no-weights");
  make_variant(dir, "vae");
  snprintf(file, sizeof file, "%s/vae/config.json", dir);
  CHECK_INT(symlink(TINY "/vae/config.json", file), 0);
  snprintf(file, sizeof file, "%s/vae/diffusion_pytorch_model.safetensors", dir);
  expect_fail(dir, NULL, SD_ERR_IO, file, NULL);

  /* The UNet file without one tensor, then with a config that asks for other shapes. */
  tmp_path(dir, sizeof dir, "missing-tensor");
  make_variant(dir, "unet");
  snprintf(file, sizeof file, "%s/unet/config.json", dir);
  CHECK_INT(symlink(TINY "/unet/config.json", file), 0);
  sd_safetensors *f = NULL;
  sd_error e = {0};
  CHECK_INT(sd__st_open(TINY "/unet/diffusion_pytorch_model.safetensors", &f, &e), SD_OK);
  if (f) {
    wtensor *ts = calloc(f->count, sizeof *ts);
    size_t n = 0;
    for (size_t i = 0; i < f->count; i++) {
      const sd_st_tensor *t = &f->tensors[i];
      if (strcmp(t->name, "up_blocks.1.resnets.0.conv2.weight") == 0) continue;
      snprintf(ts[n].name, sizeof ts[n].name, "%s", t->name);
      ts[n].dtype = sd__dtype_name(t->dtype);
      ts[n].ndim = t->ndim;
      memcpy(ts[n].shape, t->shape, sizeof t->shape);
      ts[n].data = t->data;
      ts[n].nbytes = t->nbytes;
      n++;
    }
    snprintf(file, sizeof file, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    CHECK_INT(write_st(file, ts, n), 0);
    expect_fail(dir, NULL, SD_ERR_MISSING, "up_blocks.1.resnets.0.conv2.weight", file);
    free(ts);
    sd__st_close(f);
  }

  tmp_path(dir, sizeof dir, "wrong-shape");
  make_variant(dir, "unet");
  snprintf(file, sizeof file, "%s/unet/diffusion_pytorch_model.safetensors", dir);
  CHECK_INT(symlink(TINY "/unet/diffusion_pytorch_model.safetensors", file), 0);
  char *cfg;
  size_t len;
  CHECK_INT(sd__read_file(TINY "/unet/config.json", 1 << 20, &cfg, &len, &e), SD_OK);
  if (cfg) {
    char *p = strstr(cfg, "\"cross_attention_dim\": 32");
    CHECK(p != NULL);
    if (p) memcpy(p, "\"cross_attention_dim\": 48", 25);
    snprintf(file, sizeof file, "%s/unet/config.json", dir);
    write_text(file, cfg);
    free(cfg);
    expect_fail(dir, NULL, SD_ERR_SHAPE, "has shape", "unet");
  }
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/sd_test_model_XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  test_translators_sd15();
  sd_model *tiny = NULL;
  test_folders(&tiny);
  test_single_file(tiny);
  test_errors();
  sd_model_destroy(tiny);
  free(skeleton_bytes);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return check_exit();
}
