/* sdgen.c: command-line front end of the random-weight SD 1.5 generator (see sdgen.h).
 *
 *   sdgen -o DIR  [--format diffusers] [--dtype f32|f16] [--seed N] [--tokenizer DIR]
 *   sdgen -o FILE --format single [--dtype f32|f16] [--seed N]
 *   sdgen -o DIR  --component controlnet [--dtype f32|f16] [--seed N]
 *   sdgen --list [--component controlnet]   (names, shapes, parameter counts; writes nothing)
 *
 * The output has SD 1.5's exact tensor names and shapes (about 1.07 G parameters: 2.1 GB in
 * F16, 4.3 GB in F32) and random weights: it is for benchmarks and loader tests, it draws
 * noise, not pictures. `--component controlnet` writes instead a ControlNet shaped like
 * lllyasviel's control_v11p_sd15_canny (diffusers folder: config.json + weights, 361 M
 * parameters).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdgen.h"

#ifndef SDGEN_DEFAULT_TOKENIZER
#define SDGEN_DEFAULT_TOKENIZER "tests/data/models/tiny-sd/tokenizer"
#endif

static void usage(FILE *f) {
  fprintf(f,
          "usage: sdgen -o PATH [--format diffusers|single] [--dtype f32|f16] [--seed N]\n"
          "             [--tokenizer DIR] [--threads N] [--quiet]\n"
          "       sdgen -o DIR --component controlnet [--dtype f32|f16] [--seed N]\n"
          "       sdgen --list [--component base|controlnet]\n"
          "Writes a random-weight full-size Stable Diffusion 1.5 (diffusers folder or one\n"
          "CompVis-named .safetensors file). The tokenizer folder is copied into diffusers\n"
          "output (default %s); the text encoder always has 49408 token rows, and ids beyond\n"
          "a smaller tokenizer's vocabulary are simply never used. --component controlnet\n"
          "writes a ControlNet folder shaped like control_v11p_sd15_canny instead.\n",
          SDGEN_DEFAULT_TOKENIZER);
}

static void list(const sdgen_spec *s) {
  static const char *const part_names[] = {"text_encoder", "unet", "vae", "controlnet"};
  for (size_t i = 0; i < s->count; i++) {
    const sdgen_tensor *t = &s->t[i];
    printf("%s/%s [", part_names[t->part], t->name);
    for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
    printf("]\n");
  }
  for (int p = 0; p <= SDGEN_CONTROLNET; p++)
    if (sdgen_spec_params(s, (sdgen_part)p) > 0)
      printf("# %s: %lld parameters\n", part_names[p], (long long)sdgen_spec_params(s, (sdgen_part)p));
  printf("# %zu tensors\n", s->count);
}

int main(int argc, char **argv) {
  const char *out = NULL, *format = "diffusers", *dtype = "f16", *component = "base";
  const char *tokenizer = SDGEN_DEFAULT_TOKENIZER;
  unsigned long long seed = 0;
  int threads = 0, verbose = 1, do_list = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--list")) {
      do_list = 1;
    } else if (!strcmp(a, "--quiet")) {
      verbose = 0;
    } else if (v && (!strcmp(a, "-o") || !strcmp(a, "--output"))) {
      out = v, i++;
    } else if (v && !strcmp(a, "--component")) {
      component = v, i++;
    } else if (v && !strcmp(a, "--format")) {
      format = v, i++;
    } else if (v && !strcmp(a, "--dtype")) {
      dtype = v, i++;
    } else if (v && !strcmp(a, "--tokenizer")) {
      tokenizer = v, i++;
    } else if (v && !strcmp(a, "--seed")) {
      char *end;
      seed = strtoull(v, &end, 10), i++;
      if (*end || !*v) {
        fprintf(stderr, "sdgen: --seed wants a non-negative integer, got '%s'\n", v);
        return 2;
      }
    } else if (v && !strcmp(a, "--threads")) {
      threads = atoi(v), i++;
    } else {
      fprintf(stderr, "sdgen: unknown or incomplete option '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  int single = !strcmp(format, "single");
  if (!single && strcmp(format, "diffusers") != 0) {
    fprintf(stderr, "sdgen: --format is diffusers or single, not '%s'\n", format);
    return 2;
  }
  int cn = !strcmp(component, "controlnet");
  if (!cn && strcmp(component, "base") != 0) {
    fprintf(stderr, "sdgen: --component is base or controlnet, not '%s'\n", component);
    return 2;
  }
  if (cn && single) {
    fprintf(stderr, "sdgen: a controlnet is written as a diffusers folder only\n");
    return 2;
  }
  if (strcmp(dtype, "f16") != 0 && strcmp(dtype, "f32") != 0) {
    fprintf(stderr, "sdgen: --dtype is f16 or f32, not '%s'\n", dtype);
    return 2;
  }
  if (!out && !do_list) {
    usage(stderr);
    return 2;
  }
  sdgen_arch arch;
  sdgen_spec spec;
  sdgen_arch_sd15(&arch);
  if ((cn ? sdgen_spec_build_controlnet(&arch, seed, &spec)
         : sdgen_spec_build(&arch, seed, &spec)) != 0) {
    fprintf(stderr, "sdgen: out of memory\n");
    return 1;
  }
  int rc = 0;
  char err[256] = "";
  sdgen_dtype dt = strcmp(dtype, "f16") == 0 ? SDGEN_F16 : SDGEN_F32;
  if (do_list) {
    list(&spec);
  } else if (cn) {
    rc = sdgen_write_controlnet(out, &arch, &spec, dt, threads, verbose, err);
  } else if (single) {
    rc = sdgen_write_single(out, &arch, &spec, dt, threads, verbose, err);
  } else {
    rc = sdgen_write_diffusers(out, &arch, &spec, tokenizer, dt, threads, verbose, err);
  }
  if (rc != 0) fprintf(stderr, "sdgen: %s\n", err);
  else if (out && verbose) fprintf(stderr, "sdgen: wrote %s (seed %llu, %s)\n", out, seed, dtype);
  sdgen_spec_free(&spec);
  return rc ? 1 : 0;
}
