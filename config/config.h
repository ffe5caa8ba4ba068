/* config.h: the settings of `sdserve serve`, read from one table.
 *
 * Every setting is one row of a static table in config.c (name, type, default, bounds, env
 * name SDSERVE_<NAME>, flag --name, help). Sources, in increasing precedence: a config file
 * (`--config FILE` or SDSERVE_CONFIG), the environment (SDSERVE_*), command-line flags.
 * Config file format: one `key = value` per line; `#` starts a comment (whole line, or after
 * whitespace); blank lines ignored; keys are the flag names without `--` (dashes or
 * underscores); lists are comma-separated; values may be wrapped in double quotes.
 * This module depends on nothing else of ours (server -> config, never the other way). */
#ifndef SDSERVE_CONFIG_H
#define SDSERVE_CONFIG_H

#include <stdio.h>

typedef struct cfg_settings {
  char *host; int port; char *model; char *tokenizer;
  char **controlnets; int n_controlnets;          /* --controlnet may repeat */
  int workers; int queue; int threads;            /* threads per worker, 0 = auto */
  long long max_body_bytes; long long max_pixels; int max_steps; int max_prompt_chars;
  int max_batch; double request_timeout_s;        /* deadline from enqueue to done */
  char *api_key;                                  /* NULL = no auth */
  char *api_auth;   /* "user:pass[,user2:pass2]": HTTP Basic as A1111's --api-auth; NULL = none
                       (added for the A1111 API, issue 6) */
  char **cors_origins; int n_cors_origins;
  char *log_level;                                /* debug|info|warn|error */
  double retry_after_s;                           /* Retry-After on 503 */
  int drain_timeout_s;
} cfg_settings;

/* Reads the settings from the config file, envp (NULL-terminated "KEY=VALUE" strings; NULL =
 * none) and argv (the arguments after "serve"; argv[0] is the first of them, argc counts them),
 * in that order of precedence, into *out (zeroed first; free with cfg_settings_free, also on
 * error). Returns 0 on success. On error returns nonzero and writes one line naming the source
 * and the key into err (256 bytes), e.g. "SDSERVE_PORT: 70000 is above the maximum 65535".
 * For --help prints the help to stdout, sets *exit_now = 1 and returns 0; likewise
 * --print-example-config prints cfg_write_example's text. */
int cfg_load(int argc, char **argv, char **envp, cfg_settings *out, int *exit_now, char *err);

/* Frees everything *s owns and zeroes it. Accepts NULL and a zeroed struct. */
void cfg_settings_free(cfg_settings *s);

/* Writes the `sdserve serve --help` text, generated from the table, to f. */
void cfg_print_help(FILE *f);

/* Writes the example config file (every setting, commented, with its default), generated
 * from the table, to f. config/sdserve.conf.example is this output (checked by test_config). */
void cfg_write_example(FILE *f);

#endif
