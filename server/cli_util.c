/* cli_util.c: error lines, strict option/value parsing and atomic PNG output for the sdserve
 * command line. Values are parsed whole (no trailing junk, no silent truncation, no
 * wrap-around); outputs are written to a temporary file and renamed into place. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

void cli_error(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  for (char *p = msg; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  fprintf(stderr, "sdserve: error: %s\n", msg);
}

static const cli_opt *find_long(const cli_opt *opts, const char *name, size_t len) {
  for (const cli_opt *o = opts; o->name; o++)
    if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) return o;
  return NULL;
}

int cli_next(cli_parser *p, const char **value) {
  *value = NULL;
  if (p->i >= p->argc) return CLI_END;
  char *arg = p->argv[p->i++];
  if (p->positional_only || arg[0] != '-' || arg[1] == '\0') {
    *value = arg;
    return CLI_POSITIONAL;
  }
  if (strcmp(arg, "--") == 0) {
    p->positional_only = 1;
    return cli_next(p, value);
  }
  const cli_opt *o = NULL;
  const char *inline_val = NULL;
  if (arg[1] == '-') {
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    o = find_long(p->opts, name, eq ? (size_t)(eq - name) : strlen(name));
    if (eq) inline_val = eq + 1;
  } else if (arg[2] == '\0') {
    for (const cli_opt *s = p->opts; s->name; s++)
      if (s->short_name == arg[1]) o = s;
  }
  if (!o) {
    cli_error("%s: unknown option '%s' (see 'sdserve %s --help')", p->cmd, arg, p->cmd);
    return CLI_BAD;
  }
  if (!o->takes_value) {
    if (inline_val) {
      cli_error("%s: option --%s takes no value", p->cmd, o->name);
      return CLI_BAD;
    }
    return (int)(o - p->opts);
  }
  if (inline_val) {
    *value = inline_val;
  } else if (p->i < p->argc) {
    *value = p->argv[p->i++];
  } else {
    cli_error("%s: option --%s needs a value", p->cmd, o->name);
    return CLI_BAD;
  }
  return (int)(o - p->opts);
}

int cli_parse_int(const char *opt, const char *s, long lo, long hi, int *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (s[0] == '\0' || *end != '\0' || errno == ERANGE || s[0] == ' ') {
    cli_error("--%s: '%s' is not an integer", opt, s);
    return -1;
  }
  if (v < lo || v > hi) {
    cli_error("--%s: %ld is out of range (%ld..%ld)", opt, v, lo, hi);
    return -1;
  }
  *out = (int)v;
  return 0;
}

int cli_parse_float(const char *opt, const char *s, float *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (s[0] == '\0' || *end != '\0' || s[0] == ' ') {
    cli_error("--%s: '%s' is not a number", opt, s);
    return -1;
  }
  if (!isfinite(v) || !isfinite((float)v)) {
    cli_error("--%s: '%s' is not a finite number", opt, s);
    return -1;
  }
  *out = (float)v;
  return 0;
}

int cli_parse_seed(const char *opt, const char *s, uint64_t *out, int *random) {
  *random = 0;
  if (strcmp(s, "-1") == 0) {
    FILE *f = fopen("/dev/urandom", "rb");
    uint64_t v = 0;
    int ok = f && fread(&v, sizeof v, 1, f) == 1;
    if (f) fclose(f);
    if (!ok) {
      cli_error("--%s -1: cannot read /dev/urandom for a random seed", opt);
      return -1;
    }
    *out = v;
    *random = 1;
    return 0;
  }
  /* digits only: strtoull would accept "-5" (wrapping it) and leading spaces */
  int ok = s[0] != '\0';
  for (const char *c = s; *c; c++)
    if (*c < '0' || *c > '9') ok = 0;
  char *end = NULL;
  errno = 0;
  unsigned long long v = ok ? strtoull(s, &end, 10) : 0;
  if (!ok || errno == ERANGE) {
    cli_error("--%s: '%s' is not a seed (an integer 0..18446744073709551615, or -1 for "
              "random)", opt, s);
    return -1;
  }
  *out = (uint64_t)v;
  return 0;
}

/* Open a temporary file beside path for an atomic replace. Returns the FILE and sets
 * *tmp_path (malloc'ed), or NULL after printing the error. */
FILE *cli_open_output(const char *path, char **tmp_path) {
  *tmp_path = NULL;
  struct stat sb;
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    cli_error("cannot write %s: it is a directory", path);
    return NULL;
  }
  size_t n = strlen(path);
  char *tmp = malloc(n + 16);
  if (!tmp) {
    cli_error("out of memory");
    return NULL;
  }
  snprintf(tmp, n + 16, "%s.tmp-XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    cli_error("cannot write %s: %s", path, strerror(errno));
    free(tmp);
    return NULL;
  }
  mode_t mask = umask(0);
  umask(mask);
  (void)fchmod(fd, 0666 & ~mask);
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    cli_error("cannot write %s: %s", path, strerror(errno));
    close(fd);
    unlink(tmp);
    free(tmp);
    return NULL;
  }
  *tmp_path = tmp;
  return f;
}

/* Encode rgb as PNG with text into the temporary file f, flush it to disk, close it and rename
 * it over out. 0 on success; -1 after printing the error (*closed says whether f was closed;
 * the caller removes tmp). */
int cli_write_png(FILE *f, const char *tmp, const char *out, const uint8_t *rgb, int width,
                  int height, const api_png_text *text, int ntext, int *closed) {
  char err[SD_ERRMSG_MAX];
  *closed = 0;
  if (api_png_encode_file(f, rgb, width, height, text, ntext, err) != SD_OK) {
    cli_error("cannot write %s: %s", out, err);
    return -1;
  }
  int wr_err = fflush(f) != 0 || fsync(fileno(f)) != 0;
  int cl_err = fclose(f) != 0;
  *closed = 1;
  if (wr_err || cl_err || rename(tmp, out) != 0) {
    cli_error("cannot write %s: %s", out, strerror(errno));
    return -1;
  }
  return 0;
}

/* ---- the bundled demo model ------------------------------------------------------------- */

#ifndef SDSERVE_BUILD_ROOT
#define SDSERVE_BUILD_ROOT ""
#endif
#ifndef SDSERVE_DEMO_SOURCE
#define SDSERVE_DEMO_SOURCE ""
#endif
#ifndef SDSERVE_DEMO_INSTALLED
#define SDSERVE_DEMO_INSTALLED ""
#endif

static int is_file(const char *dir, const char *name) {
  char path[4096];
  struct stat st;
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) return 0;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Whether this executable lives under the meson build tree it was built in. */
static int run_from_build_tree(void) {
  static const char root[] = SDSERVE_BUILD_ROOT;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0 || sizeof root <= 1) return 0;
  exe[n] = '\0';
  size_t len = sizeof root - 1;
  return strncmp(exe, root, len) == 0 && exe[len] == '/';
}

const char *cli_default_model(const char **tried) {
  const char *dir = run_from_build_tree() ? SDSERVE_DEMO_SOURCE : SDSERVE_DEMO_INSTALLED;
  if (tried) *tried = dir;
  return dir[0] && is_file(dir, "model_index.json") ? dir : NULL;
}

char *cli_model_controlnet(const char *model) {
  struct stat st;
  if (stat(model, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
  size_t n = strlen(model) + sizeof "/controlnet";
  char *dir = malloc(n);
  if (!dir) return NULL;
  snprintf(dir, n, "%s/controlnet", model);
  if (is_file(dir, "config.json")) return dir;
  free(dir);
  return NULL;
}
