"""The network generator behind `specs()`.

A `Gen` draws a spec top-down (input, stem, stages, head, SE rules) while modelling
the shape of every tensor (see `oracle.py`), so each choice is one that keeps the spec
valid: channels that groups divide, sizes that stay >= 1, branches whose shapes agree
at their merge, selectors that match, reductions that leave a channel. Inside block
templates, attribute values are sometimes written as $-expressions over the
template's parameters that evaluate to the value modelled.

It also records every *named* scope it creates (full IR path -> channels of its
output, None where SE cannot go), which is what SE path selectors and `{after: PATH}`
positions are drawn from.

Over 400 lines on purpose: one generator keeps the shape and channel bookkeeping of every
block kind in one place; split, each part would need the whole of `Gen`'s state.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from math import gcd

from hypothesis import strategies as st

from . import templates as T
from . import v2 as V2
from . import v3 as V3
from .oracle import BlockInfo, conv_size, glob, pool_size, same_pad, select_blocks
from .plugin_ops import plugin_layer

ACTS = ("relu", "relu6", "sigmoid", "hard_sigmoid", "hard_swish", "silu", "tanh")
BLOCK_KINDS = ("basic", "bottleneck", "resnext", "mixed", "preact", "dense", "shuffle", "nested",
               "random", "layers")
# Layer names. None of them is a name the IR uses for its own nodes or scopes (conv, bn, act,
# branch, shortcut, post, add, concat, se*, stem, head, stages, blocks, digits), so a glob
# ending in one of them only matches scopes this generator named and recorded.
NAMES = ("conv1", "conv2", "a", "b", "proj", "down", "dw", "pw", "mix", "left", "right",
         "x", "y", "rec", "self", "F", "torch", "t_1", "if", "None", "_p", "deep_1")
# Names that collide with attributes of torch.nn.Module (drawn with names='all').
MODULE_ATTR_NAMES = ("training", "forward", "to", "float", "code", "path", "eval", "half", "type")
BRANCH_NAMES = ("left", "right", "b3x3", "3x3", "1x1", "x", "pool_", "tower")
SPEC_NAMES = ("net", "tiny", "se-net", "ResNet v1.5", "réseau", "net: #1", "'quoted'", "- dash",
              "yes", "null", "123", "網")


@dataclass(frozen=True)
class Constraints:
    """Bounds of `specs()` (see its docstring)."""

    max_params: int | None = None
    max_stages: int = 3
    max_repeat: int = 2
    max_nesting: int = 2
    input_size: tuple = (8, 40)
    input_channels: tuple = (1, 4)
    max_width: int = 32
    block_kinds: tuple = BLOCK_KINDS
    se: bool | None = None
    head: bool | None = None
    include_dir: str | None = None
    names: str = "safe"
    attention: bool = False      # also draw channel_conv, dual_pool, ..., drop_path layers
    v2: bool = False             # also draw language-v2 stages and attention-module SE rules
    v3: bool = False             # also draw the issue-22 ops and modules (v3.py)
    ops: dict = field(default_factory=dict)   # plug-in op -> {attribute: strategy} (plugin_ops)

    def __post_init__(self):
        bad = set(self.block_kinds) - set(BLOCK_KINDS)
        if bad or not self.block_kinds:
            raise ValueError(f"block_kinds: unknown {sorted(bad)}; choose from {BLOCK_KINDS}")
        if self.max_width < 4:
            raise ValueError("max_width must be at least 4")
        if self.input_size[0] < 1 or self.input_size[0] > self.input_size[1]:
            raise ValueError(f"input_size must be (lo, hi) with 1 <= lo <= hi, "
                             f"got {self.input_size}")
        if self.max_stages < 1 or self.max_repeat < 1 or self.max_nesting < 0:
            raise ValueError("max_stages and max_repeat must be >= 1, max_nesting >= 0")
        if self.names not in ("safe", "all"):
            raise ValueError("names is 'safe' or 'all'")


@dataclass
class Built:
    item: object                 # the layer as written in the spec
    shape: tuple
    kind: str = "layers"         # residual | parallel | layers (what SE positions see)
    branch_c: int | None = None
    short_c: int | None = None


@dataclass
class Net:
    spec: dict
    blocks: list = field(default_factory=list)
    tracked: dict = field(default_factory=dict)


class Gen:
    def __init__(self, draw, cons: Constraints):
        self.draw, self.c = draw, cons
        self.templates: dict = {}
        self.tracked: dict = {}      # named scope path -> output channels (None: no SE there)
        self.n_random = 0
        self.names = NAMES + (MODULE_ATTR_NAMES if cons.names == "all" else ())

    # -- small draws -------------------------------------------------------------------
    def pick(self, options):
        return self.draw(st.sampled_from(list(options)))

    def flip(self) -> bool:
        return self.draw(st.booleans())

    def channels(self, c: int, multiple: int = 1, minimum: int = 1, env=None) -> int:
        cands = {c, 2 * c, c // 2, 4, 8, 6, 16}
        if env:
            cands |= {v for v in env.values() if isinstance(v, int) and not isinstance(v, bool)}
        ok = sorted(x for x in cands if minimum <= x <= self.c.max_width and x % multiple == 0)
        return self.pick(ok or [max(minimum, multiple)])

    def name(self, used: set) -> str | None:
        if self.flip():
            return None
        free = [n for n in self.names if n not in used]
        return self.pick(free) if free else None

    def lit(self, value, env):
        """`value`, or inside a template sometimes a $-expression over its parameters."""
        if not env or not self.flip():
            return value
        cands = exprs_for(value, env)
        return self.pick(cands) if cands else value

    def pair(self, hw, env, allow_int=True):
        h, w = hw
        if h == w and allow_int and self.flip():
            return self.lit(h, env)
        return [self.lit(h, env), self.lit(w, env)]

    def track(self, path: str, shape):
        self.tracked[path] = shape[0] if len(shape) == 3 else None

    @contextlib.contextmanager
    def untracked(self):
        """Layers written in the spec but never expanded (a shortcut that is not needed)."""
        saved = self.tracked
        self.tracked = {}
        try:
            yield
        finally:
            self.tracked = saved

    # -- layer lists -----------------------------------------------------------------------
    def layer_list(self, shape, scope, mode, depth, env, stride=(1, 1), out_c=None, n=(1, 3),
                   used=None, start=0):
        """-> (items, shape). mode: 'free' (any valid op), 'shaped' (the spatial size becomes
        exactly ceil(size / stride)), 'vector' (shape (F,))."""
        k = self.draw(st.integers(*n))
        if stride != (1, 1):
            k = max(k, 1)
        at = self.draw(st.integers(0, k - 1)) if stride != (1, 1) else None
        used = set() if used is None else used
        items = []
        for i in range(k):
            nm = self.name(used)
            path = f"{scope}.{nm if nm else start + i}"
            b = self.layer(shape, path, mode, depth, env, stride if i == at else (1, 1))
            items.append(self.named_item(b.item, nm))
            shape = b.shape
            if nm:
                used.add(nm)
                self.track(path, shape)
        if out_c is not None and shape[0] != out_c:
            nm = self.name(used)
            path = f"{scope}.{nm if nm else start + k}"
            b = self.conv(shape, (1, 1), "shaped", env, out_c=out_c)
            items.append(self.named_item(b.item, nm))
            shape = b.shape
            if nm:
                used.add(nm)
                self.track(path, shape)
        return items, shape

    @staticmethod
    def named_item(item, nm):
        if nm is None:
            return item
        if isinstance(item, str):
            return {"name": nm, item: None}
        return {"name": nm, **item}

    def layer(self, shape, path, mode, depth, env, s) -> Built:
        if self.c.ops and s == (1, 1) and self.draw(st.integers(0, 2)) == 0:
            drawn = plugin_layer(self.draw, self.c.ops, shape, mode)
            if drawn is not None:
                return Built(*drawn)
        if self.c.v3 and s == (1, 1) and self.draw(st.integers(0, 3)) == 0:
            return Built(*V3.layer(self, shape, mode, env))
        if self.c.attention and s == (1, 1):
            pooled = shape[1:] in ((), (1, 1))          # where channel_conv fits: take the chance
            if self.draw(st.integers(0, 1 if pooled else 3)) == 0:
                return self.attention_layer(shape, mode, env)
        if mode == "vector":
            kind = self.pick(["linear", "act", "bn", "dropout", "identity", "flatten"])
            return self.vector_layer(kind, shape, env)
        nest = depth < self.c.max_nesting
        if s != (1, 1):
            kinds = ["conv", "maxpool", "avgpool"] + \
                (["residual", "parallel", "block"] if nest else [])
        else:
            kinds = ["conv", "act", "bn", "maxpool", "avgpool", "dropout", "identity",
                     "channel_shuffle"] + \
                (["residual", "parallel", "block"] if nest else [])
        kind = self.pick(kinds)
        if mode == "free" and kind in ("residual", "parallel", "block"):
            s = self.pick([(1, 1), (2, 2), (1, 2)])
        if kind == "conv":
            return self.conv(shape, s, mode, env)
        if kind in ("maxpool", "avgpool"):
            return self.pool(kind, shape, s, mode, env)
        if kind == "residual":
            return self.residual(shape, path, s, depth, env)
        if kind == "parallel":
            return self.parallel(shape, path, s, depth, env)
        if kind == "block":
            return self.block(shape, path, s, depth, env)
        return self.simple(kind, shape, env)

    def simple(self, kind, shape, env) -> Built:
        if kind == "act":
            a = self.pick(ACTS)
            return Built(self.pick([a, {a: None}, {a: {}}]), shape)
        if kind == "bn":
            form = self.pick(["plain", "null", "attrs"])
            if form == "attrs":
                return Built({"bn": {"eps": self.pick([1e-3, 1e-5]),
                                     "momentum": self.pick([0.1, 0.01])}}, shape)
            return Built("bn" if form == "plain" else {"bn": None}, shape)
        if kind == "dropout":
            p = self.pick([None, 0.0, 0.1, 0.5])
            return Built({"dropout": {} if p is None else {"p": p}}, shape)
        if kind == "identity":
            return Built(self.pick(["identity", {"identity": {}}]), shape)
        if kind == "channel_shuffle":
            ds = [d for d in T.divisors(shape[0])]
            g = self.pick(sorted(ds, key=lambda d: (d == 1, d)))
            return Built({"channel_shuffle": {"groups": self.lit(g, env)}}, shape)
        raise AssertionError(kind)

    def vector_layer(self, kind, shape, env) -> Built:
        if kind == "linear":
            out = self.pick([4, 1, 10, 16, 3])
            a = {"out": self.lit(out, env)}
            if self.flip():
                a["bias"] = self.flip()
            return Built({"linear": a}, (out,))
        if kind == "flatten":
            return Built(self.pick(["flatten", {"flatten": None}]), shape)
        return self.simple(kind, shape, env)

    def attention_layer(self, shape, mode, env) -> Built:
        """An ECA / CBAM / Selective Kernel building block that fits `shape` (sizes as
        docs/spec-language.md states them: channel_conv is a zero-padded 1-D conv over C)."""
        kinds = ["drop_path"]
        if shape[1:] in ((), (1, 1)):
            kinds += ["channel_conv"] * 2
        if len(shape) == 3:
            kinds.append("channel_slice")
            if mode == "free":          # these change the spatial size
                kinds += ["dual_pool", "spatial_sum", "channel_pool"]
        kind = self.pick(kinds)
        c = shape[0]
        if kind == "drop_path":
            return Built({"drop_path": {"p": self.pick([0.0, 0.1, 0.5, 0])}}, shape)
        if kind == "channel_conv":
            k = self.pick([3, 1, 5, 2])
            a = {"kernel": self.lit(k, env)}
            pad = (k - 1) // 2
            if self.flip():
                pad = self.draw(st.integers(0, k - 1))
                a["padding"] = self.lit(pad, env)
            taps = [t for t in range(c + 2 * pad) if t + k <= c + 2 * pad]   # window starts
            if not taps:
                return Built({"channel_conv": {"kernel": 1}}, shape)
            return Built({"channel_conv": a}, (len(taps),) + shape[1:])
        if kind == "channel_slice":
            size = self.draw(st.integers(1, c))
            start = self.draw(st.integers(0, c - size))
            a = {"start": self.lit(start, env), "size": self.lit(size, env)}
            return Built({"channel_slice": a}, (size,) + shape[1:])
        out = {"dual_pool": (c, 2, 1), "spatial_sum": (c, 1, 1), "channel_pool": (2,) + shape[1:]}
        return Built(self.pick([kind, {kind: None}, {kind: {}}]), out[kind])

    # -- ops ---------------------------------------------------------------------------------
    def conv(self, shape, s, mode, env, out_c=None) -> Built:
        c, h, w = shape
        out = out_c if out_c is not None else self.channels(c, env=env)
        groups = self.pick(T.divisors(gcd(c, out)))
        if mode == "shaped":
            kern = self.pick([(3, 3), (1, 1), (5, 5), (1, 3), (3, 1)])
            dil = self.pick([(1, 1), (2, 2), (1, 2)]) if kern != (1, 1) else (1, 1)
            pad = (same_pad(kern[0], dil[0]), same_pad(kern[1], dil[1]))
            pad_form = self.pick(["omit", "same", "explicit"])
            stride = s
        else:
            kern = self.pick([(3, 3), (1, 1), (2, 2), (5, 5), (1, 3), (2, 3), (7, 7)])
            stride = self.pick([(1, 1), (2, 2), (3, 3), (1, 2)])
            dil = self.pick([(1, 1), (2, 2)])
            pad_form = self.pick(["omit", "same", "valid", "explicit"])
            if pad_form == "explicit":
                pad = (self.draw(st.integers(0, kern[0] // 2)),
                       self.draw(st.integers(0, kern[1] // 2)))
            elif pad_form == "valid":
                pad = (0, 0)
            else:
                pad = (same_pad(kern[0], dil[0]), same_pad(kern[1], dil[1]))
            if min(conv_size(h, kern[0], stride[0], pad[0], dil[0]),
                   conv_size(w, kern[1], stride[1], pad[1], dil[1])) < 1:
                kern, stride, dil, pad, pad_form = (1, 1), (1, 1), (1, 1), (0, 0), "omit"
        oh = conv_size(h, kern[0], stride[0], pad[0], dil[0])
        ow = conv_size(w, kern[1], stride[1], pad[1], dil[1])
        a = {"out": self.lit(out, env)}
        if kern != (1, 1) or self.flip():
            a["kernel"] = self.pair(kern, env)
        if stride != (1, 1) or self.flip():
            a["stride"] = self.pair(stride, env)
        if pad_form == "same":
            a["padding"] = "same"
        elif pad_form == "valid":
            a["padding"] = "valid"
        elif pad_form == "explicit":
            a["padding"] = self.pair(pad, env)
        if dil != (1, 1):
            a["dilation"] = self.pair(dil, env)
        if groups != 1 or self.flip():
            a["groups"] = self.lit(groups, env)
        norm = self.pick(["omit", "bn", "none"])
        if norm != "omit":
            a["norm"] = norm
        act = self.pick(["omit", "relu", "none", *ACTS[1:]])
        if act != "omit":
            a["act"] = self.lit(act, env)
        if self.flip():
            a["bias"] = self.lit(self.flip(), env)
        return Built({"conv": a}, (out, oh, ow))

    def pool(self, kind, shape, s, mode, env) -> Built:
        c, h, w = shape
        ceil = False
        if mode == "shaped":
            k = self.pick([3, 1, 5])
            kern, stride, pad = (k, k), s, (k // 2, k // 2)
            ceil = s == (1, 1) and self.flip()
        else:
            kern = self.pick([(2, 2), (3, 3), (1, 1), (2, 3)])
            stride = self.pick([kern, (1, 1), (2, 2), (3, 3)])
            pad = (self.draw(st.integers(0, kern[0] // 2)), self.draw(st.integers(0, kern[1] // 2)))
            ceil = self.flip()
            if min(pool_size(h, kern[0], stride[0], pad[0], ceil),
                   pool_size(w, kern[1], stride[1], pad[1], ceil)) < 1:
                kern, stride, pad, ceil = (1, 1), (1, 1), (0, 0), False
        oh, ow = (pool_size(h, kern[0], stride[0], pad[0], ceil),
                  pool_size(w, kern[1], stride[1], pad[1], ceil))
        a = {"kernel": self.pair(kern, env)}
        if stride != kern or self.flip():
            a["stride"] = self.pair(stride, env)
        if pad != (0, 0) or self.flip():
            a["padding"] = self.pair(pad, env)
        if ceil or self.flip():
            a["ceil_mode"] = ceil
        if kind == "avgpool" and self.flip():
            a["count_include_pad"] = self.flip()
        return Built({kind: a}, (c, oh, ow))

    # -- composites --------------------------------------------------------------------------
    def residual(self, shape, path, s, depth, env) -> Built:
        c, h, w = shape
        merge = self.pick(["add", "concat"])
        cb = self.channels(c, env=env)
        branch, bs = self.layer_list(shape, f"{path}.branch", "shaped", depth + 1, env, s, cb,
                                     n=(1, 3))
        agree = bs == shape if merge == "add" else bs[1:] == shape[1:]
        a = {"branch": branch}
        form = self.pick(["auto", "list", "when_auto", "when_always"]
                         + (["identity"] if agree else []))
        short = shape
        want = bs[0] if merge == "add" else None
        if form == "auto":
            if self.flip():
                a["shortcut"] = "auto"
            if not agree:
                short = (bs[0],) + bs[1:]        # the 1x1 projection to the branch's channels
        elif form == "identity":
            a["shortcut"] = "identity"
        elif form == "when_auto" and agree:
            with self.untracked():
                layers, _ = self.layer_list(shape, f"{path}.shortcut", "shaped", depth + 1, env, s,
                                            want, n=(1, 2))
            a["shortcut"] = {"when": "auto", "layers": layers}
        else:
            layers, short = self.layer_list(shape, f"{path}.shortcut", "shaped", depth + 1, env, s,
                                            want, n=(1, 2))
            a["shortcut"] = layers if form == "list" else {"when": form[5:], "layers": layers}
        if merge != "add" or self.flip():
            a["merge"] = merge
        if self.flip():
            a["scale"] = self.lit(self.pick([0.5, 1, 0.2, 2.0]), env)
        out = bs if merge == "add" else (short[0] + bs[0],) + bs[1:]
        post, out = self.layer_list(out, f"{path}.post", "shaped", depth + 1, env, n=(0, 2))
        if post or self.flip():
            a["post"] = post
        return Built({"residual": a}, out, "residual", bs[0], short[0])

    def parallel(self, shape, path, s, depth, env) -> Built:
        merge = self.pick(["concat", "add"])
        cb = self.channels(shape[0], env=env)
        nb = self.draw(st.integers(1, 3))
        mapping = self.flip()
        names = []
        for i in range(nb):
            names.append(self.pick([n for n in BRANCH_NAMES if n not in names]) if mapping
                         else f"branch{i}")
        branches, outs = [], []
        for nm in names:
            lo = 0 if s == (1, 1) and nb > 1 else 1      # an empty branch is the identity
            items, bs = self.layer_list(shape, f"{path}.{nm}", "shaped", depth + 1, env, s,
                                        cb if merge == "add" else None, n=(lo, 2))
            branches.append(items)
            outs.append(bs)
            if items:                     # an empty branch is the input itself: no scope in the IR
                self.track(f"{path}.{nm}", bs)
        out = outs[0] if merge == "add" else (sum(o[0] for o in outs),) + outs[0][1:]
        a = {"branches": dict(zip(names, branches)) if mapping else branches}
        if merge != "concat" or self.flip():
            a["merge"] = merge
        post, out = self.layer_list(out, f"{path}.post", "shaped", depth + 1, env, n=(0, 2))
        if post or self.flip():
            a["post"] = post
        return Built({"parallel": a}, out, "parallel")

    def families(self, shape, s):
        """Template families usable here (a square stride if it must stride)."""
        out = []
        for kind in self.c.block_kinds:
            fam = T.RESNEXT if kind == "resnext" else T.FAMILIES.get(kind)
            if fam is None or (s != (1, 1) and (not fam.takes_stride or s[0] != s[1])):
                continue
            out.append(fam)
        return out

    def block(self, shape, path, s, depth, env) -> Built:
        fams = self.families(shape, s)
        use_random = "random" in self.c.block_kinds and (not fams or self.flip())
        if use_random or not fams:
            name, given, b = self.random_template(shape, path, s, depth, env)
            return Built({"block": {"template": name, **given}}, b.shape, b.kind, b.branch_c,
                         b.short_c)
        fam = self.pick(fams)
        given = fam.draw(self, shape, s[0])
        p = fam.effective(given) if given is not None else None
        if p is None or not fam.ok(shape, p):
            return self.conv(shape, s, "shaped", env)
        self.use_template(fam)
        out = fam.out(shape, p)
        for rel, ch in fam.named(shape, p).items():
            self.tracked[f"{path}.{rel}"] = ch
        given = {k: self.lit(v, env) for k, v in given.items()}
        return Built({"block": {"template": fam.template_name(), **given}}, out, fam.kind,
                     fam.branch_c(shape, p), fam.short_c(shape, p))

    def use_template(self, fam):
        name = fam.template_name()
        for dep in fam.needs:
            self.use_template(T.FAMILIES[dep])
        if self.c.include_dir and name in T.RESNET_FILE_TEMPLATES:
            return
        self.templates[name] = fam.template

    def random_template(self, shape, path, s, depth, outer_env):
        """A one-off template: a random body, some values written as $-expressions."""
        name = f"rnd{self.n_random}"
        self.n_random += 1
        c = shape[0]
        params, given = {"out": "int"}, {}
        env = {"in_channels": c, "out": self.channels(c)}
        given["out"] = env["out"]
        if self.flip():
            params["width"] = env["width"] = self.channels(c)
            if self.flip():
                given["width"] = env["width"] = self.channels(c)
        if self.flip():
            params["act"] = env["act"] = self.pick(["relu", "silu"])
            if self.flip():
                given["act"] = env["act"] = self.pick(["hard_swish", "tanh", "relu"])
        if self.flip():
            params["flag"] = env["flag"] = self.flip()
        if s != (1, 1) and s[0] == s[1]:
            params["stride"] = 1
            given["stride"] = env["stride"] = s[0]
        kind = self.pick(["layers", "residual", "parallel"])
        if kind == "layers":
            items, out = self.layer_list(shape, path, "shaped", depth + 1, env, s, n=(1, 3))
            b = Built(items, out, "layers")
        elif kind == "residual":
            b = self.residual(shape, path, s, depth, env)
        else:
            b = self.parallel(shape, path, s, depth, env)
        body = b.item if kind == "layers" else b.item[kind]
        tmpl = {"params": params, kind: body}
        if self.flip():
            tmpl = {"description": f"generated template {name}", **tmpl}
        self.templates[name] = tmpl
        given = {k: self.lit(v, outer_env) for k, v in given.items()}
        return name, given, b

    # -- the network ---------------------------------------------------------------------------
    def network(self) -> Net:
        c = self.c
        ch = self.draw(st.integers(*c.input_channels))
        if self.flip():
            size = self.draw(st.integers(*c.input_size))
            hw = (size, size)
        else:
            hw = (self.draw(st.integers(*c.input_size)), self.draw(st.integers(*c.input_size)))
        shape = (ch, *hw)
        spec = {"name": self.pick(SPEC_NAMES)}
        if self.flip():
            spec["description"] = self.pick(["generated", "a: colon", "multi\nline", ""])
        if self.flip():
            spec["version"] = 1
        if c.include_dir:
            spec["include"] = [c.include_dir.rstrip("/") + "/blocks/resnet.yaml"]
        size = hw[0] if hw[0] == hw[1] and self.flip() else list(hw)
        spec["input"] = {"channels": ch, "size": size}
        stem, shape = self.layer_list(shape, "stem", "free", 0, None, n=(0, 2))
        if stem or self.flip():
            spec["stem"] = stem
        stages, blocks, sizes = [], [], []
        for i in range(self.draw(st.integers(1, c.max_stages))):
            st_dict, shape, infos = self.stage(i, shape)
            stages.append(st_dict)
            blocks += infos
            sizes.append(len(infos))
        head, shape = self.head(shape)
        if head is not None:
            spec["head"] = head
        rules = self.se_rules(blocks, sizes)
        if rules:
            spec["se"] = rules
        spec["stages"] = stages
        if self.templates:
            spec["blocks"] = dict(self.templates)
        order = ["name", "description", "version", "include", "input", "blocks", "stem", "stages",
                 "head", "se"]
        spec = {k: spec[k] for k in order if k in spec}
        return Net(spec, blocks, dict(self.tracked))

    def stage(self, i, shape):
        c = self.c
        kind = self.pick(c.block_kinds + (V2.WEIGHTED if c.v2 else ()))
        stride = self.pick([1, 2])
        stage_name = self.pick([None, "stage1", "conv2_x", "low", "high", "s_a"])
        d = {} if stage_name is None else {"name": stage_name}
        shown = stage_name or f"stage{i}"
        path = f"stages.{i}"
        if kind in V2.V2_KINDS:
            return V2.stage(self, kind, i, shape, stride, d, shown)
        if kind == "layers":
            items, out = self.layer_list(shape, path, "free", 0, None, n=(1, 3))
            info = BlockInfo(path, i, 0, None, shown, "layers", shape[0], out[0],
                             rel=self._rel(path))
            return {"layers": items, **d}, out, [info]
        if kind == "random":
            bpath = f"{path}.blocks.0"
            name, given, b = self.random_template(shape, bpath, (stride, stride), 0, None)
            info = BlockInfo(bpath, i, 0, name, shown, b.kind, shape[0], b.shape[0], b.branch_c,
                             b.short_c, rel=self._rel(bpath))
            rep = {"repeat": 1} if self.flip() else {}
            return {"block": name, **rep, **given, **d}, b.shape, [info]
        fam = T.RESNEXT if kind == "resnext" else T.FAMILIES[kind]
        if not fam.takes_stride:
            stride = 1
        given = fam.draw(self, shape, stride)
        if given is None or not fam.ok(shape, fam.effective(given)):
            fam = T.FAMILIES["basic"]
            given = fam.draw(self, shape, stride)
        self.use_template(fam)
        repeat = self.draw(st.integers(1, c.max_repeat))
        infos = []
        for j in range(repeat):
            gj = dict(given)
            if j > 0 and "stride" in gj:
                gj["stride"] = 1
            p = fam.effective(gj)
            if not fam.ok(shape, p):
                break
            bpath = f"{path}.blocks.{j}"
            named = fam.named(shape, p)
            for rel, ch in named.items():
                self.tracked[f"{bpath}.{rel}"] = ch
            out = fam.out(shape, p)
            infos.append(BlockInfo(bpath, i, j, fam.template_name(), shown, fam.kind, shape[0],
                                   out[0], fam.branch_c(shape, p), fam.short_c(shape, p),
                                   rel=named))
            shape = out
        rep = {"repeat": len(infos)} if len(infos) > 1 or self.flip() else {}
        return {"block": fam.template_name(), **rep, **given, **d}, shape, infos

    def _rel(self, path):
        return {k[len(path) + 1:]: v for k, v in self.tracked.items() if k.startswith(path + ".")}

    def head(self, shape):
        want = self.c.head
        if want is False or (want is None and not self.flip()):
            return None, shape
        used: set = set()
        items, shape = self.layer_list(shape, "head", "free", 0, None, n=(0, 1), used=used)
        if self.flip() or want:
            c, h, w = shape
            kind = self.pick(["global_avgpool", "global_maxpool", "avgpool"]
                             + (["flatten"] if c * h * w <= 256 else []))
            if kind == "avgpool":
                items.append({"avgpool": {"kernel": [h, w]}})
                items.append("flatten")
            elif kind == "flatten":
                items.append(self.pick(["flatten", {"flatten": None}]))
            else:
                items.append(self.pick([kind, {kind: {}}, {kind: None}]))
            shape = (c * h * w,) if kind == "flatten" else (c,)
            more, shape = self.layer_list(shape, "head", "vector", 0, None, n=(0, 3), used=used,
                                          start=len(items))
            items += more
        return items, shape

    # -- SE rules ---------------------------------------------------------------------------
    def se_rules(self, blocks, sizes):
        want = self.c.se
        if want is False:
            return []
        n = self.pick([1, 2, 3] if want else [1, 2, 3, 0])
        rules = [self.se_rule(blocks, sizes) for _ in range(n)]
        if want and all(r.get("position") == "none" for r in rules):
            rules.append(self.se_rule(blocks, sizes, form="blocks"))
        return rules

    def selector(self, blocks, sizes) -> dict:
        sel = {}
        n = len(sizes)
        if self.flip():
            sel["stages"] = self.pick(["all", self.draw(st.integers(-n, n)),
                                       sorted({self.draw(st.integers(-n, n - 1))
                                               for _ in range(2)})])
        if self.flip():
            tmpls = sorted({b.template for b in blocks if b.template})
            globs = tmpls + [t[:2] + "*" for t in tmpls] + ["*", "nosuch"]
            sel["blocks"] = self.pick(["all", 0, -1, [0, 1], 1] + globs)
        if self.flip():
            sel["name"] = self.pick(sorted({b.stage_name for b in blocks}) + ["stage*", "*", "?o*"])
        return sel

    def se_rule(self, blocks, sizes, form=None) -> dict:
        form = form or self.pick(["blocks", "after", "path", "none"])
        where = self.selector(blocks, sizes)
        sel = select_blocks(blocks, where, sizes)
        if not sel:
            where, sel = {"stages": "all"}, list(blocks)
        rule: dict = {"where": where}
        targets = None           # [(kind, channels)] of the points the rule makes
        if form == "path":
            pat, matched = self.path_pattern()
            if pat is not None:
                within = tuple(b.path + "." for b in sel)
                inner = [m for m in matched if m.startswith(within)]
                if inner and where and self.flip():
                    rule["where"] = {**where, "path": pat}
                    matched = inner
                else:
                    rule["where"] = {"path": pat if self.flip() else [pat]}
                pos = self.pick(["omit", "after", "none"])
                if pos == "none":
                    return {**rule, "position": "none"}
                if pos == "after":
                    rule["position"] = "after"
                targets = [(m, self.tracked[m]) for m in matched]
            else:
                form = "blocks"
        if form == "after":
            common = set.intersection(*({r for r, ch in b.rel.items() if ch is not None}
                                        for b in sel))
            if common:
                rel = self.pick(sorted(common))
                rule["position"] = {"after": rel}
                targets = [(f"{b.path}.{rel}", b.rel[rel]) for b in sel]
            else:
                form = "blocks"
        if form == "none":
            rule["position"] = "none"
            return rule
        pos = None
        if targets is None:
            pos = self.pick(["standard", "post", "identity", "pre"])
            if pos in ("standard", "identity") and any(b.kind != "residual" for b in sel):
                # narrow the selector to stages of residual blocks only, if there are any
                res = sorted({b.stage for b in blocks}
                             - {b.stage for b in blocks if b.kind != "residual"})
                if res:
                    rule["where"] = where = {"stages": res if len(res) > 1 or self.flip()
                                             else res[0]}
                    sel = select_blocks(blocks, where, sizes)
            targets = [(b.path, b) for b in sel]
        targets = self.exclude(rule, blocks, sizes, targets)
        if form == "blocks":
            infos = [b for _, b in targets]
            if pos in ("standard", "identity") and any(b.kind != "residual" for b in infos):
                pos = "post"
            if pos != "standard" or self.flip():
                rule["position"] = pos
            attr = {"standard": "branch_c", "identity": "short_c", "pre": "in_c",
                    "post": "out_c"}[pos]
            chans = [getattr(b, attr) for b in infos]
        else:
            chans = [ch for _, ch in targets]
        if self.c.v3 and self.draw(st.integers(0, 3)) == 0:
            V3.module_options(self, rule, chans)
        elif self.c.v2 and self.draw(st.integers(0, 3)) > 0:
            V2.module_options(self, rule, chans, stage_blocks=form == "blocks")
        else:
            self.se_options(rule, chans)
        return rule

    def exclude(self, rule, blocks, sizes, targets):
        if not self.flip():
            return targets
        if self.flip():
            # `exclude: {}` excludes nothing
            ex = self.selector(blocks, sizes) or {"stages": "all"}
            gone = tuple(b.path for b in select_blocks(blocks, ex, sizes))
        else:
            pat = self.pick([p for p, _ in targets if isinstance(p, str) and p in self.tracked]
                            or ["**.nosuch"])
            ex = {"path": pat if self.flip() else "**." + pat.split(".")[-1]}
            gone = tuple(t for t in self.tracked if glob(ex["path"], t))
        rule["exclude"] = ex
        return [(p, x) for p, x in targets
                if not any(p == g or p.startswith(g + ".") for g in gone)]

    def path_pattern(self):
        """A glob over named scopes that matches only ones where SE can go -> (glob, matches)."""
        ok = sorted(p for p, ch in self.tracked.items() if ch is not None)
        if not ok:
            return None, []
        target = self.pick(ok)
        segs = target.split(".")
        form = self.pick(["exact", "tail", "stars", "globstar"])
        if form == "tail":
            pat = "**." + segs[-1]
        elif form == "stars":
            pat = ".".join("*" if i < len(segs) - 1 and self.flip() else s
                           for i, s in enumerate(segs))
        elif form == "globstar" and len(segs) > 2:
            cut = self.draw(st.integers(1, len(segs) - 2))
            pat = ".".join(segs[:cut] + ["**"] + segs[-1:])
        else:
            pat = target
        matched = [p for p in self.tracked if glob(pat, p)]
        if any(self.tracked[m] is None for m in matched):
            pat, matched = target, [target]
        return pat, matched

    def se_options(self, rule, chans):
        chans = [ch for ch in chans]
        low = min(chans) if chans else 1
        if self.flip() or low < 16:
            if self.flip() and low >= 1:
                rule["reduction"] = self.pick([r for r in (1, 2, 4, 8, 16, 3) if r <= low])
            elif self.flip():
                rule["channels"] = self.pick([1, 2, 4, 8])
            else:
                rule["reduction"] = self.pick([r for r in (1, 2, 4, 8, 16, 3) if r <= low])
        if self.flip():
            rule["squeeze"] = self.pick(["avg", "max"])
        if self.flip():
            rule["gate"] = self.pick(["sigmoid", "hard_sigmoid"])
        if self.flip():
            rule["bias"] = self.flip()


def exprs_for(value, env: dict) -> list[str]:
    """$-expressions over `env` (a template's parameters) that evaluate to `value`."""
    out = []
    for k, x in sorted(env.items()):
        if isinstance(value, bool):
            if isinstance(x, bool):
                out.append(f"${k}" if x == value else f"not ${k}")
            continue
        if isinstance(value, str):
            if x == value:
                out.append(f"${k}")
            if isinstance(x, int) and not isinstance(x, bool):
                out.append(f"'{value}' if ${k} >= 0 else 'relu'")
            continue
        if isinstance(x, bool) or not isinstance(x, int) or not isinstance(value, (int, float)):
            continue
        v = value
        if isinstance(v, float):
            out.append(f"{v!r} if ${k} > 0 else 1.0")
            continue
        if x == v:
            out += [f"${k}", f"max(${k}, {v})", f"{v} if ${k} > 0 else 1"]
        if x and v % x == 0 and v // x > 1:
            out.append(f"${k} * {v // x}")
        for m in (2, 4):
            if x // m == v:
                out.append(f"${k} // {m}")
        if 0 < x - v <= 2:
            out.append(f"${k} - {x - v}")
        if 0 < v - x <= 2:
            out.append(f"${k} + {v - x}")
        if x > v:
            out.append(f"min(${k}, {v})")
    return out


@st.composite
def networks(draw, cons: Constraints) -> Net:
    return Gen(draw, cons).network()
