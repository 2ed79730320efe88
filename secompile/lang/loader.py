"""Safe YAML loading with a source map from spec paths to file:line:col.

Only YAML's plain data tags are accepted (no object construction). Duplicate keys
are errors, alias expansion, nesting depth and file size are bounded, and merge keys
(`<<: *anchor`) keep working. The result is plain Python data plus a `SourceMap`.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field

import yaml

from .errors import LimitError, Mark, Problem, SpecError, format_path
from .expr import MAX_INT

MAX_BYTES = 4 * 1024 * 1024      # a real spec is a few KB
MAX_DEPTH = 64                   # nesting of mappings/sequences
MAX_NODES = 200_000              # nodes after alias expansion ("billion laughs")

_T = "tag:yaml.org,2002:"
# libyaml parses ~10x faster; errors are re-parsed with the pure-Python loader so that the
# messages are the same with or without it.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = _T + "str"
_ALLOWED_TAGS = {_T + t for t in ("str", "int", "float", "bool", "null", "map", "seq")}


@dataclass
class SourceMap:
    """Where each value (and each mapping key) of a loaded document came from."""

    file: str
    values: dict = field(default_factory=dict)  # path tuple -> Mark of the value
    keys: dict = field(default_factory=dict)    # path tuple -> Mark of the key naming it

    def mark(self, path, key: bool = False) -> Mark:
        """The mark of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        table = self.keys if key else self.values
        while path:
            if path in table:
                return table[path]
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), Mark(self.file, 1, 1))

    def problem(self, path, message: str, key: bool = False, shown_path=None) -> Problem:
        return Problem(self.mark(path, key),
                       format_path(shown_path if shown_path is not None else path), message)


def _mark(file: str, m) -> Mark:
    return Mark(file, m.line + 1, m.column + 1)


_EVENT_KINDS: dict[type, tuple] = {}   # event class -> (a node?, nesting +1/-1/0, an alias?)


def _event_kind(cls: type) -> tuple:
    """What the prescan counts of an event class: looked up by class, found once (isinstance)."""
    kind = (issubclass(cls, yaml.NodeEvent),
            1 if issubclass(cls, (yaml.MappingStartEvent, yaml.SequenceStartEvent)) else
            -1 if issubclass(cls, (yaml.MappingEndEvent, yaml.SequenceEndEvent)) else 0,
            issubclass(cls, yaml.AliasEvent))
    _EVENT_KINDS[cls] = kind
    return kind


def _prescan(text: str, file: str, loader=_FAST_LOADER) -> bool:
    """Bound nesting depth and node count with the event stream (iterative: no recursion),
    before any node is composed: 4 MiB of one-character items would be 2 million nodes.
    -> whether the document has an alias (only then can it expand past these bounds)."""
    depth = nodes = 0
    aliases = False
    try:
        for ev in yaml.parse(text, Loader=loader):
            node, nesting, alias = _EVENT_KINDS.get(type(ev)) or _event_kind(type(ev))
            if node:
                nodes += 1
                aliases = aliases or alias
                if nodes > MAX_NODES:
                    raise LimitError([Problem(_mark(file, ev.start_mark), "<yaml>",
                                              f"document has more than {MAX_NODES} "
                                              f"nodes; refusing it")])
            if nesting > 0:
                depth += 1
                if depth > MAX_DEPTH:
                    raise LimitError([Problem(_mark(file, ev.start_mark), "<yaml>",
                                              f"nesting deeper than {MAX_DEPTH} levels")])
            elif nesting < 0:
                depth -= 1
        return aliases
    except (yaml.MarkedYAMLError, yaml.reader.ReaderError) as e:
        if loader is not yaml.SafeLoader:
            _prescan(text, file, yaml.SafeLoader)   # the same error, in the pure-Python wording
        if isinstance(e, yaml.reader.ReaderError):
            raise _reader_error(e, text, file) from None
        raise _syntax_error(e, file) from None
    # libyaml cannot take a lone surrogate; the Python reader refuses it
    except UnicodeEncodeError as e:
        if loader is not yaml.SafeLoader:
            _prescan(text, file, yaml.SafeLoader)
        raise SpecError([Problem(Mark(file, 1, 1), "<yaml>",
                                 f"not valid Unicode text ({e.reason})")]) from None


# YAML's line breaks: every other mark counts these
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _reader_error(e: yaml.reader.ReaderError, text: str, file: str) -> SpecError:
    """A character YAML does not accept (control characters, ...): located like the others."""
    pos = min(max(e.position, 0), len(text))
    breaks = [m.end() for m in _LINE_BREAK.finditer(text, 0, pos)]   # counted as YAML counts them
    line = len(breaks) + 1
    col = pos - (breaks[-1] if breaks else 0) + 1
    ch = e.character if isinstance(e.character, str) else chr(e.character)
    return SpecError([Problem(Mark(file, line, col), "<yaml>",
                              f"unacceptable character #x{ord(ch):04x}: {e.reason}")])


def _syntax_error(e: yaml.MarkedYAMLError, file: str) -> SpecError:
    m = e.problem_mark or e.context_mark
    mark = _mark(file, m) if m else Mark(file, 1, 1)
    msg = e.problem or e.context or "invalid YAML"
    if e.context and e.problem:
        msg = f"{e.problem} ({e.context})"
    return SpecError([Problem(mark, "<yaml>", msg)])


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    return []


def _measure(root, file: str) -> None:
    """Refuse, before building anything, a document whose aliases expand it past MAX_NODES
    nodes or MAX_DEPTH levels, or that contains itself. Sizes are computed once per distinct
    node (iteratively), so a 'billion laughs' document is measured in microseconds."""
    size, height, state = {}, {}, {}
    stack = [root]
    while stack:
        node = stack[-1]
        key = id(node)
        if state.get(key) == "done":
            stack.pop()
            continue
        kids = _children(node)
        if key not in state:
            state[key] = "open"
            for k in kids:
                if state.get(id(k)) == "open":
                    raise LimitError([Problem(_mark(file, k.start_mark), "<yaml>",
                                              "an alias refers to a node that contains it "
                                              "(recursive anchor)")])
                if id(k) not in state:
                    stack.append(k)
            continue
        stack.pop()
        state[key] = "done"
        size[key] = 1 + sum(size[id(k)] for k in kids)
        height[key] = (1 + max((height[id(k)] for k in kids), default=0)
                       if not isinstance(node, yaml.ScalarNode) else 0)
    if size[id(root)] > MAX_NODES:
        node = root   # report the smallest node that is too big: where the expansion explodes
        while True:
            big = [k for k in _children(node) if size[id(k)] > MAX_NODES]
            if not big:
                break
            node = big[0]
        raise LimitError([Problem(_mark(file, node.start_mark), "<yaml>",
                                  f"document expands to more than {MAX_NODES} nodes "
                                  "(aliases/anchors expanded); refusing it")])
    if height[id(root)] > MAX_DEPTH:
        node, level = root, 1
        while level <= MAX_DEPTH:   # follow the deepest child down to level MAX_DEPTH + 1
            node = max(_children(node), key=lambda k: height[id(k)])
            level += 1
        raise LimitError([Problem(_mark(file, node.start_mark), "<yaml>",
                                  f"nesting deeper than {MAX_DEPTH} levels (aliases expanded)")])


class _Builder:
    def __init__(self, file: str):
        self.file = file
        self.smap = SourceMap(file)
        self.nodes = 0
        self.scalar = yaml.constructor.SafeConstructor()
        self.problems: list[Problem] = []

    def build(self, node, path=()):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise LimitError([Problem(_mark(self.file, node.start_mark), format_path(path),
                                      f"document expands to more than {MAX_NODES} nodes "
                                      "(aliases/anchors expanded); refusing it")])
        self.smap.values.setdefault(path, _mark(self.file, node.start_mark))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, path)
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        self._check_tag(node, path)
        if node.tag == _T + "int":
            return self._int(node, path)
        return self._scalar(node, path)

    def _scalar(self, node, path):
        """A scalar as YAML types it; an explicit tag its text cannot be (`!!float abc`,
        `!!bool maybe`, `!!null x`) is the user's error, located, not PyYAML's ValueError."""
        if node.tag == _STR:   # what SafeConstructor makes of it, without its dispatch
            return node.value
        try:
            return self.scalar.construct_object(node, deep=True)
        except (ValueError, KeyError, TypeError, yaml.YAMLError):
            shown = node.value if len(node.value) <= 20 else node.value[:17] + "..."
            raise SpecError([Problem(_mark(self.file, node.start_mark), format_path(path),
                                     f"{shown!r} is not a {node.tag.replace(_T, '!!')} "
                                     "value")]) from None

    def _int(self, node, path):
        """Integers are bounded like expression values (|n| <= 10**15): a 5,000-digit literal
        would crash int() (Python's 4,300-digit limit), a long base-60 one takes quadratic time."""
        if len(node.value) <= 64:
            value = self._scalar(node, path)
            if abs(value) <= MAX_INT:
                return value
        shown = node.value if len(node.value) <= 20 else node.value[:17] + "..."
        raise SpecError([Problem(_mark(self.file, node.start_mark), format_path(path),
                                 f"integer {shown} is out of range (at most 10**15 in magnitude)")])

    def _check_tag(self, node, path):
        if node.tag not in _ALLOWED_TAGS:
            raise SpecError([Problem(_mark(self.file, node.start_mark), format_path(path),
                                     f"tag {node.tag.replace(_T, '!!')} is not allowed "
                                     "(specs are plain data)")])

    def _pairs(self, node, path):
        """Key/value nodes of a mapping with `<<` merge keys resolved (explicit keys win)."""
        explicit, merged = [], []
        for k, v in node.value:
            if k.tag == _T + "merge":
                sources = v.value if isinstance(v, yaml.SequenceNode) else [v]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        raise SpecError([Problem(_mark(self.file, src.start_mark),
                                                 format_path(path),
                                                 "a merge key (<<) needs a mapping or a "
                                                 "list of mappings")])
                    merged.extend((mk, mv, True) for mk, mv, _ in self._pairs(src, path))
            else:
                explicit.append((k, v, False))
        return explicit + merged

    def _mapping(self, node, path):
        self._check_tag(node, path)
        out, seen = {}, {}
        for k, v, from_merge in self._pairs(node, path):
            if not isinstance(k, yaml.ScalarNode):
                raise SpecError([Problem(_mark(self.file, k.start_mark), format_path(path),
                                         "mapping keys must be plain scalars")])
            self._check_tag(k, path)
            key = self._int(k, path) if k.tag == _T + "int" else self._scalar(k, path)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                key = str(k.value)
            kmark = _mark(self.file, k.start_mark)
            if key in seen and from_merge:  # explicit keys and earlier merges win
                continue
            if key in seen:
                raise SpecError([Problem(kmark, format_path(path + (key,)),
                                         f"duplicate key '{key}' (first defined at line "
                                         f"{seen[key].line})")])
            seen[key] = kmark
            self.smap.keys[path + (key,)] = kmark
            out[key] = self.build(v, path + (key,))
        return out


def load_yaml_text(text: str, file: str = "<string>"):
    """Parse YAML text into plain data and a SourceMap. Raises SpecError."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise LimitError([Problem(Mark(file, 1, 1), "<yaml>",
                                  f"file is larger than {MAX_BYTES // (1024 * 1024)} "
                                  f"MiB; refusing it")])
    aliases = _prescan(text, file)
    try:
        loader = _FAST_LOADER(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(e, file) from None
    except yaml.YAMLError as e:
        raise SpecError([Problem(Mark(file, 1, 1), "<yaml>", str(e))]) from None
    if node is None:
        raise SpecError([Problem(Mark(file, 1, 1), "<root>", "the spec is empty")])
    # refuse before building anything ("billion laughs", alias depth, recursion); without an
    # alias the nodes form the tree the prescan bounded already
    if aliases:
        _measure(node, file)
    b = _Builder(file)
    try:
        data = b.build(node)
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(e, file) from None
    except RecursionError:
        raise LimitError([Problem(Mark(file, 1, 1), "<yaml>",
                                  "document nested too deeply")]) from None
    return data, b.smap


def load_yaml_file(path: str):
    """Read and parse a YAML file: a regular file only (a FIFO or a device could block or never
    end), read up to MAX_BYTES + 1 bytes, whatever its size claims (/proc files say 0)."""
    rel = os.path.relpath(path)
    shown = rel if not rel.startswith("..") else os.path.abspath(path)

    def refuse(message, error=SpecError):
        return error([Problem(Mark(shown, 1, 1), "<file>", message)])
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once (and is then refused)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise refuse(f"cannot read: {e.strerror}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                kind = "a directory" if os.path.isdir(path) else "not a regular file"
                raise refuse(f"cannot read: {kind} (a spec is a YAML file)")
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise refuse(f"file is larger than the {MAX_BYTES // 2**20} MiB limit; refusing it",
                         LimitError)
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise refuse(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise refuse(f"cannot read: {e.strerror}") from None
    return load_yaml_text(text, shown)
