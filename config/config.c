/* config.c: one table of `sdserve serve` settings, and the three sources that fill it.
 *
 * Each setting is one row of `settings[]` below: its name, type, default, bounds, help. The
 * environment name (SDSERVE_ + NAME in capitals), the flag (--name, dashes for underscores),
 * the config-file key (the name; dashes also accepted), the --help text and the example config
 * are all derived from that row, so they cannot drift apart. Sources apply in increasing
 * precedence: defaults, config file, environment, flags. A list set by a higher source
 * replaces the lower source's list; repeated flags (or repeated file keys) append.
 * Not here: what the settings mean to the server (server/ reads the filled struct). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define CFG_ERR_LEN 256

typedef enum cfg_type {
  CFG_INT,    /* int field, decimal integer */
  CFG_LONG,   /* long long field, decimal integer */
  CFG_BYTES,  /* long long field, integer with optional suffix k, M, G (x1024) */
  CFG_DOUBLE, /* double field, finite decimal number */
  CFG_STRING, /* char * field; empty value = NULL */
  CFG_LIST,   /* char ** field + int count field; comma-separated in file and env */
} cfg_type;

typedef struct cfg_row {
  const char *name;    /* file key; flag and env name derive from it */
  cfg_type type;
  size_t off;          /* offset of the value in cfg_settings */
  size_t count_off;    /* CFG_LIST: offset of the int count */
  const char *def;     /* default as text, parsed like any other source; NULL = unset */
  double min, max;     /* bounds for numbers (inclusive) */
  const char *choices; /* CFG_STRING: '|'-separated allowed values, or NULL */
  const char *metavar; /* shown in --help */
  const char *help;
} cfg_row;

#define F(field) offsetof(cfg_settings, field)
static const cfg_row settings[] = {
    {"model", CFG_STRING, F(model), 0, NULL, 0, 0, NULL, "PATH",
     "Model folder (diffusers layout) or .safetensors file, loaded once at start; unset = the "
     "bundled demo model."},
    {"controlnet", CFG_LIST, F(controlnets), F(n_controlnets), NULL, 0, 0, NULL, "PATH",
     "ControlNet model folder; the flag may repeat (a list, comma-separated in file and env); "
     "unset = the model's controlnet/ folder when it has one."},
    {"tokenizer", CFG_STRING, F(tokenizer), 0, NULL, 0, 0, NULL, "PATH",
     "CLIP tokenizer folder (vocab.json + merges.txt); default: the model's tokenizer/."},
    {"host", CFG_STRING, F(host), 0, "127.0.0.1", 0, 0, NULL, "ADDR",
     "Address to listen on (0.0.0.0 for every interface)."},
    {"port", CFG_INT, F(port), 0, "7860", 1, 65535, NULL, "N", "TCP port to listen on."},
    {"workers", CFG_INT, F(workers), 0, "1", 1, 64, NULL, "N",
     "Worker threads running generations at the same time (they share the model)."},
    {"queue", CFG_INT, F(queue), 0, "16", 1, 100000, NULL, "N",
     "Jobs that may wait for a worker; beyond that requests get 503 + Retry-After."},
    {"threads", CFG_INT, F(threads), 0, "0", 0, 256, NULL, "N",
     "Compute threads per worker; 0 = the machine's cores divided by the workers."},
    {"max_body_bytes", CFG_BYTES, F(max_body_bytes), 0, "16M", 1024, 1073741824.0, NULL,
     "BYTES", "Largest request body (suffix k, M, G); larger ones get 413 before reading."},
    {"max_pixels", CFG_LONG, F(max_pixels), 0, "1048576", 4096, 16777216.0, NULL, "N",
     "Largest width x height of one image."},
    {"max_steps", CFG_INT, F(max_steps), 0, "150", 1, 1000, NULL, "N",
     "Most denoising steps a request may ask for."},
    {"max_prompt_chars", CFG_INT, F(max_prompt_chars), 0, "4000", 1, 1000000, NULL, "N",
     "Longest prompt (and negative prompt) in characters."},
    {"max_batch", CFG_INT, F(max_batch), 0, "4", 1, 64, NULL, "N",
     "Most images one request may ask for (batch_size)."},
    {"request_timeout_s", CFG_DOUBLE, F(request_timeout_s), 0, "600", 0.1, 86400, NULL,
     "SECONDS", "Deadline from enqueue to done; a job past it is stopped and answered 504."},
    {"api_key", CFG_STRING, F(api_key), 0, NULL, 0, 0, NULL, "KEY",
     "If set, requests need `Authorization: Bearer KEY` (401 otherwise)."},
    {"api_auth", CFG_STRING, F(api_auth), 0, NULL, 0, 0, NULL, "USER:PASS",
     "HTTP Basic user:pass list (comma-separated), as A1111's --api-auth; either it or api_key "
     "authorizes."},
    {"cors_origins", CFG_LIST, F(cors_origins), F(n_cors_origins), NULL, 0, 0, NULL, "ORIGIN",
     "Origins allowed by CORS (the flag may repeat; * = any); empty = no CORS headers."},
    {"log_level", CFG_STRING, F(log_level), 0, "info", 0, 0, "debug|info|warn|error", "LEVEL",
     "Least severe log level written to stderr: debug, info, warn or error."},
    {"retry_after_s", CFG_DOUBLE, F(retry_after_s), 0, "5", 0, 3600, NULL, "SECONDS",
     "Retry-After sent with 503 when the queue is full or the server is draining."},
    {"drain_timeout_s", CFG_INT, F(drain_timeout_s), 0, "900", 0, 86400, NULL, "SECONDS",
     "On SIGTERM, longest wait for queued and running jobs before exiting anyway."},
};
#undef F
#define NSETTINGS (sizeof settings / sizeof settings[0])

/* Where a value came from; lists remember it so a higher source replaces, not appends. */
enum { SRC_NONE, SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG };

typedef struct cfg_loader {
  cfg_settings *out;
  int list_src[NSETTINGS]; /* source of each list's current items */
  char *err;
} cfg_loader;

static void set_err(char *err, const char *where, const char *fmt, const char *a,
                    const char *b) {
  char msg[CFG_ERR_LEN];
  snprintf(msg, sizeof msg, fmt, a, b);
  char line[2 * CFG_ERR_LEN + 4]; /* long file names or values are cut, never overrun */
  snprintf(line, sizeof line, "%s: %s", where, msg);
  snprintf(err, CFG_ERR_LEN, "%.*s", CFG_ERR_LEN - 1, line);
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

/* Flag name of a row: "--" + name with '_' -> '-' (buf at least 64 bytes). */
static void flag_name(const cfg_row *r, char *buf, size_t n) {
  snprintf(buf, n, "--%s", r->name);
  for (char *p = buf + 2; *p; p++)
    if (*p == '_') *p = '-';
}

static void env_name(const cfg_row *r, char *buf, size_t n) {
  snprintf(buf, n, "SDSERVE_%s", r->name);
  for (char *p = buf + 8; *p; p++) *p = (char)toupper((unsigned char)*p);
}

/* Finds a row by key, treating '-' and '_' alike, case-sensitively; NULL if unknown. */
static const cfg_row *find_row(const char *key, size_t len) {
  for (size_t i = 0; i < NSETTINGS; i++) {
    const char *n = settings[i].name;
    size_t j = 0;
    for (; j < len && n[j]; j++)
      if (!(key[j] == n[j] || (key[j] == '-' && n[j] == '_'))) break;
    if (j == len && n[j] == '\0') return &settings[i];
  }
  return NULL;
}

/* Parses a decimal integer with an optional byte suffix; 0 ok, -1 not a number, 1 overflow
 * (then *v is LLONG_MAX or LLONG_MIN in the overflow's direction). */
static int parse_integer(const char *s, int bytes, long long *v) {
  char *end;
  if (!*s || isspace((unsigned char)*s)) return -1;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (end == s) return -1;
  int over = errno == ERANGE;
  long long mult = 1;
  if (bytes && *end) {
    switch (*end) {
    case 'k': case 'K': mult = 1024LL; break;
    case 'm': case 'M': mult = 1024LL * 1024; break;
    case 'g': case 'G': mult = 1024LL * 1024 * 1024; break;
    default: return -1;
    }
    end++;
    if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0) end += strlen(end);
  }
  if (*end) return -1;
  if (!over && mult > 1 && (x > LLONG_MAX / mult || x < LLONG_MIN / mult)) over = 1;
  if (over) {
    *v = x < 0 ? LLONG_MIN : LLONG_MAX;
    return 1;
  }
  *v = x * mult;
  return 0;
}

/* Appends a copy of item to a list field; 0 ok, -1 out of memory. */
static int list_append(cfg_settings *s, const cfg_row *r, const char *item, size_t len) {
  char ***items = (char ***)((char *)s + r->off);
  int *count = (int *)((char *)s + r->count_off);
  char **grown = realloc(*items, (size_t)(*count + 1) * sizeof **items);
  if (!grown) return -1;
  *items = grown;
  char *copy = malloc(len + 1);
  if (!copy) return -1;
  memcpy(copy, item, len);
  copy[len] = '\0';
  grown[(*count)++] = copy;
  return 0;
}

static void list_clear(cfg_settings *s, const cfg_row *r) {
  char ***items = (char ***)((char *)s + r->off);
  int *count = (int *)((char *)s + r->count_off);
  for (int i = 0; i < *count; i++) free((*items)[i]);
  free(*items);
  *items = NULL;
  *count = 0;
}

/* Checks a number against the row's bounds; 0 ok, else writes err. */
static int check_bounds(const cfg_row *r, double v, const char *text, const char *where,
                        char *err) {
  char bound[64];
  if (v < r->min) {
    snprintf(bound, sizeof bound, "%.15g", r->min);
    set_err(err, where, "%s is below the minimum %s", text, bound);
    return -1;
  }
  if (v > r->max) {
    snprintf(bound, sizeof bound, "%.15g", r->max);
    set_err(err, where, "%s is above the maximum %s", text, bound);
    return -1;
  }
  return 0;
}

/* Sets one setting from text. where names the source for errors ("--port", "SDSERVE_PORT",
 * "file.conf:3: port"). split: a list value is comma-separated. 0 ok, -1 error in err. */
static int apply(cfg_loader *L, const cfg_row *r, const char *text, int src, int split,
                 const char *where) {
  cfg_settings *s = L->out;
  char *field = (char *)s + r->off;
  size_t idx = (size_t)(r - settings);
  long long iv;
  int rc;
  switch (r->type) {
  case CFG_INT: case CFG_LONG: case CFG_BYTES:
    rc = parse_integer(text, r->type == CFG_BYTES, &iv);
    if (rc < 0) {
      set_err(L->err, where, r->type == CFG_BYTES ? "'%s' is not a size (an integer, "
              "optionally with suffix k, M or G)%s" : "'%s' is not an integer%s", text, "");
      return -1;
    }
    if (check_bounds(r, (double)iv, text, where, L->err)) return -1;
    if (r->type == CFG_INT) *(int *)field = (int)iv;
    else *(long long *)field = iv;
    break;
  case CFG_DOUBLE: {
    char *end;
    errno = 0;
    double d = *text && !isspace((unsigned char)*text) ? strtod(text, &end) : 0;
    if (!*text || isspace((unsigned char)*text) || *end || !isfinite(d) ||
        strpbrk(text, "xXnN")) { /* no hex floats, inf or nan */
      set_err(L->err, where, "'%s' is not a finite number%s", text, "");
      return -1;
    }
    if (check_bounds(r, d, text, where, L->err)) return -1;
    *(double *)field = d;
    break;
  }
  case CFG_STRING: {
    if (r->choices && *text) {
      size_t n = strlen(text);
      const char *c = r->choices;
      int ok = 0;
      while (*c && !ok) {
        size_t len = strcspn(c, "|");
        ok = len == n && strncmp(c, text, n) == 0;
        c += len + (c[len] == '|');
      }
      if (!ok) {
        set_err(L->err, where, "'%s' is not one of %s", text, r->choices);
        return -1;
      }
    }
    char *copy = NULL;
    if (*text && !(copy = xstrdup(text))) goto oom;
    free(*(char **)field);
    *(char **)field = copy;
    break;
  }
  case CFG_LIST:
    if (L->list_src[idx] != src) list_clear(s, r);
    L->list_src[idx] = src;
    if (!split) {
      if (*text && list_append(s, r, text, strlen(text))) goto oom;
      break;
    }
    for (const char *p = text; *p;) {
      size_t len = strcspn(p, ",");
      const char *a = p, *b = p + len;
      while (a < b && isspace((unsigned char)*a)) a++;
      while (b > a && isspace((unsigned char)b[-1])) b--;
      if (b > a && list_append(s, r, a, (size_t)(b - a))) goto oom;
      p += len + (p[len] == ',');
    }
    break;
  }
  return 0;
oom:
  set_err(L->err, where, "out of memory%s%s", "", "");
  return -1;
}

static char *trim(char *a) {
  while (isspace((unsigned char)*a)) a++;
  char *b = a + strlen(a);
  while (b > a && isspace((unsigned char)b[-1])) *--b = '\0';
  return a;
}

/* Reads `key = value` lines from path. 0 ok, -1 error in err. */
static int load_file(cfg_loader *L, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    set_err(L->err, path, "cannot open: %s%s", strerror(errno), "");
    return -1;
  }
  char line[4096], where[CFG_ERR_LEN];
  int lineno = 0, rc = 0;
  while (rc == 0 && fgets(line, sizeof line, f)) {
    lineno++;
    snprintf(where, sizeof where, "%s:%d", path, lineno);
    size_t n = strlen(line);
    if (n == sizeof line - 1 && line[n - 1] != '\n' && !feof(f)) {
      set_err(L->err, where, "line longer than %s bytes%s", "4095", "");
      rc = -1;
      break;
    }
    char *key = trim(line);
    if (*key == '\0' || *key == '#') continue;
    char *eq = strchr(key, '=');
    if (!eq) {
      set_err(L->err, where, "expected `key = value`, got '%s'%s", key, "");
      rc = -1;
      break;
    }
    *eq = '\0';
    char *value = trim(eq + 1);
    key = trim(key);
    if (*value == '"') { /* quoted: may hold '#'; only a comment may follow */
      char *close = strchr(value + 1, '"');
      char *rest = close ? trim(close + 1) : NULL;
      if (!close || (*rest && *rest != '#')) {
        set_err(L->err, where, "%s: badly quoted value%s", key, "");
        rc = -1;
        break;
      }
      *close = '\0';
      value++;
    } else {
      for (char *p = value; *p; p++)
        if (*p == '#' && (p == value || isspace((unsigned char)p[-1]))) {
          *p = '\0';
          break;
        }
      value = trim(value);
    }
    const cfg_row *r = find_row(key, strlen(key));
    if (!r) {
      set_err(L->err, where, "unknown key '%s'%s", key, "");
      rc = -1;
      break;
    }
    char w2[2 * CFG_ERR_LEN];
    snprintf(w2, sizeof w2, "%s: %s", where, r->name);
    rc = apply(L, r, value, SRC_FILE, 1, w2);
  }
  fclose(f);
  return rc;
}

/* Applies SDSERVE_* variables from envp. Unknown SDSERVE_* names are errors (a typo must not
 * be silently ignored), except SDSERVE_CONFIG (read earlier) and SDSERVE_BUILD_DIR (used by
 * run.sh and test.sh). */
static int load_env(cfg_loader *L, char **envp) {
  for (char **e = envp; e && *e; e++) {
    if (strncmp(*e, "SDSERVE_", 8) != 0) continue;
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    char name[CFG_ERR_LEN];
    snprintf(name, sizeof name, "%.*s", (int)(eq - *e), *e);
    if (strcmp(name, "SDSERVE_CONFIG") == 0 || strcmp(name, "SDSERVE_BUILD_DIR") == 0) continue;
    const cfg_row *r = NULL;
    for (size_t i = 0; i < NSETTINGS && !r; i++) {
      char en[64];
      env_name(&settings[i], en, sizeof en);
      if (strcmp(en, name) == 0) r = &settings[i];
    }
    if (!r) {
      set_err(L->err, name, "unknown setting (see sdserve serve --help)%s%s", "", "");
      return -1;
    }
    if (apply(L, r, eq + 1, SRC_ENV, 1, name)) return -1;
  }
  return 0;
}

/* Splits "--name=value" or "--name value"; returns the row (NULL if unknown), *value (NULL
 * if missing) and advances *i past a separate value. */
static const cfg_row *flag_row(int argc, char **argv, int *i, const char **value) {
  const char *a = argv[*i] + 2;
  size_t len = strcspn(a, "=");
  const cfg_row *r = find_row(a, len);
  if (a[len] == '=') *value = a + len + 1;
  else if (*i + 1 < argc) *value = argv[++*i];
  else *value = NULL;
  return r;
}

int cfg_load(int argc, char **argv, char **envp, cfg_settings *out, int *exit_now, char *err) {
  cfg_loader L = {.out = out, .err = err};
  const char *config_path = NULL;
  memset(out, 0, sizeof *out);
  *exit_now = 0;
  err[0] = '\0';
  /* First pass: --help, --print-example-config, --config and stray arguments. */
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      cfg_print_help(stdout);
      *exit_now = 1;
      return 0;
    }
    if (strcmp(a, "--print-example-config") == 0) {
      cfg_write_example(stdout);
      *exit_now = 1;
      return 0;
    }
    if (strncmp(a, "--", 2) != 0) {
      set_err(err, a, "unexpected argument (options start with --)%s%s", "", "");
      return -1;
    }
    if (strcmp(a, "--config") == 0 || strncmp(a, "--config=", 9) == 0) {
      config_path = a[8] == '=' ? a + 9 : i + 1 < argc ? argv[++i] : NULL;
      if (!config_path || !*config_path) {
        set_err(err, "--config", "needs a file name%s%s", "", "");
        return -1;
      }
      continue;
    }
    const char *v;
    (void)flag_row(argc, argv, &i, &v); /* skips its value; unknown flags fail below */
  }
  for (char **e = envp; !config_path && e && *e; e++)
    if (strncmp(*e, "SDSERVE_CONFIG=", 15) == 0 && (*e)[15]) config_path = *e + 15;

  for (size_t i = 0; i < NSETTINGS; i++)
    if (settings[i].def && apply(&L, &settings[i], settings[i].def, SRC_DEFAULT, 1, "default"))
      return -1;
  if (config_path && load_file(&L, config_path)) return -1;
  if (load_env(&L, envp)) return -1;
  for (int i = 0; i < argc; i++) {
    char where[CFG_ERR_LEN];
    const char *a = argv[i], *v;
    if (strcmp(a, "--config") == 0) {
      i++;
      continue;
    }
    if (strncmp(a, "--config=", 9) == 0) continue;
    snprintf(where, sizeof where, "%.*s", (int)strcspn(a, "="), a);
    const cfg_row *r = flag_row(argc, argv, &i, &v);
    if (!r) {
      set_err(err, where, "unknown option (see sdserve serve --help)%s%s", "", "");
      return -1;
    }
    if (!v) {
      set_err(err, where, "needs a value%s%s", "", "");
      return -1;
    }
    if (apply(&L, r, v, SRC_FLAG, 0, where)) return -1;
  }
  return 0;
}

void cfg_settings_free(cfg_settings *s) {
  if (!s) return;
  for (size_t i = 0; i < NSETTINGS; i++) {
    const cfg_row *r = &settings[i];
    if (r->type == CFG_STRING) free(*(char **)((char *)s + r->off));
    else if (r->type == CFG_LIST) list_clear(s, r);
  }
  memset(s, 0, sizeof *s);
}

/* "range 1..65535" or "" for rows without bounds. */
static void range_text(const cfg_row *r, char *buf, size_t n) {
  buf[0] = '\0';
  if (r->type == CFG_STRING && r->choices) snprintf(buf, n, "one of %s", r->choices);
  else if (r->type != CFG_STRING && r->type != CFG_LIST)
    snprintf(buf, n, "%.15g..%.15g", r->min, r->max);
}

/* The flag, environment name and range text of a row, as --help and the example show them. */
static void row_texts(const cfg_row *r, char fl[64], char en[64], char range[96]) {
  flag_name(r, fl, 64);
  env_name(r, en, 64);
  range_text(r, range, 96);
}

void cfg_print_help(FILE *f) {
  fprintf(f,
          "usage: sdserve serve [--model PATH] [options]\n"
          "\n"
          "Runs the HTTP service. Every option can also be set in the environment\n"
          "(SDSERVE_NAME) or in a config file (`name = value` lines, # comments); flags\n"
          "override the environment, which overrides the config file.\n"
          "\n"
          "  --config FILE\n"
          "      Config file to read first (also SDSERVE_CONFIG).\n"
          "  --print-example-config\n"
          "      Print an example config file with every setting and its default.\n");
  for (size_t i = 0; i < NSETTINGS; i++) {
    const cfg_row *r = &settings[i];
    char fl[64], en[64], range[96];
    row_texts(r, fl, en, range);
    fprintf(f, "  %s %s\n      %s\n      [%s%s%s%s%s]\n", fl, r->metavar, r->help, en,
            r->def ? ", default " : "", r->def ? r->def : "",
            *range ? ", " : "", range);
  }
  fprintf(f, "  --help\n      Print this help.\n");
}

void cfg_write_example(FILE *f) {
  fprintf(f,
          "# sdserve.conf.example: every setting of `sdserve serve`, with its default.\n"
          "# Generated by `sdserve serve --print-example-config` from the table in\n"
          "# config/config.c (tests/test_config.c checks this file matches it).\n"
          "# Format: `key = value` lines; # starts a comment; lists are comma-separated;\n"
          "# a value may be wrapped in double quotes. Use it with --config FILE or\n"
          "# SDSERVE_CONFIG=FILE; the environment (SDSERVE_*) and flags override it.\n");
  for (size_t i = 0; i < NSETTINGS; i++) {
    const cfg_row *r = &settings[i];
    char fl[64], en[64], range[96];
    row_texts(r, fl, en, range);
    fprintf(f, "\n# %s\n# flag %s, env %s%s%s\n#%s =%s%s\n", r->help, fl, en,
            *range ? "; " : "", range, r->name,
            r->def ? " " : "", r->def ? r->def : "");
  }
}
