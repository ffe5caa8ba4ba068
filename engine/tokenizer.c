/* tokenizer.c: CLIP's byte-level BPE, as transformers 4.38's CLIPTokenizer (slow, with ftfy).
 *
 * Loading interns every token string once (vocab keys, merge parts and results, the 512 byte
 * symbols) in an open-addressing hash table, so BPE works on small integer symbols and a
 * merge lookup is one probe into a second table keyed by the symbol pair. Tokenising: split
 * out the exact special-token strings, clean each remaining segment (unicode.c), cut it with
 * CLIP's regex, map each piece's UTF-8 bytes to byte symbols ("</w>" on the last) and merge
 * the lowest-ranked pair everywhere until none applies, exactly as CLIPTokenizer.bpe does.
 * The tokenizer is immutable after loading: concurrent tokenize calls are safe.
 */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "unicode.h"

/* CLIPTokenizer reads at most 49152 - 256 - 2 merges (its slice of merges.txt). */
#define TK_MERGES_MAX (49152 - 256 - 2)
#define TK_FILE_MAX ((size_t)64 << 20)
#define TK_NONE UINT32_MAX

static const char BOS_STR[] = "<|startoftext|>";
static const char EOS_STR[] = "<|endoftext|>";

typedef struct tk_sym {
  size_t off;  /* string in the pool */
  uint32_t len;
  int32_t id;  /* vocab id, or -1 when the string is not in vocab.json */
} tk_sym;

typedef struct tk_merge {
  uint32_t a, b;    /* TK_NONE a = empty slot */
  uint32_t result;  /* symbol of a + b */
  int32_t rank;
} tk_merge;

struct sd__tokenizer {
  char *pool; /* interned strings, back to back */
  size_t pool_n, pool_cap;
  tk_sym *syms;
  uint32_t nsyms, syms_cap;
  uint32_t *slots; /* symbol hash: index + 1, 0 = empty */
  uint32_t slots_cap;
  tk_merge *merges;
  uint32_t merges_n, merges_cap;
  uint32_t byte_sym[256], byte_end_sym[256];
  int bos, eos, vocab_size;
};

/* ---- interning ---- */

static uint32_t hash_bytes(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static uint32_t sym_lookup(const sd__tokenizer *t, const char *s, size_t n) {
  uint32_t mask = t->slots_cap - 1, i = hash_bytes(s, n) & mask;
  for (;; i = (i + 1) & mask) {
    uint32_t v = t->slots[i];
    if (!v) return TK_NONE;
    const tk_sym *y = &t->syms[v - 1];
    if (y->len == n && (n == 0 || !memcmp(t->pool + y->off, s, n))) return v - 1;
  }
}

static int sym_rehash(sd__tokenizer *t, uint32_t cap) {
  uint32_t *slots = calloc(cap, sizeof *slots);
  if (!slots) return -1;
  for (uint32_t k = 0; k < t->nsyms; k++) {
    uint32_t i = hash_bytes(t->pool + t->syms[k].off, t->syms[k].len) & (cap - 1);
    while (slots[i]) i = (i + 1) & (cap - 1);
    slots[i] = k + 1;
  }
  free(t->slots);
  t->slots = slots;
  t->slots_cap = cap;
  return 0;
}

/* The symbol of string s (added with id -1 when new), or TK_NONE when out of memory. */
static uint32_t sym_intern(sd__tokenizer *t, const char *s, size_t n) {
  uint32_t k = sym_lookup(t, s, n);
  if (k != TK_NONE) return k;
  if (n > UINT32_MAX || t->nsyms >= (UINT32_MAX >> 2)) return TK_NONE;
  if ((uint64_t)(t->nsyms + 1) * 2 > t->slots_cap &&
      sym_rehash(t, t->slots_cap ? t->slots_cap * 2 : 1024))
    return TK_NONE;
  if (t->nsyms == t->syms_cap) {
    uint32_t cap = t->syms_cap ? t->syms_cap * 2 : 1024;
    tk_sym *y = realloc(t->syms, (size_t)cap * sizeof *y);
    if (!y) return TK_NONE;
    t->syms = y;
    t->syms_cap = cap;
  }
  if (t->pool_cap - t->pool_n < n) {
    size_t cap = t->pool_cap ? t->pool_cap : 4096;
    while (cap - t->pool_n < n) cap *= 2;
    char *p = realloc(t->pool, cap);
    if (!p) return TK_NONE;
    t->pool = p;
    t->pool_cap = cap;
  }
  if (n) memcpy(t->pool + t->pool_n, s, n); /* the pool is still NULL for a first "" */
  k = t->nsyms++;
  t->syms[k] = (tk_sym){t->pool_n, (uint32_t)n, -1};
  t->pool_n += n;
  uint32_t i = hash_bytes(s, n) & (t->slots_cap - 1);
  while (t->slots[i]) i = (i + 1) & (t->slots_cap - 1);
  t->slots[i] = k + 1;
  return k;
}

/* ---- merges ---- */

static uint32_t pair_hash(uint32_t a, uint32_t b) {
  uint64_t x = ((uint64_t)a << 32 | b) * 0x9E3779B97F4A7C15ull;
  return (uint32_t)(x >> 32);
}

static const tk_merge *merge_find(const sd__tokenizer *t, uint32_t a, uint32_t b) {
  uint32_t mask = t->merges_cap - 1;
  for (uint32_t i = pair_hash(a, b) & mask;; i = (i + 1) & mask) {
    const tk_merge *m = &t->merges[i];
    if (m->a == TK_NONE) return NULL;
    if (m->a == a && m->b == b) return m;
  }
}

/* Record merge (a, b) -> result at rank; a repeated pair takes the later rank, as the
 * dict CLIPTokenizer builds from the merges list does. */
static int merge_add(sd__tokenizer *t, uint32_t a, uint32_t b, uint32_t result, int32_t rank) {
  uint32_t mask = t->merges_cap - 1, i = pair_hash(a, b) & mask;
  for (;; i = (i + 1) & mask) {
    tk_merge *m = &t->merges[i];
    if (m->a == TK_NONE) break;
    if (m->a == a && m->b == b) {
      m->rank = rank;
      return 0;
    }
  }
  if ((uint64_t)(t->merges_n + 1) * 2 > t->merges_cap) return -1; /* sized in advance */
  t->merges[i] = (tk_merge){a, b, result, rank};
  t->merges_n++;
  return 0;
}

/* GPT-2/CLIP bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 to
 * U+0100 and up, in byte order. */
static uint32_t byte_to_unicode(unsigned b) {
  if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
  uint32_t n = 0;
  for (unsigned k = 0; k < b; k++)
    if (!((k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || (k >= 0xAE && k <= 0xFF))) n++;
  return 256 + n;
}

static sd_status load_vocab(sd__tokenizer *t, const char *json, size_t len, sd_error *err) {
  sd_json *root = NULL;
  sd_status st = sd__json_parse(json, len, &root, err);
  if (st != SD_OK) return st;
  if (root->type != SD_JSON_OBJECT) {
    st = sd__err(err, SD_ERR_FORMAT, "vocab.json: not a JSON object");
    goto out_free_json;
  }
  uint32_t cap = 1024;
  while ((uint64_t)cap < (uint64_t)root->count * 4 + 4096) cap *= 2;
  if (sym_rehash(t, cap)) {
    st = sd__err(err, SD_ERR_NOMEM, "vocab.json: out of memory");
    goto out_free_json;
  }
  for (const sd_json *m = root->child; m; m = m->next) {
    if (m->type != SD_JSON_NUMBER || !(m->num >= 0 && m->num <= INT32_MAX) ||
        m->num != (double)(int32_t)m->num) {
      st = sd__err(err, SD_ERR_FORMAT, "vocab.json: token \"%.40s\" has no integer id", m->key);
      goto out_free_json;
    }
    uint32_t k = sym_intern(t, m->key, m->key_len);
    if (k == TK_NONE) {
      st = sd__err(err, SD_ERR_NOMEM, "vocab.json: out of memory");
      goto out_free_json;
    }
    if (t->syms[k].id < 0) t->vocab_size++;
    t->syms[k].id = (int32_t)m->num; /* a repeated key: the last one wins, as in json.load */
  }
out_free_json:
  sd__json_free(root);
  return st;
}

static int is_space_at(const uint32_t *v, size_t i) {
  return v[i] < 0x80 ? (v[i] == ' ' || (v[i] >= 9 && v[i] <= 13) || (v[i] >= 0x1C && v[i] <= 0x1F))
                     : sd__uc_py_isspace(v[i]);
}

/* merges.txt as CLIPTokenizer reads it: text.strip().split("\n")[1:1 + TK_MERGES_MAX], each
 * line split on whitespace; only lines of exactly two fields make a merge, but every line
 * takes a rank. */
static sd_status load_merges(sd__tokenizer *t, const char *txt, size_t len, sd_error *err) {
  sd__ustr u = {0};
  char *buf = NULL;
  sd_status st = SD_OK;
  if (sd__utf8_decode(txt, len, &u)) goto out_nomem;
  t->merges_cap = 1024;
  while (t->merges_cap < 2 * TK_MERGES_MAX + 64 && t->merges_cap < 2 * len + 64)
    t->merges_cap *= 2;
  t->merges = malloc((size_t)t->merges_cap * sizeof *t->merges);
  buf = malloc(len * 4 + 16);
  if (!t->merges || !buf) goto out_nomem;
  for (uint32_t i = 0; i < t->merges_cap; i++) t->merges[i].a = TK_NONE;
  size_t a = 0, b = u.n;
  while (a < b && is_space_at(u.v, a)) a++;
  while (b > a && is_space_at(u.v, b - 1)) b--;
  int32_t line = 0;
  for (size_t p = a; p < b && line <= TK_MERGES_MAX; line++) {
    size_t e = p;
    while (e < b && u.v[e] != '\n') e++;
    if (line > 0) {
      size_t fs[3], fe[3], nf = 0, q = p;
      while (q < e && nf < 3) {
        while (q < e && is_space_at(u.v, q)) q++;
        if (q == e) break;
        fs[nf] = q;
        while (q < e && !is_space_at(u.v, q)) q++;
        fe[nf++] = q;
      }
      if (nf == 2) {
        size_t n0 = 0, n1 = 0;
        for (size_t k = fs[0]; k < fe[0]; k++)
          n0 += sd__utf8_encode(u.v[k], (unsigned char *)buf + n0);
        for (size_t k = fs[1]; k < fe[1]; k++)
          n1 += sd__utf8_encode(u.v[k], (unsigned char *)buf + n0 + n1);
        uint32_t sa = sym_intern(t, buf, n0), sb = sym_intern(t, buf + n0, n1);
        uint32_t sm = sym_intern(t, buf, n0 + n1);
        if (sa == TK_NONE || sb == TK_NONE || sm == TK_NONE) goto out_nomem;
        if (merge_add(t, sa, sb, sm, line - 1)) {
          st = sd__err(err, SD_ERR_INTERNAL, "merges.txt: merge table full");
          goto out_free;
        }
      }
    }
    p = e + 1;
  }
  goto out_free;
out_nomem:
  st = sd__err(err, SD_ERR_NOMEM, "merges.txt: out of memory");
out_free:
  free(buf);
  sd__ustr_free(&u);
  return st;
}

sd_status sd__tokenizer_load_memory(const char *vocab_json, size_t vocab_len,
                                    const char *merges_txt, size_t merges_len,
                                    sd__tokenizer **out, sd_error *err) {
  *out = NULL;
  sd__tokenizer *t = calloc(1, sizeof *t);
  if (!t) return sd__err(err, SD_ERR_NOMEM, "tokenizer: out of memory");
  sd_status st = load_vocab(t, vocab_json, vocab_len, err);
  if (st != SD_OK) goto out_destroy;
  uint32_t k = sym_lookup(t, BOS_STR, strlen(BOS_STR));
  t->bos = k == TK_NONE ? -1 : t->syms[k].id;
  k = sym_lookup(t, EOS_STR, strlen(EOS_STR));
  t->eos = k == TK_NONE ? -1 : t->syms[k].id;
  if (t->bos < 0 || t->eos < 0) {
    st = sd__err(err, SD_ERR_FORMAT, "vocab.json: no %s token", t->bos < 0 ? BOS_STR : EOS_STR);
    goto out_destroy;
  }
  for (unsigned b = 0; b < 256; b++) {
    char s[8];
    size_t n = sd__utf8_encode(byte_to_unicode(b), (unsigned char *)s);
    t->byte_sym[b] = sym_intern(t, s, n);
    memcpy(s + n, "</w>", 4);
    t->byte_end_sym[b] = sym_intern(t, s, n + 4);
    if (t->byte_sym[b] == TK_NONE || t->byte_end_sym[b] == TK_NONE) {
      st = sd__err(err, SD_ERR_NOMEM, "tokenizer: out of memory");
      goto out_destroy;
    }
  }
  st = load_merges(t, merges_txt, merges_len, err);
  if (st != SD_OK) goto out_destroy;
  *out = t;
  return SD_OK;
out_destroy:
  sd__tokenizer_destroy(t);
  return st;
}

sd_status sd__tokenizer_load(const char *dir, sd__tokenizer **out, sd_error *err) {
  *out = NULL;
  char *vp = sd__path_join(dir, "vocab.json"), *mp = sd__path_join(dir, "merges.txt");
  char *v = NULL, *m = NULL;
  size_t vn = 0, mn = 0;
  sd_status st;
  if (!vp || !mp) {
    st = sd__err(err, SD_ERR_NOMEM, "tokenizer: out of memory");
    goto out_free;
  }
  st = sd__read_file(vp, TK_FILE_MAX, &v, &vn, err);
  if (st == SD_OK) st = sd__read_file(mp, TK_FILE_MAX, &m, &mn, err);
  if (st == SD_OK) st = sd__tokenizer_load_memory(v, vn, m, mn, out, err);
out_free:
  free(v);
  free(m);
  free(vp);
  free(mp);
  return st;
}

void sd__tokenizer_destroy(sd__tokenizer *t) {
  if (!t) return;
  free(t->pool);
  free(t->syms);
  free(t->slots);
  free(t->merges);
  free(t);
}

int sd__tokenizer_bos(const sd__tokenizer *t) { return t->bos; }
int sd__tokenizer_eos(const sd__tokenizer *t) { return t->eos; }
int sd__tokenizer_vocab_size(const sd__tokenizer *t) { return t->vocab_size; }

/* ---- tokenizing ---- */

typedef struct tk_out {
  int32_t *v;
  size_t n, cap, limit; /* stop once n reaches limit */
} tk_out;

static int out_push(tk_out *o, int32_t id) {
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 64;
    int32_t *v = realloc(o->v, cap * sizeof *v);
    if (!v) return -1;
    o->v = v;
    o->cap = cap;
  }
  o->v[o->n++] = id;
  return 0;
}

/* Does s (n code points) start with the ASCII string lit? fold: compare as re.IGNORECASE
 * does (simple case folding: ASCII case, U+017F LONG S = s, U+212A KELVIN = k). */
static int match_lit(const uint32_t *s, size_t n, const char *lit, int fold) {
  size_t k = 0;
  for (; lit[k]; k++) {
    if (k >= n) return 0;
    uint32_t c = s[k];
    if (fold) {
      if (c >= 'A' && c <= 'Z') c += 32;
      else if (c == 0x17F) c = 's';
      else if (c == 0x212A) c = 'k';
    }
    if (c != (unsigned char)lit[k]) return 0;
  }
  return (int)k;
}

/* Length of the match of CLIP's pattern at s[0] (0 = no branch matches, skip one):
 * <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ */
static size_t clip_match(const uint32_t *s, size_t n) {
  static const char *const lits[] = {BOS_STR, EOS_STR, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  if (s[0] == '<' || s[0] == '\'') {
    for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++) {
      int k = match_lit(s, n, lits[i], 1);
      if (k) return (size_t)k;
    }
  }
  int cls = sd__uc_class(s[0]);
  size_t k = 1;
  if (cls == SD_UC_LETTER || cls == SD_UC_OTHER)
    while (k < n && sd__uc_class(s[k]) == cls) k++;
  return cls == SD_UC_SPACE || cls == SD_UC_NONE ? 0 : k;
}

/* A candidate merge: the pair (a, b) starting at symbol position i, with its rank. */
typedef struct tk_cand {
  int32_t rank;
  uint32_t i, a, b;
} tk_cand;

static int cand_less(const tk_cand *x, const tk_cand *y) {
  return x->rank < y->rank || (x->rank == y->rank && x->i < y->i);
}

static void heap_push(tk_cand *h, size_t *n, tk_cand c) {
  size_t k = (*n)++;
  while (k > 0 && cand_less(&c, &h[(k - 1) / 2])) {
    h[k] = h[(k - 1) / 2];
    k = (k - 1) / 2;
  }
  h[k] = c;
}

static tk_cand heap_pop(tk_cand *h, size_t *n) {
  tk_cand top = h[0], last = h[--*n];
  size_t k = 0;
  for (;;) {
    size_t c = 2 * k + 1;
    if (c >= *n) break;
    if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
    if (!cand_less(&h[c], &last)) break;
    h[k] = h[c];
    k = c;
  }
  if (*n) h[k] = last;
  return top;
}

/* BPE scratch for a piece of up to m byte symbols. Every pair ever formed is pushed once
 * and a merge (at most m - 1) pushes two, so the heap never holds more than 3m. */
typedef struct tk_work {
  uint32_t *sym, *next, *prev;
  tk_cand *heap, *batch;
} tk_work;

#define TK_END UINT32_MAX

static void push_pair(const sd__tokenizer *t, tk_work *w, size_t *hn, uint32_t i) {
  if (i == TK_END || w->next[i] == TK_END) return;
  uint32_t j = w->next[i];
  const tk_merge *g = merge_find(t, w->sym[i], w->sym[j]);
  if (g) heap_push(w->heap, hn, (tk_cand){g->rank, i, w->sym[i], w->sym[j]});
}

/* CLIPTokenizer.bpe on one piece, ids appended to o. That function merges every occurrence
 * of the lowest-ranked pair, left to right and without overlap, then looks again; here the
 * candidates of one rank are taken from a heap together and applied in position order,
 * which is the same thing in O(m log m) instead of O(m^2). */
static int bpe_piece(const sd__tokenizer *t, const uint32_t *piece, size_t n, tk_work *w,
                     tk_out *o) {
  /* the cache CLIPTokenizer starts with maps the two special strings to themselves */
  if ((n == strlen(BOS_STR) && match_lit(piece, n, BOS_STR, 0)) ||
      (n == strlen(EOS_STR) && match_lit(piece, n, EOS_STR, 0)))
    return out_push(o, piece[2] == 's' ? t->bos : t->eos);
  uint32_t m = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char u[4];
    size_t k = sd__utf8_encode(piece[i], u);
    for (size_t j = 0; j < k; j++, m++) {
      w->sym[m] = (i == n - 1 && j == k - 1) ? t->byte_end_sym[u[j]] : t->byte_sym[u[j]];
      w->prev[m] = m ? m - 1 : TK_END;
      w->next[m] = m + 1;
    }
  }
  w->next[m - 1] = TK_END;
  size_t hn = 0;
  for (uint32_t i = 0; i + 1 < m; i++) push_pair(t, w, &hn, i);
  while (hn > 0) {
    size_t bn = 0;
    int32_t rank = w->heap[0].rank;
    while (hn > 0 && w->heap[0].rank == rank) w->batch[bn++] = heap_pop(w->heap, &hn);
    /* heap order puts equal ranks in position order already */
    for (size_t k = 0; k < bn; k++) {
      tk_cand c = w->batch[k];
      uint32_t i = c.i, j = w->next[i];
      /* stale: i was merged away (its symbol is then TK_END) or its pair changed */
      if (w->sym[i] != c.a || j == TK_END || w->sym[j] != c.b) continue;
      const tk_merge *g = merge_find(t, c.a, c.b);
      w->sym[i] = g->result;
      w->sym[j] = TK_END;
      w->next[i] = w->next[j];
      if (w->next[j] != TK_END) w->prev[w->next[j]] = i;
      push_pair(t, w, &hn, w->prev[i]);
      push_pair(t, w, &hn, i);
    }
  }
  for (uint32_t i = 0; i != TK_END; i = w->next[i]) {
    int32_t id = t->syms[w->sym[i]].id;
    if (out_push(o, id >= 0 ? id : t->eos)) return -1; /* unk is <|endoftext|> */
  }
  return 0;
}

/* Tokenize one segment free of special-token strings (CLIPTokenizer._tokenize). */
static int tokenize_segment(const sd__tokenizer *t, const uint32_t *seg, size_t n, tk_out *o) {
  sd__ustr text = {0};
  tk_work w = {0};
  int r = -1;
  if (sd__clip_clean(seg, n, &text)) goto out_free;
  size_t longest = 0;
  for (size_t i = 0; i < text.n;) {
    size_t k = clip_match(text.v + i, text.n - i);
    if (k > longest) longest = k;
    i += k ? k : 1;
  }
  size_t cap = longest * 4 + 1; /* byte symbols of the longest piece */
  w.sym = malloc(cap * sizeof *w.sym);
  w.next = malloc(cap * sizeof *w.next);
  w.prev = malloc(cap * sizeof *w.prev);
  w.heap = malloc(3 * cap * sizeof *w.heap);
  w.batch = malloc(3 * cap * sizeof *w.batch);
  if (!w.sym || !w.next || !w.prev || !w.heap || !w.batch) goto out_free;
  for (size_t i = 0; i < text.n && o->n < o->limit;) {
    size_t k = clip_match(text.v + i, text.n - i);
    if (k && bpe_piece(t, text.v + i, k, &w, o)) goto out_free;
    i += k ? k : 1;
  }
  r = 0;
out_free:
  free(w.sym);
  free(w.next);
  free(w.prev);
  free(w.heap);
  free(w.batch);
  sd__ustr_free(&text);
  return r;
}

/* PreTrainedTokenizer.tokenize: the exact special strings are cut out first (their ids are
 * the vocab's), the text between them is tokenized piece by piece. */
static sd_status tokenize_all(const sd__tokenizer *t, const char *text, tk_out *o,
                              sd_error *err) {
  sd__ustr u = {0};
  sd_status st = SD_OK;
  if (sd__utf8_decode(text, strlen(text), &u)) goto out_nomem;
  size_t seg = 0;
  for (size_t i = 0; i <= u.n && o->n < o->limit;) {
    int k = 0, id = 0;
    if (i < u.n && u.v[i] == '<') {
      if ((k = match_lit(u.v + i, u.n - i, BOS_STR, 0))) id = t->bos;
      else if ((k = match_lit(u.v + i, u.n - i, EOS_STR, 0))) id = t->eos;
    }
    if (!k && i < u.n) {
      i++;
      continue;
    }
    if (i > seg && tokenize_segment(t, u.v + seg, i - seg, o)) goto out_nomem;
    if (k && o->n < o->limit && out_push(o, id)) goto out_nomem;
    i += k ? (size_t)k : 1;
    seg = i;
  }
  goto out_free;
out_nomem:
  st = sd__err(err, SD_ERR_NOMEM, "tokenizer: out of memory");
out_free:
  sd__ustr_free(&u);
  return st;
}

sd_status sd__tokenize(const sd__tokenizer *t, const char *text, int32_t **ids, size_t *n,
                       sd_error *err) {
  *ids = NULL;
  *n = 0;
  tk_out o = {NULL, 0, 0, SIZE_MAX};
  sd_status st = tokenize_all(t, text, &o, err);
  if (st != SD_OK) {
    free(o.v);
    return st;
  }
  if (!o.v && !(o.v = malloc(sizeof *o.v))) /* a valid pointer even for no ids */
    return sd__err(err, SD_ERR_NOMEM, "tokenizer: out of memory");
  *ids = o.v;
  *n = o.n;
  return SD_OK;
}

sd_status sd__tokenize_sd(const sd__tokenizer *t, const char *text, int32_t ids[SD_TOKENS],
                          int *truncated, sd_error *err) {
  /* one id past what fits tells whether anything was dropped */
  tk_out o = {NULL, 0, 0, SD_TOKENS - 1};
  sd_status st = tokenize_all(t, text, &o, err);
  if (st != SD_OK) {
    free(o.v);
    return st;
  }
  size_t keep = o.n < SD_TOKENS - 2 ? o.n : SD_TOKENS - 2;
  ids[0] = t->bos;
  for (size_t i = 0; i < keep; i++) ids[1 + i] = o.v[i];
  for (size_t i = 1 + keep; i < SD_TOKENS; i++) ids[i] = t->eos;
  if (truncated) *truncated = o.n > SD_TOKENS - 2;
  free(o.v);
  return SD_OK;
}

sd_status sd_tokenize_dir(const char *dir, const char *text, int32_t ids[77], char *errbuf) {
  sd_error err = {SD_OK, ""};
  sd__tokenizer *t = NULL;
  sd_status st = SD_ERR_INVALID;
  if (!dir || !text || !ids) {
    sd__err(&err, st, "sd_tokenize_dir: NULL argument");
    goto out;
  }
  st = sd__tokenizer_load(dir, &t, &err);
  if (st == SD_OK) st = sd__tokenize_sd(t, text, ids, NULL, &err);
  sd__tokenizer_destroy(t);
out:
  sd__err_export(&err, errbuf);
  return st;
}
