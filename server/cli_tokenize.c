/* cli_tokenize.c: `sdserve tokenize --tokenizer DIR TEXT`: print the 77 input ids the
 * engine's CLIP tokenizer gives TEXT ([BOS] ids[:75] [EOS] padded with EOS), space
 * separated on one line. A debugging aid for prompts and tokenizer folders. */
#include <stdio.h>

#include "cli.h"
#include "sd.h"

static const char tok_usage[] =
    "usage: sdserve tokenize --tokenizer DIR [--] TEXT\n"
    "\n"
    "Print the 77 token ids of TEXT (BOS, up to 75 ids, EOS, padded with EOS), space\n"
    "separated, using the vocab.json and merges.txt in DIR.\n"
    "\n"
    "  --tokenizer DIR   tokenizer folder (e.g. MODEL/tokenizer) (required)\n"
    "  -h, --help        this help\n";

enum { O_TOKENIZER, O_HELP };
static const cli_opt tok_opts[] = {{"tokenizer", 0, 1}, {"help", 'h', 0}, {NULL, 0, 0}};

int cli_tokenize(int argc, char **argv) {
  cli_parser p = {.argc = argc, .argv = argv, .i = 1, .opts = tok_opts, .cmd = "tokenize"};
  const char *dir = NULL, *text = NULL, *v;
  int o;
  while ((o = cli_next(&p, &v)) != CLI_END) {
    switch (o) {
    case CLI_BAD: return CLI_EXIT_USAGE;
    case O_HELP: fputs(tok_usage, stdout); return CLI_EXIT_OK;
    case O_TOKENIZER: dir = v; break;
    case CLI_POSITIONAL:
      if (text) {
        cli_error("tokenize: give the text as ONE argument (quote it)");
        return CLI_EXIT_USAGE;
      }
      text = v;
      break;
    }
  }
  if (!dir) {
    cli_error("tokenize: --tokenizer DIR is required");
    return CLI_EXIT_USAGE;
  }
  if (!text) {
    cli_error("tokenize: the TEXT to tokenize is missing");
    return CLI_EXIT_USAGE;
  }
  int32_t ids[77];
  char err[SD_ERRMSG_MAX];
  if (sd_tokenize_dir(dir, text, ids, err) != SD_OK) {
    cli_error("%s", err);
    return CLI_EXIT_FAIL;
  }
  for (int i = 0; i < 77; i++) printf("%s%d", i ? " " : "", (int)ids[i]);
  putchar('\n');
  return CLI_EXIT_OK;
}
