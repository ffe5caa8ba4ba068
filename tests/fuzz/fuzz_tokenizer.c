/* fuzz_tokenizer.c: fuzz target for the CLIP tokenizer (engine/tokenizer.c, unicode.c).
 *
 * Every input is tokenized as a prompt with a small built-in vocabulary (the 512 byte symbols,
 * a few merges, the two special tokens), checking the ids' invariants: all in the vocabulary,
 * and the 77 SD ids equal to [BOS] + ids[:75] + [EOS] padded with EOS. An input holding NUL
 * bytes is also read as "vocab.json NUL merges.txt NUL prompt" and, when those load, its
 * prompt is tokenized too. Built by driver.c (gcc, meson test) or by libFuzzer (run.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "unicode.h"

static sd__tokenizer *builtin;
static int builtin_size;

static int printable_byte(unsigned b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* JSON for the 512 byte symbols (GPT-2 bytes_to_unicode), some merges' results and the
 * special tokens, in id order. */
static char *builtin_vocab(size_t *len, int *count) {
  static const char *const extra[] = {"th", "the</w>", "an", "and</w>", "re", "red</w>", "<|startoftext|>",
                                      "<|endoftext|>"};
  char *js = malloc(64 * 1024), *p = js;
  int id = 0;
  unsigned shifted = 0;
  p += sprintf(p, "{");
  for (unsigned b = 0; b < 256; b++) {
    uint32_t c = printable_byte(b) ? b : 256 + shifted++;
    unsigned char u[4];
    size_t n = sd__utf8_encode(c, u);
    for (int end = 0; end < 2; end++) {
      p += sprintf(p, "%s\"", id ? "," : "");
      if (c == '"' || c == '\\') *p++ = '\\';
      memcpy(p, u, n);
      p += n;
      p += sprintf(p, "%s\":%d", end ? "</w>" : "", id++);
    }
  }
  for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
    p += sprintf(p, ",\"%s\":%d", extra[i], id++);
  p += sprintf(p, "}");
  *len = (size_t)(p - js);
  *count = id;
  return js;
}

static void check_ids(const sd__tokenizer *t, const char *text, int max_id) {
  sd_error err = {0};
  int32_t *ids = NULL, sd[SD_TOKENS];
  size_t n = 0;
  int truncated = -1;
  if (sd__tokenize(t, text, &ids, &n, &err) != SD_OK) return; /* only out of memory */
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] > max_id) abort();
  err = (sd_error){0};
  if (sd__tokenize_sd(t, text, sd, &truncated, &err) == SD_OK) {
    size_t keep = n < SD_TOKENS - 2 ? n : SD_TOKENS - 2;
    if (sd[0] != sd__tokenizer_bos(t) || truncated != (n > SD_TOKENS - 2)) abort();
    for (size_t i = 0; i < keep; i++)
      if (sd[1 + i] != ids[i]) abort();
    for (size_t i = 1 + keep; i < SD_TOKENS; i++)
      if (sd[i] != sd__tokenizer_eos(t)) abort();
  }
  free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sd_error err = {0};
  if (!builtin) {
    static const char merges[] = "#version: 0.2\nt h\nth e</w>\na n\nan d</w>\nr e\nre d</w>\n";
    size_t vlen;
    char *vocab = builtin_vocab(&vlen, &builtin_size);
    if (sd__tokenizer_load_memory(vocab, vlen, merges, strlen(merges), &builtin, &err) != SD_OK)
      abort();
    free(vocab);
    if (sd__tokenizer_vocab_size(builtin) != builtin_size) abort();
  }
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  check_ids(builtin, text, builtin_size - 1);

  /* "vocab NUL merges NUL prompt": a fuzzed tokenizer */
  const uint8_t *z1 = memchr(data, 0, size);
  if (z1) {
    size_t vlen = (size_t)(z1 - data);
    const uint8_t *m = z1 + 1, *z2 = memchr(m, 0, size - vlen - 1);
    size_t mlen = z2 ? (size_t)(z2 - m) : size - vlen - 1;
    sd__tokenizer *t = NULL;
    err = (sd_error){0};
    if (sd__tokenizer_load_memory((const char *)data, vlen, (const char *)m, mlen, &t, &err) ==
        SD_OK) {
      check_ids(t, z2 ? text + (z2 + 1 - data) : "", INT32_MAX);
      sd__tokenizer_destroy(t);
    } else if (t || err.status == SD_OK || !err.msg[0]) {
      abort(); /* a failed load leaves nothing behind and says why */
    }
  }
  free(text);
  return 0;
}
