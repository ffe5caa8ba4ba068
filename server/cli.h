/* cli.h: what the sdserve subcommands share: the subcommand signature, error reporting and
 * option parsing. Every failure is reported as ONE line on stderr starting "sdserve: error: "
 * and a non-zero exit: CLI_EXIT_USAGE (2) for a bad command line, CLI_EXIT_FAIL (1) for
 * anything that goes wrong while running (model, files, generation).
 */
#ifndef SRV_CLI_H
#define SRV_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "png_io.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

/* A subcommand: argv[0] is the subcommand's name; returns the process exit status. */
typedef int (*cli_cmd_fn)(int argc, char **argv);

int cli_generate(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_canny(int argc, char **argv);
int cli_serve(int argc, char **argv); /* serve.c: the HTTP service */

/* Print "sdserve: error: <message>\n" to stderr (newlines in the message become spaces, so
 * it stays one line). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- option parsing -------------------------------------------------------------------- */

typedef struct cli_opt {
  const char *name; /* long name without "--" */
  char short_name;  /* e.g. 'o' for -o, or 0 */
  int takes_value;
} cli_opt;

typedef struct cli_parser {
  int argc;
  char **argv;
  int i;               /* next argv index */
  const cli_opt *opts; /* terminated by a NULL name */
  const char *cmd;     /* subcommand name, for messages */
  int positional_only; /* after "--" */
} cli_parser;

#define CLI_END (-1)
#define CLI_POSITIONAL (-2)
#define CLI_BAD (-3)

/* Next item of the command line: the index of the option in opts (with *value set for
 * options that take one: "--name value", "--name=value", "-o value"), CLI_POSITIONAL (with
 * *value the argument), CLI_END, or CLI_BAD after printing the error (unknown option,
 * missing value, value given to a flag). */
int cli_next(cli_parser *p, const char **value);

/* Value parsers: 0 on success; on failure print one error line naming the option and
 * return -1. */
int cli_parse_int(const char *opt, const char *s, long lo, long hi, int *out);
int cli_parse_float(const char *opt, const char *s, float *out);
/* Seeds: any integer in 0..2^64-1, or -1 for a random seed read from /dev/urandom
 * (*random set). */
int cli_parse_seed(const char *opt, const char *s, uint64_t *out, int *random);

/* ---- output files ----------------------------------------------------------------------- */

/* Open a temporary file beside path for an atomic replace. Returns the FILE and sets
 * *tmp_path (malloc'ed), or NULL after printing the error. */
FILE *cli_open_output(const char *path, char **tmp_path);

/* Encode rgb (width x height x 3) as PNG with ntext text chunks into the temporary file f,
 * flush it to disk, close it and rename it over out. 0 on success; -1 after printing the
 * error (*closed says whether f was closed; the caller removes tmp). */
int cli_write_png(FILE *f, const char *tmp, const char *out, const uint8_t *rgb, int width,
                  int height, const api_png_text *text, int ntext, int *closed);

/* ---- the bundled demo model ----------------------------------------------------------- */

/* Folder of the bundled demo model: the source tree's models/demo for a binary run from its
 * build tree, else the installed copy (DATADIR/sdserve/models/demo). NULL when neither holds
 * a model; *tried (may be NULL) then names the folder looked for. */
const char *cli_default_model(const char **tried);

/* "<model>/controlnet" (malloc'ed) when the model is a folder with a ControlNet beside it in
 * that subfolder (the demo model's layout), else NULL. */
char *cli_model_controlnet(const char *model);

#endif
