"""Text-level mutations of a spec file (the fuzz campaigns' refusal path).

`mutate(data, op, a, b)` applies one operation of OPS to the bytes of a YAML file, at a site
and with a replacement chosen by the integers a and b (so hypothesis or a seeded
random.Random can drive it): bit flips, YAML-significant characters and tokens, deleted spans,
truncation, deleted / duplicated / swapped / re-indented lines, numbers replaced by zero /
negative / huge / fractional / non-finite values, scalars of another type, deleted, duplicated
and misspelt keys, and template expressions replaced by hostile ones.
"""

from __future__ import annotations

import re

# -- mutations -------------------------------------------------------------------------------------
PALETTE = list("{}[]:,-&*!|>'\"#%@`?$ \t\n.0a_") + [
    "\x00",
    "\x07",
    "\x1b",
    "\x7f",
    "\u00e9",
    "\u2028",
    "\ufeff",
]
TOKENS = [
    "\t",
    "  ",
    "\n",
    "- ",
    ": ",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "*a ",
    "&a ",
    "<<: *a\n",
    "<<: {x: 1}, ",
    "!!python/object/apply:os.system ['true'] ",
    "!!python/name:os.system ",
    "!!binary ",
    "!!set ",
    "!custom ",
    "~",
    "null",
    "'",
    '"',
    "# ",
    "---\n",
    "...\n",
    "? ",
    "|\n",
    ">\n",
    "%YAML 1.1\n",
    "$",
    "$out ",
    "2024-01-01",
    "0x1F",
    "1:30",
    "1e9",
    ".inf",
    "&x [*x]",
    "\u00e9",
    "\ufeff",
]
NUMBERS = [
    "0",
    "-1",
    "1",
    "2",
    "3",
    "7",
    "64",
    "1000",
    "65536",
    "1000000000",
    "1000000000000000",
    "10000000000000000",
    "99999999999999999999999999999999",
    "1.5",
    "-0.5",
    "1e308",
    ".nan",
    ".inf",
    "-.inf",
    "0x10",
    "0o17",
    "1_000",
]
TYPES = [
    '"x"',
    "''",
    "[]",
    "{}",
    "null",
    "~",
    "true",
    "false",
    "[1, 2]",
    "{a: 1}",
    '"$nope"',
    '"$out // 0"',
    "[[[[1]]]]",
    "*undefined",
    "!!str 3",
    "!!float 3",
    "2024-01-01",
    "[a, b, c]",
    "{block: basic}",
]
EXPRS = [
    '"$out // 0"',
    '"$out % 0"',
    '"$out ** 99"',
    '"$out * 10 ** 15"',
    '"$nope + 1"',
    '"$out.real"',
    '"(lambda: 1)()"',
    "\"__import__('os')\"",
    '"$out if $out else"',
    '"$out / 3"',
    '"-$out"',
    '"$out // 64"',
    '"[$out][0]"',
    '"{$out: 1}"',
    "\"$out < 'a'\"",
    '"max()"',
    "\"int('x')\"",
    '"$out ** -1"',
    "\"'a' + $out\"",
    "\"abs('a')\"",
    '"$out $out"',
    '"$"',
    '"$$out"',
    '"round($out, 3)"',
    # a hang or gigabytes before fuzz-6:
    '"round($out, -10 ** 9)"',
    "\"('ab' * 10 ** 9) if $out else 1\"",
    '"int(1e300 ** 2) + $out"',
    "\"-'a' if $out else 1\"",
    '"int(1e308 * 10) + $out"',
]


NUMBER = re.compile(rb"(?<![\w.$'\"-])-?\d+(?:\.\d+)?(?![\w.])")
SCALAR = re.compile(rb"(?<=: )[^\s,\[\]{}#&*!|>'\"][^,\[\]{}#\n]*?(?=\s*(?:[,}\]\n#]|$))")
FLOW_ITEM = re.compile(rb"(?<=[{,] )[A-Za-z_]\w*: [^,{}\[\]\n]+(?:, )?")
KEY = re.compile(rb"(?<=[{,\s])[A-Za-z_]\w*(?=: )")
EXPR = re.compile(rb'"[^"\n]*\$[^"\n]*"|\$\w+')


def _nth(pattern, data, k):
    found = list(pattern.finditer(data))
    return found[k % len(found)] if found else None


def _splice(data, m, new):
    return data[: m.start()] + new + data[m.end() :] if m else data


def _lines(data):
    return data.split(b"\n")


def _misspell(word: bytes, how: int) -> bytes:
    w = word.decode()
    i = how % len(w)
    variants = [
        w[:i] + w[i + 1 :],
        w[:i] + w[i] + w[i:],
        w[:i] + w[i + 1 : i + 2] + w[i : i + 1] + w[i + 2 :],
        w.upper(),
        w + "s",
        w[:i] + "_" + w[i:],
    ]
    return (variants[how % len(variants)] or "x").encode()


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


def mutate(data: bytes, op: str, a: int, b: int) -> bytes:
    n = max(len(data), 1)
    if op == "bitflip":
        if not data:
            return data
        i = a % n
        return data[:i] + bytes([data[i] ^ (1 << (b % 8))]) + data[i + 1 :]
    if op == "replace_char":
        i = a % n
        return data[:i] + _enc(PALETTE[b % len(PALETTE)]) + data[i + 1 :]
    if op == "insert":
        i = a % (n + 1)
        return data[:i] + _enc(TOKENS[b % len(TOKENS)]) + data[i:]
    if op == "delete":
        i = a % n
        return data[:i] + data[i + 1 + b % 40 :]
    if op == "truncate":
        return data[: a % n]
    lines = _lines(data)
    i, j = a % len(lines), b % len(lines)
    if op == "delete_line":
        return b"\n".join(lines[:i] + lines[i + 1 :])
    if op == "duplicate_line":
        return b"\n".join(lines[: i + 1] + lines[i:])
    if op == "swap_lines":
        lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    if op == "indent":
        d = b % 9 - 4
        lines[i] = (
            b" " * d + lines[i]
            if d > 0
            else lines[i][-d:]
            if lines[i][:-d].strip() == b""
            else lines[i]
        )
        return b"\n".join(lines)
    if op == "number":
        return _splice(data, _nth(NUMBER, data, a), NUMBERS[b % len(NUMBERS)].encode())
    if op == "retype":
        return _splice(data, _nth(SCALAR, data, a), TYPES[b % len(TYPES)].encode())
    if op == "delete_key":
        return _splice(data, _nth(FLOW_ITEM, data, a), b"")
    if op == "duplicate_key":
        m = _nth(FLOW_ITEM, data, a)
        item = m.group(0) if m else b""
        return (
            _splice(data, m, item + (b"" if item.endswith(b", ") else b", ") + item.rstrip(b", "))
            if m
            else data
        )
    if op == "misspell_key":
        m = _nth(KEY, data, a)
        return _splice(data, m, _misspell(m.group(0), b)) if m else data
    if op == "expression":
        return _splice(data, _nth(EXPR, data, a), EXPRS[b % len(EXPRS)].encode())
    raise AssertionError(op)


OPS = [
    "bitflip",
    "replace_char",
    "insert",
    "delete",
    "truncate",
    "delete_line",
    "duplicate_line",
    "swap_lines",
    "indent",
    "number",
    "retype",
    "delete_key",
    "duplicate_key",
    "misspell_key",
    "expression",
]
