#!/usr/bin/python3
"""gen_unicode.py: generate the Unicode and ftfy tables of engine/unicode_tables.h.

Run with Debian's /usr/bin/python3 (the tables follow its unicodedata version):
    /usr/bin/python3 tools/gen_unicode.py engine/unicode_tables.h
It rewrites only the text between the BEGIN/END GENERATED TABLES markers of that file; the
header around them stays. Everything comes from the standard library
(unicodedata, str methods, html, codecs), never from a copied table. When the third-party
`regex` module is importable, the character classes are cross-checked against it.
"""
import html
import html.entities
import sys
import unicodedata

BEGIN = "/* BEGIN GENERATED TABLES (tools/gen_unicode.py) */\n"
END = "/* END GENERATED TABLES */\n"
MAXCP = 0x110000

CLS_NONE, CLS_LETTER, CLS_NUMBER, CLS_SPACE, CLS_OTHER = 0, 1, 2, 3, 4


def chars():
    for cp in range(MAXCP):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        yield cp, chr(cp)


def is_letter(c):
    return unicodedata.category(c) in ("Lu", "Ll", "Lt", "Lm", "Lo")


def is_number(c):
    return unicodedata.category(c) in ("Nd", "Nl", "No")


def regex_space(c):
    # The regex module's \s is Unicode White_Space: str.isspace without U+001C..U+001F
    # (checked below against the module itself when it is installed).
    return c.isspace() and not (0x1C <= ord(c) <= 0x1F)


def case_variants(c):
    # Simple case variants, as the regex module's IGNORECASE uses for sets.
    out = {c}
    for f in (c.lower(), c.upper(), c.casefold(), c.title()):
        if len(f) == 1:
            out.add(f)
    return out


def regex_class(c):
    """Which part of CLIP's pattern can start with c under re.IGNORECASE."""
    if is_letter(c):
        return CLS_LETTER
    if is_number(c):
        return CLS_NUMBER
    if regex_space(c):
        return CLS_SPACE
    # [^\s\p{L}\p{N}] with IGNORECASE refuses a character when any case variant is in the
    # set (U+0345 COMBINING GREEK YPOGEGRAMMENI, whose upper case is a letter): such a
    # character matches nothing and findall skips it.
    for v in case_variants(c):
        if is_letter(v) or is_number(v) or regex_space(v):
            return CLS_NONE
    return CLS_OTHER


def runs(values, default):
    """[(lo, hi, value)] for maximal runs of equal value != default."""
    out = []
    cur = None
    for cp in range(MAXCP):
        v = values(cp)
        if v == default:
            cur = None
            continue
        if cur is not None and cur[2] == v and cur[1] == cp - 1:
            cur[1] = cp
        else:
            cur = [cp, cp, v]
            out.append(cur)
    return out


def c_str(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return '"' + "".join(chr(x) if (chr(x).isalnum() and x < 128) else "\\%03o" % x for x in b) + '"'


def case_props(c):
    """(cased, case_ignorable) as CPython's str.lower() sees them for the final-sigma rule.

    Read from lower() itself: "cΣ" ends in final sigma iff c is cased and not ignorable;
    "aΣca" has a final sigma iff c is neither cased nor ignorable."""
    t2 = (c + "\u03a3").lower()[-1] == "\u03c2"
    t4 = ("a\u03a3" + c + "a").lower()[1] == "\u03c2"
    ignorable = not t2 and not t4
    return (t2, ignorable)


def cross_check(cls):
    try:
        import regex
    except ImportError:
        print("note: regex module not importable; classes not cross-checked", file=sys.stderr)
        return
    pat = regex.compile(r"""[\p{L}]+|[\p{N}]|(\s)|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
    bad = 0
    for cp, c in chars():
        if unicodedata.category(c) == "Cn":
            continue  # the module may know a newer Unicode version
        m = pat.match(c)
        if m is None:
            got = CLS_NONE
        elif m.group(1) is not None:
            got = CLS_SPACE
        elif regex.fullmatch(r"[\p{L}]", c, regex.IGNORECASE):
            got = CLS_LETTER
        elif regex.fullmatch(r"[\p{N}]", c, regex.IGNORECASE):
            got = CLS_NUMBER
        else:
            got = CLS_OTHER
        if got != cls(cp):
            bad += 1
            print("class mismatch U+%04X: table %d, regex %d" % (cp, cls(cp), got), file=sys.stderr)
    if bad:
        sys.exit("regex cross-check failed")


def gen():
    out = []
    w = out.append
    w("/* Unicode %s (Python %s unicodedata). */\n" % (unicodedata.unidata_version,
                                                       sys.version.split()[0]))

    def cls(cp):
        if 0xD800 <= cp <= 0xDFFF:
            return CLS_OTHER
        return regex_class(chr(cp))

    cross_check(cls)
    r = runs(cls, CLS_OTHER)
    w("static const uc_run uc_class_runs[] = {\n")
    for lo, hi, v in r:
        w("  {0x%X, 0x%X, %d},\n" % (lo, hi, v))
    w("};\n\n")

    sp = [cp for cp, c in chars() if c.isspace()]
    w("static const uint32_t uc_py_space[] = {%s};\n\n" % ", ".join("0x%X" % x for x in sp))

    r = runs(lambda cp: (not 0xD800 <= cp <= 0xDFFF) and unicodedata.category(chr(cp)) == "Nd", False)
    w("static const uc_run uc_digit_runs[] = {\n")
    for lo, hi, v in r:
        w("  {0x%X, 0x%X, 1},\n" % (lo, hi))
    w("};\n\n")

    w("static const uc_pair uc_lower_map[] = {\n")
    for cp, c in chars():
        lo = c.lower()
        if lo == c:
            continue
        if len(lo) != 1:
            assert cp == 0x130 and lo == "i\u0307", hex(cp)  # handled in code
            continue
        w("  {0x%X, 0x%X},\n" % (cp, ord(lo)))
    w("};\n\n")

    def case_flags(cp):
        if 0xD800 <= cp <= 0xDFFF:
            return 0
        cased, ign = case_props(chr(cp))
        return (1 if cased else 0) | (2 if ign else 0)

    r = runs(case_flags, 0)
    w("/* bit 0: cased (for characters that are not ignorable), bit 1: case-ignorable */\n")
    w("static const uc_run uc_case_runs[] = {\n")
    for lo, hi, v in r:
        w("  {0x%X, 0x%X, %d},\n" % (lo, hi, v))
    w("};\n\n")

    r = runs(lambda cp: 0 if 0xD800 <= cp <= 0xDFFF else unicodedata.combining(chr(cp)), 0)
    w("static const uc_run uc_ccc_runs[] = {\n")
    for lo, hi, v in r:
        w("  {0x%X, 0x%X, %d},\n" % (lo, hi, v))
    w("};\n\n")

    decomp = []
    comp = []
    for cp, c in chars():
        d = unicodedata.decomposition(c)
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert 1 <= len(parts) <= 2
        decomp.append((cp, parts[0], parts[1] if len(parts) == 2 else 0))
        if len(parts) == 2 and unicodedata.normalize("NFC", chr(parts[0]) + chr(parts[1])) == c:
            comp.append((parts[0], parts[1], cp))
    w("/* canonical decompositions, one level (b = 0: singleton); Hangul is algorithmic */\n")
    w("static const uc_triple uc_decomp[] = {\n")
    for t in decomp:
        w("  {0x%X, 0x%X, 0x%X},\n" % t)
    w("};\n\n")
    w("/* primary composites, sorted by (a, b) */\n")
    w("static const uc_triple uc_comp[] = {\n")
    for t in sorted(comp):
        w("  {0x%X, 0x%X, 0x%X},\n" % t)
    w("};\n\n")

    # ftfy 6.1.1 unescape_html: html5 entities that end in ';', plus upper-cased names of
    # the all-lowercase ones when the upper-cased name is not itself an entity.
    ents = {}
    for name, ch in html.entities.html5.items():
        if not name.endswith(";"):
            continue
        ents[name[:-1]] = ch
        if name == name.lower():
            up = "&" + name.upper()
            if html.unescape(up) == up:
                ents[name.upper()[:-1]] = ch.upper()
    w("/* ftfy's HTML entity names (without '&' and ';'), sorted bytewise */\n")
    w("static const uc_entity uc_html_entities[] = {\n")
    for k in sorted(ents, key=lambda s: s.encode()):
        w("  {%s, %s},\n" % (c_str(k), c_str(ents[k])))
    w("};\n\n")

    inv = html._invalid_charrefs
    w("/* html.unescape's numeric references that are replaced instead of decoded */\n")
    w("static const uc_entity_cp uc_charref_fix[] = {\n")
    for k in sorted(inv):
        w("  {0x%X, %s},\n" % (k, c_str(inv[k])))
    w("};\n\n")
    w("/* html.unescape's numeric references that decode to nothing */\n")
    w("static const uint32_t uc_charref_drop[] = {%s};\n\n" %
      ", ".join("0x%X" % x for x in sorted(html._invalid_codepoints)))

    width = {0x3000: " "}
    for i in range(0xFF01, 0xFFF0):
        alt = unicodedata.normalize("NFKC", chr(i))
        if alt != chr(i):
            width[i] = alt
    w("/* ftfy fix_character_width: halfwidth/fullwidth forms to their NFKC form */\n")
    w("static const uc_entity_cp uc_width_map[] = {\n")
    for k in sorted(width):
        w("  {0x%X, %s},\n" % (k, c_str(width[k])))
    w("};\n\n")

    c1 = []
    for b in range(0x80, 0xA0):
        try:
            c1.append(ord(bytes([b]).decode("cp1252")))
        except UnicodeDecodeError:
            c1.append(b)  # ftfy's sloppy-windows-1252 keeps unassigned bytes as is
    w("/* ftfy fix_c1_controls: U+0080..U+009F read as (sloppy) windows-1252 */\n")
    w("static const uint16_t uc_c1_map[32] = {%s};\n\n" % ", ".join("0x%X" % x for x in c1))

    # ftfy's fix_latin_ligatures list: Latin ligatures and legacy digraphs (by name).
    lig_names = ["LATIN CAPITAL LIGATURE IJ", "LATIN SMALL LIGATURE IJ",
                 "LATIN SMALL LETTER N PRECEDED BY APOSTROPHE",
                 "LATIN CAPITAL LETTER DZ", "LATIN CAPITAL LETTER D WITH SMALL LETTER Z",
                 "LATIN SMALL LETTER DZ", "LATIN CAPITAL LETTER DZ WITH CARON",
                 "LATIN CAPITAL LETTER D WITH SMALL LETTER Z WITH CARON",
                 "LATIN SMALL LETTER DZ WITH CARON", "LATIN CAPITAL LETTER LJ",
                 "LATIN CAPITAL LETTER L WITH SMALL LETTER J", "LATIN SMALL LETTER LJ",
                 "LATIN CAPITAL LETTER NJ", "LATIN CAPITAL LETTER N WITH SMALL LETTER J",
                 "LATIN SMALL LETTER NJ", "LATIN SMALL LIGATURE FF", "LATIN SMALL LIGATURE FI",
                 "LATIN SMALL LIGATURE FL", "LATIN SMALL LIGATURE FFI", "LATIN SMALL LIGATURE FFL",
                 "LATIN SMALL LIGATURE LONG S T", "LATIN SMALL LIGATURE ST"]
    w("/* ftfy fix_latin_ligatures */\n")
    w("static const uc_entity_cp uc_ligatures[] = {\n")
    for n in sorted(lig_names, key=lambda n: ord(unicodedata.lookup(n))):
        c = unicodedata.lookup(n)
        d = unicodedata.decomposition(c).split()[1:]  # one level of <compat>
        w("  {0x%X, %s},\n" % (ord(c), c_str("".join(chr(int(x, 16)) for x in d))))
    w("};\n")
    return "".join(out)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "engine/unicode_tables.h"
    src = open(path, encoding="utf-8").read()
    a = src.index(BEGIN) + len(BEGIN)
    b = src.index(END)
    open(path, "w", encoding="utf-8").write(src[:a] + gen() + src[b:])


if __name__ == "__main__":
    main()
