/* a1111.c: AUTOMATIC1111 API bodies -> native requests, and A1111-shaped answers (a1111.h).
 *
 * The translation builds a native request object (the fields of api/request.h) and hands it
 * to api_request_from_cjson, so validation, Canny preprocessing and the engine request are
 * the native API's own: an A1111 ControlNet unit and the equivalent native control unit give
 * the same PNG by construction. What A1111 does and the native API does not (resize an
 * img2img init image to the requested size, round sizes down to multiples of 8, n_iter) is
 * done here, before validation.
 */
#define _GNU_SOURCE /* strcasestr */
#include "a1111.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "base64.h"
#include "infotext.h"
#include "png_io.h"
#include "resize.h"

/* ---- samplers ------------------------------------------------------------------------------ */

/* A1111 label or alias -> engine name. Labels are those sd_sampler_label gives; the aliases
 * are the k-diffusion names A1111 also accepts. */
static const char *const sampler_alias[][2] = {
    {"k_euler_a", "euler_a"}, {"k_euler_ancestral", "euler_a"}, {"k_euler", "euler"},
    {"k_heun", "heun"},       {"k_lms", "lms"},                 {"k_dpmpp_2m", "dpmpp_2m"},
    {"plms", "pndm"},
};

const char *api_a1111_sampler(const char *label, const char *scheduler) {
  if (!label) return NULL;
  const char *name = NULL;
  for (const char *const *n = sd_sampler_names; *n && !name; n++) {
    const char *l = sd_sampler_label(*n);
    if (!strcasecmp(*n, label) || (l && !strcasecmp(l, label))) name = *n;
  }
  for (size_t i = 0; !name && i < sizeof sampler_alias / sizeof sampler_alias[0]; i++)
    if (!strcasecmp(sampler_alias[i][0], label)) name = sampler_alias[i][1];
  if (!name) return NULL;
  /* A1111 >= 1.9 splits "DPM++ 2M Karras" into sampler + scheduler */
  /* "automatic" and "normal" are the sampler's own schedule (what ours are) */
  if (scheduler && *scheduler && strcasecmp(scheduler, "automatic") != 0 &&
      strcasecmp(scheduler, "normal") != 0) {
    if (!strcasecmp(scheduler, "karras") && !strcmp(name, "dpmpp_2m")) return "dpmpp_2m_karras";
    if (!strcasecmp(scheduler, "karras") && !strcmp(name, "dpmpp_2m_karras")) return name;
    return NULL; /* a sigma schedule we do not have for this sampler */
  }
  return name;
}

/* ---- lenient readers (A1111: null = default, keys case-insensitive for units) ------------- */

static const cJSON *get(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return v && !cJSON_IsNull(v) ? v : NULL;
}

static const cJSON *get_ci(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItem(o, key); /* case-insensitive */
  return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Copy o[key] (any type: the native parser checks it) to dst[as], or def when absent. */
static int copy_or(cJSON *dst, const char *as, const cJSON *v, double def) {
  cJSON *c = v ? cJSON_Duplicate(v, 1) : cJSON_CreateNumber(def);
  return c && cJSON_AddItemToObject(dst, as, c) ? 0 : -1;
}

static int is_int_value(const cJSON *v, double lo, double hi, int *out) {
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo ||
      v->valuedouble > hi || v->valuedouble != floor(v->valuedouble))
    return 0;
  *out = (int)v->valuedouble;
  return 1;
}

/* An int field in lo..hi or def; -1 and sets *e when present but wrong. */
static int get_int(const cJSON *o, const char *key, int lo, int hi, int def, int *out,
                   api_error *e) {
  const cJSON *v = get(o, key);
  *out = def;
  if (!v) return 0;
  if (!is_int_value(v, lo, hi, out))
    return api_error_set(e, cJSON_IsNumber(v) ? API_ERR_BAD_VALUE : API_ERR_BAD_TYPE, key,
                         "%s must be an integer from %d to %d", key, lo, hi), -1;
  return 0;
}

/* ---- images -------------------------------------------------------------------------------- */

/* Decode a base64 PNG (or a data: URL) named path into *img (free with api_png_image_free). */
static int decode_png(const char *text, const api_limits *lim, const char *path,
                      api_png_image *img, api_error *e) {
  const char *comma = !strncmp(text, "data:", 5) ? strchr(text, ',') : NULL;
  const char *b64 = comma ? comma + 1 : text;
  uint8_t *bytes = NULL;
  size_t n = 0;
  char err[SD_ERRMSG_MAX];
  api_png_limits pl;
  api_png_limits_init(&pl);
  memset(img, 0, sizeof *img);
  if (api_base64_decode(b64, strlen(b64), lim->max_image_bytes, &bytes, &n, err) != SD_OK)
    return api_error_set(e, API_ERR_BAD_IMAGE, path, "%s: %s", path, err), -1;
  sd_status st = api_png_decode(bytes, n, &pl, img, err);
  free(bytes);
  if (st != SD_OK)
    return api_error_set(e, st == SD_ERR_LIMIT ? API_ERR_LIMIT : API_ERR_BAD_IMAGE, path,
                         "%s: %s", path, err), -1;
  return 0;
}

/* PNG bytes of rgb (w x h) into *png / *len; -1 with *e set on failure. */
static int encode_png(const uint8_t *rgb, int w, int h, const char *path, uint8_t **png,
                      size_t *len, api_error *e) {
  sd_status st = api_png_encode_mem(rgb, w, h, NULL, 0, png, len, NULL);
  if (st != SD_OK)
    return api_error_set(e, api_err_from_status(st), path, "%s: cannot re-encode", path), -1;
  return 0;
}

/* A1111 img2img resizes the init image to the requested size (its resize_mode 0, "Just
 * resize": PIL LANCZOS). When the size differs, *png gets the resized image as PNG bytes. */
static int resize_init(const char *text, int w, int h, const api_limits *lim, uint8_t **png,
                       size_t *png_len, api_error *e) {
  api_png_image img;
  if (decode_png(text, lim, "init_images[0]", &img, e)) return -1;
  int rc = 0;
  if (img.width != w || img.height != h) {
    uint8_t *dst = malloc((size_t)w * (size_t)h * 3);
    sd_status st = dst ? sd__resize_lanczos_rgb(img.rgb, img.width, img.height, dst, w, h, NULL)
                       : SD_ERR_NOMEM;
    if (st == SD_OK) {
      rc = encode_png(dst, w, h, "init_images[0]", png, png_len, e);
    } else {
      api_error_set(e, api_err_from_status(st), "init_images", "init_images[0]: resize failed");
      rc = -1;
    }
    free(dst);
  }
  api_png_image_free(&img);
  return rc;
}

/* The ControlNet extension's "Crop and Resize" (its default): centre-crop the control image to
 * the output's aspect ratio before it is resized (here: before Canny and the engine's Lanczos
 * resize). When the aspect already matches, nothing changes (*png stays NULL). */
static int crop_to_aspect(const char *text, int w, int h, const api_limits *lim,
                          const char *path, uint8_t **png, size_t *png_len, api_error *e) {
  api_png_image img;
  if (decode_png(text, lim, path, &img, e)) return -1;
  int iw = img.width, ih = img.height, cw = iw, ch = ih;
  /* the largest centred window of the output's aspect, rounded to whole pixels */
  if ((long long)iw * h > (long long)ih * w) cw = (int)(((long long)ih * w + h / 2) / h);
  else if ((long long)iw * h < (long long)ih * w) ch = (int)(((long long)iw * h + w / 2) / w);
  int rc = 0;
  if (cw != iw || ch != ih) {
    if (cw < 1) cw = 1;
    if (ch < 1) ch = 1;
    int x0 = (iw - cw) / 2, y0 = (ih - ch) / 2;
    uint8_t *dst = malloc((size_t)cw * (size_t)ch * 3);
    if (!dst) {
      api_error_set(e, API_ERR_NOMEM, path, "out of memory");
      rc = -1;
    }
    for (int y = 0; dst && y < ch; y++)
      memcpy(dst + (size_t)y * cw * 3, img.rgb + ((size_t)(y0 + y) * iw + x0) * 3, (size_t)cw * 3);
    if (dst) rc = encode_png(dst, cw, ch, path, png, png_len, e);
    free(dst);
  }
  api_png_image_free(&img);
  return rc;
}

/* ---- ControlNet units ---------------------------------------------------------------------- */

/* Enum given as an int (index) or a string (label, any case): returns the index or -1. */
static int enum_value(const cJSON *v, const char *const *labels, int n) {
  int k;
  if (is_int_value(v, 0, n - 1, &k)) return k;
  if (!cJSON_IsString(v)) return -1;
  for (int i = 0; i < n; i++)
    if (!strcasecmp(v->valuestring, labels[i])) return i;
  return -1;
}

/* The loaded ControlNet an A1111 model name means: "control_canny [abc123]" -> "control_canny";
 * exact, then case-insensitive, then either name containing the other. -1 if none. */
static int find_net(const char *model, const api_limits *lim) {
  char name[256];
  snprintf(name, sizeof name, "%s", model);
  char *br = strstr(name, " [");
  if (br) *br = '\0';
  for (int pass = 0; pass < 3; pass++)
    for (int j = 0; j < lim->n_controlnets; j++) {
      const char *n = lim->controlnets[j].name;
      if (pass == 0 && !strcmp(n, name)) return j;
      if (pass == 1 && !strcasecmp(n, name)) return j;
      if (pass == 2 && *name && (strcasestr(n, name) || strcasestr(name, n))) return j;
    }
  return -1;
}

static const char *const resize_modes[] = {"Just Resize", "Crop and Resize", "Resize and Fill"};
static const char *const control_modes[] = {"Balanced", "My prompt is more important",
                                            "ControlNet is more important"};

/* Translate A1111 unit u (index i in args) into a native unit appended to units. Returns 0
 * (added or skipped), -1 with *e set. */
static int translate_unit(const cJSON *u, int i, const cJSON *init_image, int w, int h,
                          const api_limits *lim, cJSON *units, api_raw_images *raw,
                          api_a1111_extra *x, api_error *e) {
  char path[64];
  snprintf(path, sizeof path, "alwayson_scripts.controlnet.args[%d]", i);
  if (!cJSON_IsObject(u))
    return api_error_set(e, API_ERR_BAD_TYPE, path, "%s must be an object (a ControlNet unit)",
                         path), -1;
  const cJSON *en = get_ci(u, "enabled");
  if (en && !cJSON_IsBool(en))
    return api_error_set(e, API_ERR_BAD_TYPE, path, "%s.enabled must be a boolean", path), -1;
  if (en && cJSON_IsFalse(en)) return 0;
  const cJSON *model = get_ci(u, "model");
  if (model && !cJSON_IsString(model))
    return api_error_set(e, API_ERR_BAD_TYPE, path, "%s.model must be a string", path), -1;
  if (model && (!strcasecmp(model->valuestring, "none") || !model->valuestring[0]))
    return 0; /* the extension skips a unit without a model */
  /* module */
  const char *pre = "none";
  const cJSON *mod = get_ci(u, "module");
  if (!mod) mod = get_ci(u, "preprocessor");
  if (mod && !cJSON_IsString(mod))
    return api_error_set(e, API_ERR_BAD_TYPE, path, "%s.module must be a string", path), -1;
  if (mod && !strcasecmp(mod->valuestring, "canny")) pre = "canny";
  else if (mod && strcasecmp(mod->valuestring, "none") && mod->valuestring[0])
    return api_error_set(e, API_ERR_BAD_VALUE, path,
                         "%s.module '%.32s' is not supported (\"canny\" or \"none\")", path,
                         mod->valuestring), -1;
  /* enums accepted as ints or labels; only Balanced control is implemented */
  const cJSON *rm = get_ci(u, "resize_mode"), *cm = get_ci(u, "control_mode");
  /* the extension's default is "Crop and Resize" */
  int rmode = rm ? enum_value(rm, resize_modes, 3) : 1;
  if (rmode < 0)
    return api_error_set(e, API_ERR_BAD_VALUE, path, "%s.resize_mode is not a known mode", path),
           -1;
  int cmode = cm ? enum_value(cm, control_modes, 3) : 0;
  if (cmode < 0)
    return api_error_set(e, API_ERR_BAD_VALUE, path, "%s.control_mode is not a known mode",
                         path), -1;
  if (cmode != 0)
    return api_error_set(e, API_ERR_BAD_VALUE, path,
                         "%s.control_mode: only \"Balanced\" is implemented", path), -1;
  /* the image */
  const cJSON *img = get_ci(u, "image");
  if (!img) img = get_ci(u, "input_image");
  if (img && cJSON_IsObject(img)) img = get_ci(img, "image"); /* {image, mask} */
  if (!img) img = init_image; /* A1111 img2img: the unit falls back to the init image */
  if (!img)
    return api_error_set(e, API_ERR_BAD_VALUE, path, "%s.image is required", path), -1;
  if (!cJSON_IsString(img))
    return api_error_set(e, API_ERR_BAD_TYPE, path, "%s.image must be a base64 string", path),
           -1;
  int k = units ? cJSON_GetArraySize(units) : 0;
  if (k >= SD_MAX_CONTROL)
    return api_error_set(e, API_ERR_LIMIT, path, "at most %d ControlNet units", SD_MAX_CONTROL),
           -1;
  cJSON *n = cJSON_CreateObject();
  if (!n || !cJSON_AddItemToArray(units, n))
    return cJSON_Delete(n), api_error_set(e, API_ERR_NOMEM, NULL, "out of memory"), -1;
  if (model) {
    int j = find_net(model->valuestring, lim);
    if (j < 0 && lim->n_controlnets > 0)
      return api_error_set(e, API_ERR_BAD_VALUE, path,
                           "%s.model: no ControlNet named '%.64s' is loaded (see "
                           "/controlnet/model_list)", path, model->valuestring), -1;
    if (j >= 0 && !cJSON_AddStringToObject(n, "model", lim->controlnets[j].name)) goto nomem;
  }
  uint8_t *cropped = NULL;
  size_t cropped_len = 0;
  if (rmode != 0 && crop_to_aspect(img->valuestring, w, h, lim, path, &cropped, &cropped_len, e))
    return -1;
  if (cropped && rmode == 2) {
    free(cropped);
    return api_error_set(e, API_ERR_BAD_VALUE, path,
                         "%s.resize_mode \"Resize and Fill\" is not implemented for a control "
                         "image of another aspect ratio", path), -1;
  }
  raw->control[k] = cropped; /* replaces the JSON image; freed by api_a1111_parse */
  raw->control_len[k] = cropped_len;
  if ((!cropped && !cJSON_AddItemToObject(n, "image", cJSON_CreateString(img->valuestring))) ||
      !cJSON_AddStringToObject(n, "preprocess", pre))
    goto nomem;
  const cJSON *wt = get_ci(u, "weight");
  const cJSON *gs = get_ci(u, "guidance_start"), *ge = get_ci(u, "guidance_end");
  if (!ge) ge = get_ci(u, "guidance"); /* legacy alias */
  if ((wt && copy_or(n, "scale", wt, 1)) || (gs && copy_or(n, "start", gs, 0)) ||
      (ge && copy_or(n, "end", ge, 1)))
    goto nomem;
  if (!strcmp(pre, "canny")) {
    /* threshold_a/b are the Canny thresholds; -1 (or absent) = the extension's 100/200 */
    const cJSON *ta = get_ci(u, "threshold_a"), *tb = get_ci(u, "threshold_b");
    if (ta && cJSON_IsNumber(ta) && ta->valuedouble == -1) ta = NULL;
    if (tb && cJSON_IsNumber(tb) && tb->valuedouble == -1) tb = NULL;
    if ((ta && copy_or(n, "low_threshold", ta, 100)) ||
        (tb && copy_or(n, "high_threshold", tb, 200)))
      goto nomem;
  }
  const cJSON *sd = get_ci(u, "save_detected_map");
  x->save_detected_map[k] = sd && cJSON_IsTrue(sd) && !strcmp(pre, "canny");
  x->n_units = k + 1;
  return 0;
nomem:
  return api_error_set(e, API_ERR_NOMEM, NULL, "out of memory"), -1;
}

/* alwayson_scripts.controlnet.args (script and key names in any case) -> native "control". */
static int translate_control(const cJSON *obj, const cJSON *init_image, int w, int h,
                             const api_limits *lim, cJSON *native, api_raw_images *raw,
                             api_a1111_extra *x, api_error *e) {
  const cJSON *as = get(obj, "alwayson_scripts");
  if (!as) return 0;
  if (!cJSON_IsObject(as))
    return api_error_set(e, API_ERR_BAD_TYPE, "alwayson_scripts",
                         "alwayson_scripts must be an object"), -1;
  const cJSON *cn = get_ci(as, "controlnet");
  if (!cn) return 0;
  const cJSON *args = cJSON_IsObject(cn) ? get_ci(cn, "args") : NULL;
  if (!args) return 0;
  if (!cJSON_IsArray(args))
    return api_error_set(e, API_ERR_BAD_TYPE, "alwayson_scripts.controlnet.args",
                         "alwayson_scripts.controlnet.args must be a list of units"), -1;
  cJSON *units = cJSON_CreateArray();
  if (!units) return api_error_set(e, API_ERR_NOMEM, NULL, "out of memory"), -1;
  int i = 0;
  for (const cJSON *u = args->child; u; u = u->next, i++)
    if (translate_unit(u, i, init_image, w, h, lim, units, raw, x, e)) {
      cJSON_Delete(units);
      return -1;
    }
  if (cJSON_GetArraySize(units) == 0) {
    cJSON_Delete(units);
    return 0;
  }
  cJSON_AddItemToObject(native, "control", units);
  return 0;
}

/* ---- the request --------------------------------------------------------------------------- */

/* A1111 fields -> native object. raw gets the images this translation re-encoded (a resized
 * init image, cropped control images), owned by the caller. */
static int translate(const cJSON *o, int img2img, const api_limits *lim, cJSON *n,
                     api_a1111_extra *x, api_raw_images *raw, api_error *e) {
  const cJSON *p = get(o, "prompt"), *np = get(o, "negative_prompt");
  if (p ? !cJSON_AddItemToObject(n, "prompt", cJSON_Duplicate(p, 1))
        : !cJSON_AddStringToObject(n, "prompt", ""))
    goto nomem;
  if (np && !cJSON_AddItemToObject(n, "negative_prompt", cJSON_Duplicate(np, 1))) goto nomem;
  const cJSON *seed = get(o, "seed");
  if (copy_or(n, "seed", seed, -1) || copy_or(n, "steps", get(o, "steps"), 20) ||
      copy_or(n, "cfg_scale", get(o, "cfg_scale"), 7))
    goto nomem;
  /* sampler_name (or the legacy sampler_index, which held a name) + scheduler */
  const cJSON *sn = get(o, "sampler_name"), *sch = get(o, "scheduler");
  if (!sn) sn = get(o, "sampler_index");
  if ((sn && !cJSON_IsString(sn)) || (sch && !cJSON_IsString(sch)))
    return api_error_set(e, API_ERR_BAD_TYPE, sn && !cJSON_IsString(sn) ? "sampler_name"
                                                                         : "scheduler",
                         "sampler_name and scheduler must be strings"), -1;
  const char *label = sn ? sn->valuestring : "Euler a";
  const char *name = api_a1111_sampler(label, sch ? sch->valuestring : NULL);
  if (!name)
    return api_error_set(e, API_ERR_BAD_VALUE, "sampler_name",
                         "sampler '%.48s'%s%.32s is not available (see /sdapi/v1/samplers)",
                         label, sch ? " with scheduler " : "", sch ? sch->valuestring : ""), -1;
  if (!cJSON_AddStringToObject(n, "sampler", name)) goto nomem;
  /* sizes: A1111 works in latent pixels, i.e. rounds down to a multiple of 8 */
  int w, h;
  if (get_int(o, "width", 8, 65536, 512, &w, e) || get_int(o, "height", 8, 65536, 512, &h, e))
    return -1;
  w -= w % 8;
  h -= h % 8;
  if (!cJSON_AddNumberToObject(n, "width", w) || !cJSON_AddNumberToObject(n, "height", h))
    goto nomem;
  if (get_int(o, "batch_size", 1, 1000, 1, &x->batch_size, e) ||
      get_int(o, "n_iter", 1, 1000, 1, &x->n_iter, e))
    return -1;
  if (!cJSON_AddNumberToObject(n, "batch_size", (double)x->batch_size * x->n_iter)) goto nomem;
  const cJSON *init = NULL;
  if (img2img) {
    const cJSON *imgs = get(o, "init_images");
    if (!imgs || !cJSON_IsArray(imgs) || !imgs->child)
      return api_error_set(e, imgs && !cJSON_IsArray(imgs) ? API_ERR_BAD_TYPE
                                                            : API_ERR_BAD_VALUE,
                           "init_images", "init_images must be a list of one image"), -1;
    init = imgs->child;
    if (!cJSON_IsString(init))
      return api_error_set(e, API_ERR_BAD_TYPE, "init_images",
                           "init_images[0] must be a base64 string"), -1;
    uint8_t *png = NULL;
    size_t len = 0;
    if (resize_init(init->valuestring, w, h, lim, &png, &len, e)) return -1;
    raw->init = png;
    raw->init_len = len;
    if ((!png && !cJSON_AddStringToObject(n, "init_image", init->valuestring)) ||
        copy_or(n, "strength", get(o, "denoising_strength"), 0.75))
      goto nomem;
  }
  return translate_control(o, init, w, h, lim, n, raw, x, e);
nomem:
  return api_error_set(e, API_ERR_NOMEM, NULL, "out of memory"), -1;
}

/* "parameters": the body with A1111's defaults filled in (init images dropped, as A1111 does). */
static char *params_with_defaults(const cJSON *o, const api_gen_request *r,
                                  const api_a1111_extra *x) {
  cJSON *p = cJSON_Duplicate(o, 1);
  if (!p) return NULL;
  struct { const char *k; double v; } nums[] = {
      {"seed", -1}, {"steps", r->rq.steps}, {"cfg_scale", r->rq.cfg_scale},
      {"width", r->rq.width}, {"height", r->rq.height}, {"batch_size", x->batch_size},
      {"n_iter", x->n_iter}};
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
    if (!get(p, nums[i].k)) {
      cJSON_DeleteItemFromObjectCaseSensitive(p, nums[i].k);
      cJSON_AddNumberToObject(p, nums[i].k, nums[i].v);
    }
  if (!get(p, "prompt")) {
    cJSON_DeleteItemFromObjectCaseSensitive(p, "prompt");
    cJSON_AddStringToObject(p, "prompt", "");
  }
  if (!get(p, "negative_prompt")) {
    cJSON_DeleteItemFromObjectCaseSensitive(p, "negative_prompt");
    cJSON_AddStringToObject(p, "negative_prompt", "");
  }
  if (!get(p, "sampler_name")) {
    cJSON_DeleteItemFromObjectCaseSensitive(p, "sampler_name");
    const char *l = sd_sampler_label(r->rq.sampler);
    cJSON_AddStringToObject(p, "sampler_name", l ? l : r->rq.sampler);
  }
  if (x->img2img) {
    cJSON_DeleteItemFromObjectCaseSensitive(p, "init_images");
    cJSON_AddNullToObject(p, "init_images");
    if (!get(p, "denoising_strength")) {
      cJSON_DeleteItemFromObjectCaseSensitive(p, "denoising_strength");
      cJSON_AddNumberToObject(p, "denoising_strength", r->rq.strength);
    }
  }
  char *txt = cJSON_PrintUnformatted(p);
  cJSON_Delete(p);
  return txt;
}

api_err api_a1111_parse(const char *body, size_t len, int img2img, const api_limits *lim,
                        api_gen_request *out, api_a1111_extra *x, api_error *e) {
  memset(out, 0, sizeof *out);
  memset(x, 0, sizeof *x);
  x->img2img = img2img;
  api_raw_images raw;
  memset(&raw, 0, sizeof raw);
  cJSON *native = NULL;
  cJSON *o = cJSON_ParseWithLength(body ? body : "", len);
  if (!o || !cJSON_IsObject(o)) {
    api_error_set(e, API_ERR_BAD_JSON, NULL, "the body must be a JSON object");
    goto out;
  }
  native = cJSON_CreateObject();
  if (!native) {
    api_error_set(e, API_ERR_NOMEM, NULL, "out of memory");
    goto out;
  }
  if (translate(o, img2img, lim, native, x, &raw, e)) goto out;
  if (api_request_from_cjson(native, &raw, lim, out, e) != API_OK) goto out;
  for (int k = 0; k < x->n_units && k < SD_MAX_CONTROL; k++)
    if (x->save_detected_map[k] && out->canny[k] &&
        encode_png(out->canny[k], out->control_img[k].width, out->control_img[k].height,
                   "detected_map", &x->detected_png[k], &x->detected_len[k], e))
      goto out;
  x->params_json = params_with_defaults(o, out, x);
  if (!x->params_json) api_error_set(e, API_ERR_NOMEM, NULL, "out of memory");
out:
  free((void *)raw.init);
  for (int i = 0; i < SD_MAX_CONTROL; i++) free((void *)raw.control[i]);
  cJSON_Delete(native);
  cJSON_Delete(o);
  return e->kind;
}

void api_a1111_extra_free(api_a1111_extra *x) {
  if (!x) return;
  free(x->params_json);
  for (int k = 0; k < SD_MAX_CONTROL; k++) free(x->detected_png[k]);
  memset(x, 0, sizeof *x);
}

/* ---- answers ------------------------------------------------------------------------------- */

static cJSON *add_str_array(cJSON *o, const char *key, const char *s, int n) {
  cJSON *a = cJSON_AddArrayToObject(o, key);
  for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(s ? s : ""));
  return a;
}

/* The info JSON string: what A1111's Processed.js() gives. */
static char *info_json(const api_gen_request *r, const api_a1111_extra *x,
                       const api_a1111_image *imgs, int n, const char *model_name) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  const char *label = sd_sampler_label(r->rq.sampler);
  uint64_t seed0 = n > 0 ? imgs[0].seed : r->rq.seed;
  cJSON_AddStringToObject(o, "prompt", r->rq.prompt ? r->rq.prompt : "");
  add_str_array(o, "all_prompts", r->rq.prompt, n);
  cJSON_AddStringToObject(o, "negative_prompt", r->rq.negative_prompt ? r->rq.negative_prompt : "");
  add_str_array(o, "all_negative_prompts", r->rq.negative_prompt, n);
  cJSON_AddNumberToObject(o, "seed", (double)seed0);
  cJSON *as = cJSON_AddArrayToObject(o, "all_seeds");
  cJSON_AddNumberToObject(o, "subseed", -1);
  cJSON *ass = cJSON_AddArrayToObject(o, "all_subseeds");
  for (int i = 0; as && ass && i < n; i++) {
    cJSON_AddItemToArray(as, cJSON_CreateNumber((double)imgs[i].seed));
    cJSON_AddItemToArray(ass, cJSON_CreateNumber(-1));
  }
  cJSON_AddNumberToObject(o, "subseed_strength", 0);
  cJSON_AddNumberToObject(o, "width", r->rq.width);
  cJSON_AddNumberToObject(o, "height", r->rq.height);
  cJSON_AddStringToObject(o, "sampler_name", label ? label : r->rq.sampler);
  cJSON_AddNumberToObject(o, "cfg_scale", r->rq.cfg_scale);
  cJSON_AddNumberToObject(o, "steps", r->rq.steps);
  cJSON_AddNumberToObject(o, "batch_size", x->batch_size);
  cJSON_AddFalseToObject(o, "restore_faces");
  cJSON_AddNullToObject(o, "face_restoration_model");
  cJSON_AddStringToObject(o, "sd_model_name", model_name ? model_name : "");
  cJSON_AddNullToObject(o, "sd_model_hash");
  cJSON_AddNullToObject(o, "sd_vae_name");
  cJSON_AddNullToObject(o, "sd_vae_hash");
  cJSON_AddNumberToObject(o, "seed_resize_from_w", -1);
  cJSON_AddNumberToObject(o, "seed_resize_from_h", -1);
  if (x->img2img) cJSON_AddNumberToObject(o, "denoising_strength", r->rq.strength);
  else cJSON_AddNullToObject(o, "denoising_strength");
  cJSON_AddObjectToObject(o, "extra_generation_params");
  cJSON_AddNumberToObject(o, "index_of_first_image", 0);
  cJSON *it = cJSON_AddArrayToObject(o, "infotexts");
  for (int i = 0; it && i < n; i++) {
    sd_request rq = r->rq;
    rq.seed = imgs[i].seed;
    /* the infotext only asks whether there was an init image (the server frees the images
     * of a job that ended, so rq.init_rgb may be NULL by now) */
    if (x->img2img) rq.init_rgb = (const uint8_t *)"";
    char *t = api_infotext_ex(&rq, r->rq.width, r->rq.height, model_name, r->control_names);
    cJSON_AddItemToArray(it, cJSON_CreateString(t ? t : ""));
    free(t);
  }
  cJSON_AddArrayToObject(o, "styles");
  char ts[32];
  time_t now = time(NULL);
  struct tm tm;
  strftime(ts, sizeof ts, "%Y%m%d%H%M%S", localtime_r(&now, &tm));
  cJSON_AddStringToObject(o, "job_timestamp", ts);
  cJSON_AddNumberToObject(o, "clip_skip", 1);
  cJSON_AddFalseToObject(o, "is_using_inpainting_conditioning");
  cJSON_AddStringToObject(o, "version", "sdserve");
  char *txt = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return txt;
}

/* Append base64(png) to arr; 0 or -1. */
static int add_b64(cJSON *arr, const uint8_t *png, size_t len) {
  char *b = api_base64_encode(png, len, NULL);
  cJSON *s = b ? cJSON_CreateString(b) : NULL;
  free(b);
  return s && cJSON_AddItemToArray(arr, s) ? 0 : (cJSON_Delete(s), -1);
}

char *api_a1111_response(const api_gen_request *r, const api_a1111_extra *x,
                         const api_a1111_image *imgs, int n, const char *model_name) {
  cJSON *o = cJSON_CreateObject(), *arr = o ? cJSON_AddArrayToObject(o, "images") : NULL;
  char *info = NULL, *txt = NULL;
  cJSON *params = x->params_json ? cJSON_Parse(x->params_json) : cJSON_CreateObject();
  if (!arr || !params) goto out;
  for (int i = 0; i < n; i++)
    if (add_b64(arr, imgs[i].png, imgs[i].len)) goto out;
  for (int k = 0; k < SD_MAX_CONTROL; k++)
    if (x->detected_png[k] && add_b64(arr, x->detected_png[k], x->detected_len[k])) goto out;
  cJSON_AddItemToObject(o, "parameters", params);
  params = NULL;
  info = info_json(r, x, imgs, n, model_name);
  if (!info || !cJSON_AddStringToObject(o, "info", info)) goto out;
  txt = cJSON_PrintUnformatted(o);
out:
  free(info);
  cJSON_Delete(params);
  cJSON_Delete(o);
  return txt;
}

/* ---- lists --------------------------------------------------------------------------------- */

char *api_a1111_samplers_json(void) {
  cJSON *a = cJSON_CreateArray();
  for (const char *const *n = sd_sampler_names; a && *n; n++) {
    cJSON *s = cJSON_CreateObject();
    const char *l = sd_sampler_label(*n);
    if (!s || !cJSON_AddItemToArray(a, s)) break;
    cJSON_AddStringToObject(s, "name", l ? l : *n);
    cJSON *al = cJSON_AddArrayToObject(s, "aliases");
    cJSON_AddItemToArray(al, cJSON_CreateString(*n));
    cJSON_AddObjectToObject(s, "options");
  }
  char *t = a ? cJSON_PrintUnformatted(a) : NULL;
  cJSON_Delete(a);
  return t;
}

char *api_a1111_schedulers_json(void) {
  static const char *const rows[][2] = {
      {"automatic", "Automatic"}, {"normal", "Normal"}, {"karras", "Karras"}};
  cJSON *a = cJSON_CreateArray();
  for (size_t i = 0; a && i < sizeof rows / sizeof rows[0]; i++) {
    cJSON *s = cJSON_CreateObject();
    if (!s || !cJSON_AddItemToArray(a, s)) break;
    cJSON_AddStringToObject(s, "name", rows[i][0]);
    cJSON_AddStringToObject(s, "label", rows[i][1]);
    cJSON_AddNullToObject(s, "aliases");
    cJSON_AddNumberToObject(s, "default_rho", i == 2 ? 7 : -1);
    cJSON_AddFalseToObject(s, "need_inner_model");
  }
  char *t = a ? cJSON_PrintUnformatted(a) : NULL;
  cJSON_Delete(a);
  return t;
}

char *api_a1111_sd_models_json(const char *model_name, const char *model_path) {
  cJSON *a = cJSON_CreateArray(), *m = cJSON_CreateObject();
  if (!a || !m || !cJSON_AddItemToArray(a, m)) {
    cJSON_Delete(a);
    cJSON_Delete(m);
    return NULL;
  }
  cJSON_AddStringToObject(m, "title", model_name);
  cJSON_AddStringToObject(m, "model_name", model_name);
  cJSON_AddNullToObject(m, "hash");
  cJSON_AddNullToObject(m, "sha256");
  cJSON_AddStringToObject(m, "filename", model_path ? model_path : model_name);
  cJSON_AddNullToObject(m, "config");
  char *t = cJSON_PrintUnformatted(a);
  cJSON_Delete(a);
  return t;
}

char *api_a1111_cn_models_json(const api_controlnet_ref *nets, int n) {
  cJSON *o = cJSON_CreateObject(), *a = o ? cJSON_AddArrayToObject(o, "model_list") : NULL;
  for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(nets[i].name));
  char *t = a ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return t;
}

char *api_a1111_cn_modules_json(void) {
  return strdup("{\"module_list\":[\"none\",\"canny\"]}");
}

/* ---- options and progress ------------------------------------------------------------------ */

char *api_a1111_options_json(const char *model_name, const char *stored) {
  cJSON *o = stored ? cJSON_Parse(stored) : NULL;
  if (!o) o = cJSON_CreateObject();
  if (!o) return NULL;
  /* A1111 defaults clients read back; posted values (stored) win, except the checkpoint,
   * which always names the one model this server has loaded */
  static const struct { const char *k; const char *s; double v; } defs[] = {
      {"sd_vae", "Automatic", 0}, {"samples_format", "png", 0},
      {"CLIP_stop_at_last_layers", NULL, 1}, {"eta_noise_seed_delta", NULL, 0},
      {"sd_checkpoint_hash", "", 0}, {"outdir_samples", "", 0}};
  for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
    if (cJSON_GetObjectItemCaseSensitive(o, defs[i].k)) continue;
    if (defs[i].s) cJSON_AddStringToObject(o, defs[i].k, defs[i].s);
    else cJSON_AddNumberToObject(o, defs[i].k, defs[i].v);
  }
  cJSON_DeleteItemFromObjectCaseSensitive(o, "sd_model_checkpoint");
  cJSON_AddStringToObject(o, "sd_model_checkpoint", model_name ? model_name : "");
  char *t = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return t;
}

api_err api_a1111_options_merge(const char *stored, const char *body, size_t len, char **merged,
                                api_error *e) {
  *merged = NULL;
  cJSON *in = cJSON_ParseWithLength(body ? body : "", len);
  if (!in || !cJSON_IsObject(in)) {
    cJSON_Delete(in);
    return api_error_set(e, API_ERR_BAD_JSON, NULL, "options must be a JSON object");
  }
  cJSON *o = stored ? cJSON_Parse(stored) : NULL;
  if (!o) o = cJSON_CreateObject();
  for (cJSON *c = in->child; o && c; c = c->next) {
    cJSON *d = cJSON_Duplicate(c, 1);
    if (!d) break;
    if (cJSON_GetObjectItemCaseSensitive(o, c->string))
      cJSON_ReplaceItemInObjectCaseSensitive(o, c->string, d);
    else
      cJSON_AddItemToObject(o, c->string, d);
  }
  *merged = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  cJSON_Delete(in);
  return *merged ? API_OK : api_error_set(e, API_ERR_NOMEM, NULL, "out of memory");
}

char *api_a1111_progress_json(int job_count, int step, int steps, double elapsed_s,
                              const char *preview_b64) {
  cJSON *o = cJSON_CreateObject(), *st = o ? cJSON_AddObjectToObject(o, "state") : NULL;
  if (!st) {
    cJSON_Delete(o);
    return NULL;
  }
  double p = steps > 0 && job_count > 0 ? (double)step / steps : 0.0;
  /* A1111: eta = elapsed / progress - elapsed */
  double eta = p > 0 ? elapsed_s / p - elapsed_s : 0.0;
  cJSON_AddNumberToObject(o, "progress", p);
  cJSON_AddNumberToObject(o, "eta_relative", eta);
  cJSON_AddFalseToObject(st, "skipped");
  cJSON_AddFalseToObject(st, "interrupted");
  cJSON_AddFalseToObject(st, "stopping_generation");
  cJSON_AddStringToObject(st, "job", job_count > 0 ? "txt2img" : "");
  cJSON_AddNumberToObject(st, "job_count", job_count);
  cJSON_AddStringToObject(st, "job_timestamp", "0");
  cJSON_AddNumberToObject(st, "job_no", 0);
  cJSON_AddNumberToObject(st, "sampling_step", job_count > 0 ? step : 0);
  cJSON_AddNumberToObject(st, "sampling_steps", job_count > 0 ? steps : 0);
  if (preview_b64) cJSON_AddStringToObject(o, "current_image", preview_b64);
  else cJSON_AddNullToObject(o, "current_image");
  cJSON_AddNullToObject(o, "textinfo");
  char *t = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return t;
}
