/* test_config.c: the settings table of `sdserve serve` (config/config.c).
 *
 * Checks defaults, the precedence file < environment < flags (and --config vs SDSERVE_CONFIG),
 * bounds and bad values with the error naming source and key, unknown keys, lists (repeated
 * flags, comma-separated env and file), byte suffixes, --help, and that the committed
 * config/sdserve.conf.example is exactly what cfg_write_example generates and loads back to
 * the defaults. Usage: test_config PATH/TO/config/sdserve.conf.example */
#include <stdarg.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

#define MAXARGS 32

/* Loads from a NULL-terminated list of flags and env strings (separated by a NULL entry:
 * flags..., NULL, env..., NULL). Returns cfg_load's result; err gets the message. */
static int load(cfg_settings *s, char *err, int *exit_now, ...) {
  char *argv[MAXARGS], *envp[MAXARGS];
  int argc = 0, envc = 0;
  va_list ap;
  va_start(ap, exit_now);
  for (char *a; (a = va_arg(ap, char *)) != NULL;) argv[argc++] = a;
  for (char *e; (e = va_arg(ap, char *)) != NULL;) envp[envc++] = e;
  va_end(ap);
  argv[argc] = NULL;
  envp[envc] = NULL;
  int dummy;
  return cfg_load(argc, argv, envp, s, exit_now ? exit_now : &dummy, err);
}

/* Expects a load error whose message equals want (or starts with it when prefix). */
#define CHECK_LOAD_ERR(want, prefix, ...)                                                 \
  do {                                                                                    \
    cfg_settings s_;                                                                      \
    char e_[256];                                                                         \
    int rc_ = load(&s_, e_, NULL, __VA_ARGS__);                                           \
    CHECK(rc_ != 0);                                                                      \
    if (prefix) CHECK_INT(strncmp(e_, want, strlen(want)), 0);                            \
    else CHECK_STR(e_, want);                                                             \
    if (rc_ != 0 && (prefix ? strncmp(e_, want, strlen(want)) != 0 : strcmp(e_, want)))   \
      fprintf(stderr, "  got: %s\n", e_);                                                 \
    cfg_settings_free(&s_);                                                               \
  } while (0)

static char tmpdir[] = "/tmp/test_config_XXXXXX";

/* Writes text into tmpdir/name and returns the path (static buffer per call site: copy). */
static const char *write_file(const char *name, const char *text) {
  static char path[4][512];
  static int k;
  char *p = path[k++ % 4];
  snprintf(p, 512, "%s/%s", tmpdir, name);
  FILE *f = fopen(p, "w");
  if (!f) return NULL;
  fputs(text, f);
  fclose(f);
  return p;
}

static void test_defaults(void) {
  cfg_settings s;
  char err[256];
  CHECK_INT(load(&s, err, NULL, "--model", "m", NULL, NULL), 0);
  CHECK_STR(s.model, "m");
  CHECK_STR(s.host, "127.0.0.1");
  CHECK_INT(s.port, 7860);
  CHECK_INT(s.workers, 1);
  CHECK_INT(s.queue, 16);
  CHECK_INT(s.threads, 0);
  CHECK_INT(s.max_body_bytes, 16LL * 1024 * 1024);
  CHECK_INT(s.max_pixels, 1024LL * 1024);
  CHECK_INT(s.max_steps, 150);
  CHECK_INT(s.max_prompt_chars, 4000);
  CHECK_INT(s.max_batch, 4);
  CHECK_NEAR(s.request_timeout_s, 600, 0);
  CHECK_NEAR(s.retry_after_s, 5, 0);
  CHECK_INT(s.drain_timeout_s, 900);
  CHECK_STR(s.log_level, "info");
  CHECK(s.api_key == NULL);
  CHECK(s.tokenizer == NULL);
  CHECK_INT(s.n_controlnets, 0);
  CHECK_INT(s.n_cors_origins, 0);
  cfg_settings_free(&s);
  CHECK(s.model == NULL && s.host == NULL); /* free zeroes */
  cfg_settings_free(&s);                    /* and may run twice */
  cfg_settings_free(NULL);
}

static void test_precedence(void) {
  cfg_settings s;
  char err[256], cfgenv[600], cfgenv2[600];
  const char *file = write_file("a.conf",
                                "# comment\n"
                                "\n"
                                "model = /models/from-file   # trailing comment\n"
                                "port = 1000\n"
                                "max-steps = 20\n"
                                "api_key = \"with # hash\"  # quoted\n"
                                "workers=3\n");
  const char *file2 = write_file("b.conf", "port = 1111\n");
  CHECK(file && file2);
  snprintf(cfgenv, sizeof cfgenv, "SDSERVE_CONFIG=%s", file);
  snprintf(cfgenv2, sizeof cfgenv2, "SDSERVE_CONFIG=%s", file2);

  CHECK_INT(load(&s, err, NULL, "--config", (char *)file, NULL, NULL), 0);
  CHECK_STR(s.model, "/models/from-file");
  CHECK_INT(s.port, 1000);
  CHECK_INT(s.max_steps, 20);
  CHECK_INT(s.workers, 3);
  CHECK_STR(s.api_key, "with # hash");
  cfg_settings_free(&s);

  /* env over file, flag over env; settings a source does not name keep the lower one. */
  CHECK_INT(load(&s, err, NULL, NULL, cfgenv, "SDSERVE_PORT=2000", NULL), 0);
  CHECK_INT(s.port, 2000);
  CHECK_INT(s.max_steps, 20);
  cfg_settings_free(&s);
  CHECK_INT(load(&s, err, NULL, "--port", "3000", NULL, cfgenv, "SDSERVE_PORT=2000", NULL), 0);
  CHECK_INT(s.port, 3000);
  CHECK_STR(s.model, "/models/from-file");
  cfg_settings_free(&s);
  CHECK_INT(load(&s, err, NULL, "--port=3001", "--model", "flagmodel", NULL, cfgenv,
                 "SDSERVE_MODEL=envmodel", NULL), 0);
  CHECK_INT(s.port, 3001);
  CHECK_STR(s.model, "flagmodel");
  cfg_settings_free(&s);
  /* --config beats SDSERVE_CONFIG; the later of two equal flags wins. */
  CHECK_INT(load(&s, err, NULL, "--config", (char *)file2, "--model", "m", NULL, cfgenv, NULL),
            0);
  CHECK_INT(s.port, 1111);
  CHECK_INT(s.max_steps, 150);
  cfg_settings_free(&s);
  CHECK_INT(load(&s, err, NULL, "--model", "m", "--port", "1", "--port", "2", NULL, NULL), 0);
  CHECK_INT(s.port, 2);
  cfg_settings_free(&s);
  /* An empty string setting means unset (no API key). */
  CHECK_INT(load(&s, err, NULL, "--model", "m", NULL, cfgenv, "SDSERVE_API_KEY=", NULL), 0);
  CHECK(s.api_key == NULL);
  cfg_settings_free(&s);
}

static void test_bounds_and_bad_values(void) {
  CHECK_LOAD_ERR("SDSERVE_PORT: 70000 is above the maximum 65535", 0, "--model", "m", NULL,
                 "SDSERVE_PORT=70000", NULL);
  CHECK_LOAD_ERR("--workers: 0 is below the minimum 1", 0, "--model", "m", "--workers", "0",
                 NULL, NULL);
  CHECK_LOAD_ERR("--port: 99999999999999999999999 is above the maximum 65535", 0, "--model",
                 "m", "--port", "99999999999999999999999", NULL, NULL);
  CHECK_LOAD_ERR("--port: '1.5' is not an integer", 0, "--model", "m", "--port", "1.5", NULL,
                 NULL);
  CHECK_LOAD_ERR("--port: '' is not an integer", 0, "--model", "m", "--port=", NULL, NULL);
  CHECK_LOAD_ERR("--port: '80x' is not an integer", 0, "--model", "m", "--port", "80x", NULL,
                 NULL);
  CHECK_LOAD_ERR("--port: needs a value", 0, "--model", "m", "--port", NULL, NULL);
  CHECK_LOAD_ERR("SDSERVE_REQUEST_TIMEOUT_S: 'nan' is not a finite number", 0, "--model", "m",
                 NULL, "SDSERVE_REQUEST_TIMEOUT_S=nan", NULL);
  CHECK_LOAD_ERR("--request-timeout-s: '1e400' is not a finite number", 0, "--model", "m",
                 "--request-timeout-s", "1e400", NULL, NULL);
  CHECK_LOAD_ERR("--request-timeout-s: 'inf' is not a finite number", 0, "--model", "m",
                 "--request-timeout-s", "inf", NULL, NULL);
  CHECK_LOAD_ERR("--retry-after-s: -1 is below the minimum 0", 0, "--model", "m",
                 "--retry-after-s", "-1", NULL, NULL);
  CHECK_LOAD_ERR("--log-level: 'verbose' is not one of debug|info|warn|error", 0, "--model",
                 "m", "--log-level", "verbose", NULL, NULL);
  CHECK_LOAD_ERR("--max-body-bytes: '16X' is not a size", 1, "--model", "m",
                 "--max-body-bytes", "16X", NULL, NULL);
  CHECK_LOAD_ERR("--max-body-bytes: 2G is above the maximum 1073741824", 0, "--model", "m",
                 "--max-body-bytes", "2G", NULL, NULL);
  CHECK_LOAD_ERR("--max-body-bytes: 99999999999G is above the maximum", 1, "--model", "m",
                 "--max-body-bytes", "99999999999G", NULL, NULL);
  CHECK_LOAD_ERR("SDSERVE_MAX_BODY_BYTES: 512 is below the minimum 1024", 0, "--model", "m",
                 NULL, "SDSERVE_MAX_BODY_BYTES=512", NULL);
  CHECK_LOAD_ERR("stray: unexpected argument", 1, "--model", "m", "stray", NULL, NULL);

  cfg_settings s;
  char err[256];
  /* No model anywhere is fine here: serve then takes the bundled demo model. */
  CHECK_INT(load(&s, err, NULL, NULL, NULL), 0);
  CHECK(s.model == NULL);
  cfg_settings_free(&s);
  CHECK_INT(load(&s, err, NULL, "--model", "m", "--max-body-bytes", "1k", NULL,
                 "SDSERVE_MAX_PIXELS=4096", NULL), 0);
  CHECK_INT(s.max_body_bytes, 1024);
  CHECK_INT(s.max_pixels, 4096);
  cfg_settings_free(&s);
  CHECK_INT(load(&s, err, NULL, "--model", "m", "--max-body-bytes", "1GiB", "--port", "+65535",
                 "--request-timeout-s", "2.5", NULL, NULL), 0);
  CHECK_INT(s.max_body_bytes, 1024LL * 1024 * 1024);
  CHECK_INT(s.port, 65535);
  CHECK_NEAR(s.request_timeout_s, 2.5, 0);
  cfg_settings_free(&s);
}

static void test_unknown_keys(void) {
  char path_err[700];
  const char *bad = write_file("bad.conf", "port = 1\n\nprot = 2\n");
  snprintf(path_err, sizeof path_err, "%s:3: unknown key 'prot'", bad);
  CHECK_LOAD_ERR(path_err, 0, "--model", "m", "--config", (char *)bad, NULL, NULL);
  const char *bad2 = write_file("bad2.conf", "workers = 1000\n");
  snprintf(path_err, sizeof path_err, "%s:1: workers: 1000 is above the maximum 64", bad2);
  CHECK_LOAD_ERR(path_err, 0, "--model", "m", "--config", (char *)bad2, NULL, NULL);
  const char *bad3 = write_file("bad3.conf", "just words\n");
  snprintf(path_err, sizeof path_err, "%s:1: expected `key = value`", bad3);
  CHECK_LOAD_ERR(path_err, 1, "--model", "m", "--config", (char *)bad3, NULL, NULL);
  CHECK_LOAD_ERR("--prot: unknown option", 1, "--model", "m", "--prot", "1", NULL, NULL);
  CHECK_LOAD_ERR("SDSERVE_PROT: unknown setting", 1, "--model", "m", NULL, "SDSERVE_PROT=1",
                 NULL);
  CHECK_LOAD_ERR("/nonexistent/x.conf: cannot open", 1, "--model", "m", NULL,
                 "SDSERVE_CONFIG=/nonexistent/x.conf", NULL);
  /* Other programs' variables are not ours to judge. */
  cfg_settings s;
  char err[256];
  CHECK_INT(load(&s, err, NULL, "--model", "m", NULL, "PATH=/bin", "SDSERVEX=1", NULL), 0);
  cfg_settings_free(&s);
}

static void test_lists(void) {
  cfg_settings s;
  char err[256], cfgenv[600];
  CHECK_INT(load(&s, err, NULL, "--model", "m", "--controlnet", "a,b", "--controlnet", "c",
                 NULL, NULL), 0);
  CHECK_INT(s.n_controlnets, 2); /* flags: one path each, commas kept */
  if (s.n_controlnets == 2) {
    CHECK_STR(s.controlnets[0], "a,b");
    CHECK_STR(s.controlnets[1], "c");
  }
  cfg_settings_free(&s);
  CHECK_INT(load(&s, err, NULL, "--model", "m", NULL,
                 "SDSERVE_CORS_ORIGINS= http://a.test , https://b.test,,", NULL), 0);
  CHECK_INT(s.n_cors_origins, 2);
  if (s.n_cors_origins == 2) {
    CHECK_STR(s.cors_origins[0], "http://a.test");
    CHECK_STR(s.cors_origins[1], "https://b.test");
  }
  cfg_settings_free(&s);
  /* file appends repeated keys; env replaces the file's list; flags replace env's. */
  const char *file = write_file("l.conf", "controlnet = f1, f2\ncontrolnet = f3\nmodel = m\n");
  snprintf(cfgenv, sizeof cfgenv, "SDSERVE_CONFIG=%s", file);
  CHECK_INT(load(&s, err, NULL, NULL, cfgenv, NULL), 0);
  CHECK_INT(s.n_controlnets, 3);
  if (s.n_controlnets == 3) CHECK_STR(s.controlnets[2], "f3");
  cfg_settings_free(&s);
  CHECK_INT(load(&s, err, NULL, NULL, cfgenv, "SDSERVE_CONTROLNET=e1", NULL), 0);
  CHECK_INT(s.n_controlnets, 1);
  if (s.n_controlnets == 1) CHECK_STR(s.controlnets[0], "e1");
  cfg_settings_free(&s);
  CHECK_INT(load(&s, err, NULL, "--controlnet", "x", NULL, cfgenv, "SDSERVE_CONTROLNET=e1", NULL),
            0);
  CHECK_INT(s.n_controlnets, 1);
  if (s.n_controlnets == 1) CHECK_STR(s.controlnets[0], "x");
  cfg_settings_free(&s);
}

/* Reads a whole file into a malloc'd string (NULL if unreadable). */
static char *slurp(FILE *f) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  if (!buf) return NULL;
  for (size_t k; (k = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
    n += k;
    if (n + 1 == cap) {
      char *g = realloc(buf, cap *= 2);
      if (!g) {
        free(buf);
        return NULL;
      }
      buf = g;
    }
  }
  buf[n] = '\0';
  return buf;
}

static void test_help_and_example(const char *committed_path) {
  char *help = NULL, *gen = NULL, *committed = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&help, &len);
  cfg_print_help(m);
  fclose(m);
  CHECK(strstr(help, "--port N") != NULL);
  CHECK(strstr(help, "SDSERVE_MAX_BODY_BYTES, default 16M, 1024..1073741824") != NULL);
  CHECK(strstr(help, "--controlnet PATH") != NULL);
  free(help);

  m = open_memstream(&gen, &len);
  cfg_write_example(m);
  fclose(m);
  FILE *f = fopen(committed_path, "r");
  CHECK(f != NULL);
  if (f) {
    committed = slurp(f);
    fclose(f);
  }
  CHECK(committed != NULL && strcmp(gen, committed) == 0);
  if (committed && strcmp(gen, committed) != 0)
    fprintf(stderr, "  %s is stale: regenerate it with\n"
                    "  sdserve serve --print-example-config > config/sdserve.conf.example\n",
            committed_path);

  /* Uncommenting every `#key = value` line gives back the defaults. */
  char *un = malloc(strlen(gen) + 1), *o = un;
  for (const char *p = gen; *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p + 1) : strlen(p);
    if (p[0] == '#' && p[1] != ' ' && memchr(p, '=', n)) p++, n--;
    memcpy(o, p, n);
    o += n;
    p += n;
  }
  *o = '\0';
  const char *path = write_file("example.conf", un);
  cfg_settings a, b;
  char err[256];
  CHECK_INT(load(&a, err, NULL, "--model", "m", NULL, NULL), 0);
  int rc = load(&b, err, NULL, "--config", (char *)path, "--model", "m", NULL, NULL);
  CHECK_INT(rc, 0);
  if (rc) fprintf(stderr, "  %s\n", err);
  CHECK_INT(b.port, a.port);
  CHECK_STR(b.host, a.host);
  CHECK_INT(b.max_body_bytes, a.max_body_bytes);
  CHECK_INT(b.max_pixels, a.max_pixels);
  CHECK_NEAR(b.request_timeout_s, a.request_timeout_s, 0);
  CHECK_STR(b.log_level, a.log_level);
  CHECK_INT(b.drain_timeout_s, a.drain_timeout_s);
  cfg_settings_free(&a);
  cfg_settings_free(&b);
  free(un);
  free(gen);
  free(committed);

  int exit_now = 0;
  cfg_settings s;
  fflush(stdout);
  FILE *saved = stdout;
  stdout = fopen("/dev/null", "w"); /* --help prints to stdout */
  CHECK_INT(load(&s, err, &exit_now, "--port", "bad", "--help", NULL, NULL), 0);
  fclose(stdout);
  stdout = saved;
  CHECK_INT(exit_now, 1);
  cfg_settings_free(&s);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_config PATH/TO/sdserve.conf.example\n");
    return 2;
  }
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_defaults();
  test_precedence();
  test_bounds_and_bad_values();
  test_unknown_keys();
  test_lists();
  test_help_and_example(argv[1]);
  const char *names[] = {"a.conf", "b.conf", "bad.conf", "bad2.conf", "bad3.conf", "l.conf",
                         "example.conf"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
    unlink(p);
  }
  rmdir(tmpdir);
  return check_exit();
}
