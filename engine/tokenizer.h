/* tokenizer.h: CLIP's byte-level BPE tokenizer, as transformers' CLIPTokenizer (the one
 * diffusers uses): text cleanup, lowercasing, CLIP's pre-tokenisation regex, bytes to unicode,
 * merges by rank, "</w>" word ends, special tokens, truncation and padding to 77.
 */
#ifndef SD_TOKENIZER_H
#define SD_TOKENIZER_H

#include "internal.h"

#define SD_TOKENS 77

typedef struct sd__tokenizer sd__tokenizer;

/* Load vocab.json and merges.txt from a tokenizer folder. */
sd_status sd__tokenizer_load(const char *dir, sd__tokenizer **out, sd_error *err);
/* The same from the two files' bytes (fuzzing, tests). */
sd_status sd__tokenizer_load_memory(const char *vocab_json, size_t vocab_len,
                                    const char *merges_txt, size_t merges_len,
                                    sd__tokenizer **out, sd_error *err);
void sd__tokenizer_destroy(sd__tokenizer *t);

int sd__tokenizer_bos(const sd__tokenizer *t);
int sd__tokenizer_eos(const sd__tokenizer *t);
int sd__tokenizer_vocab_size(const sd__tokenizer *t);

/* BPE ids of text without BOS/EOS, malloc'ed into *ids (count *n). Invalid UTF-8 is
 * replaced, never refused. */
sd_status sd__tokenize(const sd__tokenizer *t, const char *text, int32_t **ids, size_t *n,
                       sd_error *err);

/* The 77 ids SD feeds the text encoder: [BOS] + ids[:75] + [EOS], padded with EOS.
 * *truncated (may be NULL) tells whether tokens were dropped. */
sd_status sd__tokenize_sd(const sd__tokenizer *t, const char *text, int32_t ids[SD_TOKENS],
                          int *truncated, sd_error *err);

#endif
