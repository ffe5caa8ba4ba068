/* main.c: the `sdserve` command: a table of subcommands and the top-level help.
 *
 * DESIGN. sdserve is one binary with subcommands (generate, tokenize now; serve and canny
 * come later), each in its own cli_*.c file with its own options and --help. main only
 * dispatches. Layering: this program uses the api layer (PNG, infotext) and the engine's
 * public sd.h; nothing below it knows about the command line.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#ifndef SDSERVE_VERSION
#define SDSERVE_VERSION "unknown"
#endif

typedef struct cli_cmd {
  const char *name;
  cli_cmd_fn run;
  const char *summary;
} cli_cmd;

static const cli_cmd commands[] = {
    {"generate", cli_generate, "generate an image from a text prompt into a PNG file"},
    {"tokenize", cli_tokenize, "print the 77 CLIP token ids of a text"},
    {"canny", cli_canny, "make a Canny edge map (a ControlNet control image) from a PNG"},
    {"serve", cli_serve, "run the HTTP service (one model, many clients)"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdserve COMMAND [options]\n"
          "\n"
          "sdserve runs Stable Diffusion 1.x models on the CPU, matching diffusers.\n"
          "\n"
          "commands:\n");
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out,
          "\n"
          "  sdserve COMMAND --help   options of a command\n"
          "  sdserve --version        print the version\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    usage(stdout);
    return CLI_EXIT_OK;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("sdserve %s\n", SDSERVE_VERSION);
    return CLI_EXIT_OK;
  }
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(cmd, commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  cli_error("unknown command '%s' (see 'sdserve --help')", cmd);
  return CLI_EXIT_USAGE;
}
