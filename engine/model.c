/* model.c: sd_model_load and friends: turn a diffusers folder or a single CompVis-named
 * .safetensors file into an immutable sd_model.
 *
 * A folder gives every architecture parameter in its parts' config.json files; a single file
 * gives only tensors, so its configs are inferred from shapes (through the CompVis name
 * translators of compvis.c), the scheduler takes SD 1.5's defaults and the tokenizer comes
 * from opt->tokenizer_dir or a tokenizer/ folder beside the file. Pickled .ckpt files are
 * refused (loading them can run code). Every error names the file it is about. This file does
 * no numerical work: the networks' own loaders bind the weights.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model.h"

#define CONFIG_MAX_BYTES (16u << 20)

void sd_load_options_init(sd_load_options *opt) {
  memset(opt, 0, sizeof *opt);
}

void sd__model_log(const sd_model *m, sd_log_level lvl, const char *fmt, ...) {
  if (!m || !m->log) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  m->log(m->log_user, lvl, buf);
}

/* Move a local error into err, prefixed with the file it concerns unless it names it already. */
static sd_status wrap(sd_error *err, const sd_error *local, const char *path) {
  if (local->status == SD_OK) return SD_OK;
  if (path && !strstr(local->msg, path))
    return sd__err(err, local->status, "%s: %s", path, local->msg);
  return sd__err(err, local->status, "%s", local->msg);
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  if (a < b) return 0;
  for (size_t i = 0; i < b; i++) {
    char c = s[a - b + i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c != suffix[i]) return 0;
  }
  return 1;
}

/* Read and parse a JSON file; errors name the file. */
static sd_status read_json(const char *path, sd_json **out, sd_error *err) {
  char *text;
  size_t len;
  sd_error local = {0};
  *out = NULL;
  if (sd__read_file(path, CONFIG_MAX_BYTES, &text, &len, &local) != SD_OK)
    return wrap(err, &local, path);
  sd__json_parse(text, len, out, &local);
  free(text);
  return wrap(err, &local, path);
}

/* dir/name joined, or NULL after recording SD_ERR_NOMEM. */
static char *join(const char *dir, const char *name, sd_error *err) {
  char *p = sd__path_join(dir, name);
  if (!p) sd__err(err, SD_ERR_NOMEM, "out of memory");
  return p;
}

/* Open a weight file as a new source owned by the model. */
static sd_status add_source(sd_model *m, sd_safetensors *file, int own, const char *prefix,
                            sd__wname_fn fn, void *user, const char *label,
                            const sd_load_options *opt, sd__wsrc **out, sd_error *err) {
  if (m->nsources >= SD_MODEL_MAX_FILES) {
    if (own) sd__st_close(file);
    return sd__err(err, SD_ERR_INTERNAL, "too many weight sources");
  }
  sd_status st = sd__wsrc_create(file, own, prefix, fn, user, out, err);
  if (st != SD_OK) {
    if (own) sd__st_close(file);
    return st;
  }
  sd__wsrc_set_label(*out, label);
  sd__wsrc_set_threads(*out, opt->threads);
  m->sources[m->nsources++] = *out;
  return SD_OK;
}

static sd_status open_weights(sd_model *m, const char *dir, const char *rel, const char *label,
                              const sd_load_options *opt, sd__wsrc **out, sd_error *err) {
  char *path = join(dir, rel, err);
  if (!path) return SD_ERR_NOMEM;
  sd_safetensors *f;
  sd_status st = sd__st_open(path, &f, err);
  if (st == SD_OK) st = add_source(m, f, 1, "", NULL, NULL, label, opt, out, err);
  free(path);
  return st;
}

/* Read dir/rel (a config.json) into *j. */
static sd_status open_config(const char *dir, const char *rel, sd_json **j, char **path,
                             sd_error *err) {
  *path = join(dir, rel, err);
  if (!*path) return SD_ERR_NOMEM;
  if (!sd__is_file(*path))
    return sd__err(err, SD_ERR_MISSING, "%s is missing", *path);
  return read_json(*path, j, err);
}

static sd_status load_tokenizer(sd_model *m, const char *dir, sd_error *err) {
  sd_error local = {0};
  sd__tokenizer_load(dir, &m->tok, &local);
  return wrap(err, &local, dir);
}

static sd_status load_folder(sd_model *m, const char *dir, const sd_load_options *opt,
                             sd_error *err) {
  sd_status st;
  sd_json *j = NULL;
  char *path = NULL;
  sd_error local = {0};
  sd__wsrc *src;

  char *index = join(dir, "model_index.json", err);
  if (!index) return SD_ERR_NOMEM;
  if (!sd__is_file(index)) {
    st = sd__err(err, SD_ERR_MISSING,
                 "%s: not a diffusers model folder (no model_index.json) and not a .safetensors "
                 "file", dir);
    free(index);
    return st;
  }
  st = read_json(index, &j, err);
  free(index);
  if (st != SD_OK) return st;
  sd__json_free(j);
  j = NULL;

  /* text encoder */
  if ((st = open_config(dir, "text_encoder/config.json", &j, &path, err)) != SD_OK) goto out;
  sd__clip_config cc;
  sd__clip_config_from_json(j, &cc, &local);
  if ((st = wrap(err, &local, path)) != SD_OK) goto out;
  if ((st = open_weights(m, dir, "text_encoder/model.safetensors", "text encoder", opt, &src,
                         err)) != SD_OK)
    goto out;
  sd__clip_load(src, &cc, &m->clip, &local);
  if ((st = wrap(err, &local, sd__wsrc_file(src)->path)) != SD_OK) goto out;
  sd__json_free(j), j = NULL;
  free(path), path = NULL;

  /* UNet */
  if ((st = open_config(dir, "unet/config.json", &j, &path, err)) != SD_OK) goto out;
  sd__unet_config uc;
  sd__unet_config_from_json(j, &uc, &local);
  if ((st = wrap(err, &local, path)) != SD_OK) goto out;
  if ((st = open_weights(m, dir, "unet/diffusion_pytorch_model.safetensors", "unet", opt, &src,
                         err)) != SD_OK)
    goto out;
  sd__unet_load(src, &uc, &m->unet, &local);
  if ((st = wrap(err, &local, sd__wsrc_file(src)->path)) != SD_OK) goto out;
  sd__json_free(j), j = NULL;
  free(path), path = NULL;

  /* VAE (AutoencoderKL or VQModel, told apart by the config's _class_name) */
  if ((st = open_config(dir, "vae/config.json", &j, &path, err)) != SD_OK) goto out;
  sd__vae_config vc;
  sd__vae_config_from_json(j, &vc, &local);
  if ((st = wrap(err, &local, path)) != SD_OK) goto out;
  if ((st = open_weights(m, dir, "vae/diffusion_pytorch_model.safetensors", "vae", opt, &src,
                         err)) != SD_OK)
    goto out;
  sd__vae_load(src, &vc, &m->vae, &local);
  if ((st = wrap(err, &local, sd__wsrc_file(src)->path)) != SD_OK) goto out;
  sd__json_free(j), j = NULL;
  free(path), path = NULL;

  /* scheduler: the file's keys over SD 1.5's defaults */
  sd__sched_config_default(&m->sched);
  path = join(dir, "scheduler/scheduler_config.json", err);
  if (!path) {
    st = SD_ERR_NOMEM;
    goto out;
  }
  if (sd__is_file(path)) {
    if ((st = read_json(path, &j, err)) != SD_OK) goto out;
    sd__sched_config_from_json(j, &m->sched, &local);
    if ((st = wrap(err, &local, path)) != SD_OK) goto out;
  } else {
    sd__model_log(m, SD_LOG_WARN, "%s is missing; using SD 1.5's scheduler settings", path);
  }
  free(path), path = NULL;

  /* tokenizer */
  if (opt->tokenizer_dir) {
    st = load_tokenizer(m, opt->tokenizer_dir, err);
  } else {
    path = join(dir, "tokenizer", err);
    st = path ? load_tokenizer(m, path, err) : SD_ERR_NOMEM;
  }
out:
  sd__json_free(j);
  free(path);
  return st;
}

/* The folder a file is in ("." for a bare name), malloc'ed. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return strdup(".");
  if (slash == path) return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

static sd_status load_single(sd_model *m, const char *path, const sd_load_options *opt,
                             sd_error *err) {
  sd_safetensors *f;
  sd_status st = sd__st_open(path, &f, err);
  sd_error local = {0};
  sd__wsrc *unet_src, *vae_src, *clip_src;
  if (st != SD_OK) return st;
  if (!sd__cv_has_prefix(f, SD_CV_UNET_PREFIX)) {
    int diffusers_part = sd__st_find(f, "conv_in.weight") || sd__st_find(f, "decoder.conv_in.weight");
    st = sd__err(err, SD_ERR_UNSUPPORTED,
                 diffusers_part
                     ? "%s holds one diffusers component, not a whole model: load the model "
                       "folder that contains it (with model_index.json)"
                     : "%s has no " SD_CV_UNET_PREFIX "* tensors: not a single-file Stable "
                       "Diffusion 1.x checkpoint",
                 path);
    sd__st_close(f);
    return st;
  }
  /* The UNet source owns the file and is destroyed last (sources go in reverse order). */
  if ((st = add_source(m, f, 1, SD_CV_UNET_PREFIX, sd__cv_unet_name, &m->cv_unet, "unet", opt,
                       &unet_src, err)) != SD_OK)
    return st;
  if (sd__cv_unet_map_init(f, SD_CV_UNET_PREFIX, &m->cv_unet, err) != SD_OK) return err->status;
  if (!sd__cv_has_prefix(f, SD_CV_VAE_PREFIX))
    return sd__err(err, SD_ERR_MISSING, "%s has no VAE (" SD_CV_VAE_PREFIX "*) tensors", path);
  if (sd__cv_vae_map_init(f, SD_CV_VAE_PREFIX, &m->cv_vae, err) != SD_OK) return err->status;
  if ((st = add_source(m, f, 0, SD_CV_VAE_PREFIX, sd__cv_vae_name, &m->cv_vae, "vae", opt,
                       &vae_src, err)) != SD_OK)
    return st;
  if (!sd__cv_has_prefix(f, SD_CV_CLIP_PREFIX))
    return sd__err(err, SD_ERR_UNSUPPORTED,
                   "%s has no CLIP text encoder (" SD_CV_CLIP_PREFIX "*) tensors; only SD 1.x "
                   "checkpoints are supported",
                   path);
  sd__cv_clip_map_init(f, SD_CV_CLIP_PREFIX, &m->cv_clip);
  if ((st = add_source(m, f, 0, SD_CV_CLIP_PREFIX, sd__cv_clip_name, &m->cv_clip,
                       "text encoder", opt, &clip_src, err)) != SD_OK)
    return st;

  sd__clip_config cc;
  sd__unet_config uc;
  sd__vae_config vc;
  sd__clip_config_infer(clip_src, &cc, &local);
  if (local.status == SD_OK) sd__unet_config_infer(unet_src, &uc, &local);
  if (local.status == SD_OK) sd__vae_config_infer(vae_src, &vc, &local);
  if ((st = wrap(err, &local, path)) != SD_OK) return st;
  if ((st = sd__clip_load(clip_src, &cc, &m->clip, &local)) != SD_OK ||
      (st = sd__unet_load(unet_src, &uc, &m->unet, &local)) != SD_OK ||
      (st = sd__vae_load(vae_src, &vc, &m->vae, &local)) != SD_OK)
    return wrap(err, &local, path);
  sd__sched_config_default(&m->sched);

  if (opt->tokenizer_dir) return load_tokenizer(m, opt->tokenizer_dir, err);
  char *dir = dir_of(path);
  char *tdir = dir ? sd__path_join(dir, "tokenizer") : NULL;
  char *vocab = tdir ? sd__path_join(tdir, "vocab.json") : NULL;
  if (!vocab) st = sd__err(err, SD_ERR_NOMEM, "out of memory");
  else if (!sd__is_file(vocab))
    st = sd__err(err, SD_ERR_MISSING,
                 "%s: a single-file checkpoint carries no tokenizer and there is no %s beside "
                 "it; pass --tokenizer DIR (a folder with vocab.json and merges.txt)",
                 path, tdir);
  else st = load_tokenizer(m, tdir, err);
  free(vocab);
  free(tdir);
  free(dir);
  return st;
}

/* The file or folder name without a trailing slash or .safetensors extension. */
static char *base_name(const char *path) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  size_t b = n;
  while (b > 0 && path[b - 1] != '/') b--;
  size_t len = n - b;
  if (len > 12 && ends_with(path, ".safetensors")) len -= 12;
  return strndup(path + b, len);
}

sd_status sd_model_load(const char *path, const sd_load_options *opt_in, sd_model **out,
                        char *errbuf) {
  sd_error err = {0};
  sd_load_options defaults;
  const sd_load_options *opt = opt_in;
  if (!opt) {
    sd_load_options_init(&defaults);
    opt = &defaults;
  }
  *out = NULL;
  if (!path || !*path) {
    sd__err(&err, SD_ERR_INVALID, "no model path given");
    goto out_export;
  }
  sd_model *m = calloc(1, sizeof *m);
  if (!m || !(m->name = base_name(path))) {
    free(m);
    sd__err(&err, SD_ERR_NOMEM, "out of memory loading %s", path);
    goto out_export;
  }
  m->log = opt->log;
  m->log_user = opt->log_user;
  struct stat sb;
  if (stat(path, &sb) != 0) {
    sd__err(&err, SD_ERR_IO, "%s: %s", path, strerror(errno));
  } else if (S_ISDIR(sb.st_mode)) {
    load_folder(m, path, opt, &err);
  } else if (ends_with(path, ".safetensors")) {
    load_single(m, path, opt, &err);
  } else if (ends_with(path, ".ckpt") || ends_with(path, ".pt") || ends_with(path, ".pth") ||
             ends_with(path, ".bin")) {
    /* sd__st_open recognises pickles and explains how to convert them. */
    sd_safetensors *f = NULL;
    if (sd__st_open(path, &f, &err) == SD_OK) {
      sd__st_close(f);
      sd__err(&err, SD_ERR_UNSUPPORTED,
              "%s: rename it to .safetensors if it is a safetensors file", path);
    }
  } else {
    sd__err(&err, SD_ERR_INVALID,
            "%s: expected a diffusers model folder (with model_index.json) or a single-file "
            ".safetensors checkpoint", path);
  }
  if (err.status != SD_OK) {
    sd_model_destroy(m);
    goto out_export;
  }
  size_t conv = 0;
  for (int i = 0; i < m->nsources; i++) conv += sd__wsrc_converted_bytes(m->sources[i]);
  sd_model_info info;
  sd_model_get_info(m, &info);
  sd__model_log(m, SD_LOG_INFO,
                "loaded %s: %dx%d native, text width %d, %s autoencoder, %.1f MB converted to "
                "float32",
                m->name, info.native_width, info.native_height, info.text_hidden, info.vae_kind,
                (double)conv / (1024.0 * 1024.0));
  *out = m;
out_export:
  sd__err_export(&err, errbuf);
  return err.status;
}

void sd_model_destroy(sd_model *m) {
  if (!m) return;
  sd__clip_destroy(m->clip);
  sd__unet_destroy(m->unet);
  sd__vae_destroy(m->vae);
  sd__tokenizer_destroy(m->tok);
  for (int i = m->nsources - 1; i >= 0; i--) sd__wsrc_destroy(m->sources[i]);
  free(m->name);
  free(m);
}

void sd_model_get_info(const sd_model *m, sd_model_info *info) {
  memset(info, 0, sizeof *info);
  info->name = m->name;
  info->vae_kind = "kl";
  int scale = 8;
  if (m->vae) {
    const sd__vae_config *vc = sd__vae_get_config(m->vae);
    scale = 1 << (vc->levels - 1);
    info->latent_channels = vc->latent_channels;
    info->vae_kind = vc->is_vq ? "vq" : "kl";
  }
  if (m->unet) {
    const sd__unet_config *uc = sd__unet_get_config(m->unet);
    info->native_width = info->native_height = uc->sample_size * scale;
    info->latent_channels = uc->in_channels;
  }
  if (m->clip) info->text_hidden = sd__clip_get_config(m->clip)->hidden;
}

sd_status sd_model_tokenize(const sd_model *m, const char *text, int32_t ids[77], char *errbuf) {
  sd_error err = {0};
  sd_status st = sd__tokenize_sd(m->tok, text ? text : "", ids, NULL, &err);
  sd__err_export(&err, errbuf);
  return st;
}
