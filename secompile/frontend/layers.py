"""Layer builders: where each layer kind of the spec language becomes IR nodes.

    LAYERS[kind](fe, ctx, attrs, path, p, x) -> the output node's path
    COMPOSITES[kind](fe, ctx, attrs, path, p, x) -> a Composite (residual, parallel)

`fe` is the Expander: builders resolve values through it (`fe.value`, `fe.pair`, which blame
the right spec location), add nodes with `fe.node` and expand nested layer lists with
`fe.items`. A builder records a problem and raises Abort when it cannot go on.

Over 400 lines on purpose: one builder per layer kind of the language, in one table, so a
new layer kind is one function here (plug-ins: ir/plugins.py).
"""
from __future__ import annotations

from ..ir import ops, plugins
from ..ir.graph import Composite
from ..lang.errors import did_you_mean, format_path
from .binding import Abort
from .recording import record_fused

BN_DEFAULTS = {"eps": 1e-5, "momentum": 0.1}


def _opt(fe, ctx, a, path, key, default=None, want=None):
    """An optional attribute, resolved (expressions allowed) or its default."""
    return fe.resolve(ctx, a[key], path + (key,), want) if key in a else default


def conv(fe, ctx, a, path, p, x) -> str:
    """conv -> conv2d [+ batchnorm] [+ act]: nodes `<p>.conv`, `<p>.bn`, `<p>.act`."""
    return _conv(fe, ctx, a, path, p, x, raw=False)


def conv2d(fe, ctx, a, path, p, x) -> str:
    """conv2d -> one bare conv2d node named `<p>` (no BN, no activation; bias default true)."""
    return _conv(fe, ctx, a, path, p, x, raw=True)


def _conv(fe, ctx, a, path, p, x, raw: bool) -> str:
    # an attribute not written takes its literal default without being resolved (the defaults
    # are valid: resolving them could find no problem; groups 1 divides any channel count)
    out = fe.resolve(ctx, a["out"], path + ("out",), int)
    k = fe.pair(ctx, a["kernel"], path + ("kernel",)) if "kernel" in a else (1, 1)
    stride = fe.pair(ctx, a["stride"], path + ("stride",)) if "stride" in a else (1, 1)
    dil = fe.pair(ctx, a["dilation"], path + ("dilation",)) if "dilation" in a else (1, 1)
    pad_raw = fe.resolve(ctx, a.get("padding", "same"), path + ("padding",)) \
        if not isinstance(a.get("padding"), list) else None
    if pad_raw == "same":
        pad = (ops.same_padding(k[0], dil[0]), ops.same_padding(k[1], dil[1]))
    elif pad_raw == "valid":
        pad = (0, 0)
    else:
        pad = fe.pair(ctx, a["padding"], path + ("padding",))
    groups, g_blame = fe.value(ctx, a["groups"], path + ("groups",), int) if "groups" in a \
        else (1, None)
    norm = "none" if raw else fe.resolve(ctx, a["norm"], path + ("norm",)) if "norm" in a \
        else "bn"
    act = "none" if raw else fe.resolve(ctx, a["act"], path + ("act",)) if "act" in a \
        else "relu"
    bias = fe.resolve(ctx, a["bias"], path + ("bias",), bool) if "bias" in a else norm == "none"
    attrs = {"out": out, "kernel": k, "stride": stride, "padding": pad, "dilation": dil,
             "groups": groups, "bias": bias}
    fe.positive(ctx, path, attrs, ("out", "kernel", "stride", "dilation", "groups"))
    if min(pad) < 0:
        fe.problem(ctx, path + ("padding",), f"padding must be >= 0, got {pad}")
        raise Abort
    if norm not in ("bn", "none"):
        fe.problem(ctx, path + ("norm",), f"norm must be bn or none, got {norm!r}")
        raise Abort
    if act != "none" and act not in ops.ACTIVATIONS:
        fe.problem(ctx, path + ("act",),
                   f"unknown activation {act!r}{did_you_mean(act, ops.ACTIVATIONS)}")
        raise Abort
    cin = fe.graph.shape(x)[0]
    unit = fe.graph.unit_of(p)
    rel = p[len(unit) + 1:] if unit and p != unit else p
    for what, n in (("input", cin), ("output", out)):
        if n % groups:
            fe.blame(ctx, g_blame, f"{groups} does not divide the {n} {what} channels of {rel}")
            raise Abort
    y = fe.node(ctx, path, p if raw else f"{p}.conv", "conv2d", attrs, [x])
    if norm == "bn":
        y = fe.node(ctx, path, f"{p}.bn", "batchnorm", dict(BN_DEFAULTS), [y])
    if act != "none":
        y = fe.node(ctx, path, f"{p}.act", "act", {"kind": act}, [y])
    return y


def bn(fe, ctx, a, path, p, x) -> str:
    a = a or {}
    eps = fe.number(ctx, a.get("eps", 1e-5), path + ("eps",), "bn eps", low=0, open_low=True)
    momentum = fe.number(ctx, a.get("momentum", 0.1), path + ("momentum",), "bn momentum",
                         low=0, high=1)
    return fe.node(ctx, path, p, "batchnorm", {"eps": eps, "momentum": momentum}, [x])


def act(kind):
    def build(fe, ctx, a, path, p, x) -> str:
        return fe.node(ctx, path, p, "act", {"kind": kind}, [x])
    return build


def act_layer(fe, ctx, a, path, p, x) -> str:
    """`act: KIND` (an activation name or an expression giving one): one act node."""
    kind = fe.resolve(ctx, a, path)
    if kind not in ops.ACTIVATIONS:
        hint = did_you_mean(str(kind), ops.ACTIVATIONS)
        fe.problem(ctx, path, f"unknown activation {kind!r}{hint}")
        raise Abort
    return fe.node(ctx, path, p, "act", {"kind": kind}, [x])


def pool(kind):
    def build(fe, ctx, a, path, p, x) -> str:
        k = fe.pair(ctx, a["kernel"], path + ("kernel",))
        attrs = {"kernel": k,
                 "stride": fe.pair(ctx, a["stride"], path + ("stride",)) if "stride" in a else k,
                 "padding": (fe.pair(ctx, a["padding"], path + ("padding",))
                             if "padding" in a else (0, 0)),
                 "ceil_mode": bool(_opt(fe, ctx, a, path, "ceil_mode", False))}
        if kind == "avgpool":
            attrs["count_include_pad"] = bool(_opt(fe, ctx, a, path, "count_include_pad", True))
        fe.positive(ctx, path, attrs, ("kernel", "stride"))
        return fe.node(ctx, path, p, kind + "2d", attrs, [x])
    return build


def global_pool(mode):
    def build(fe, ctx, a, path, p, x) -> str:
        return fe.node(ctx, path, p, "global_pool", {"mode": mode, "keepdim": False}, [x])
    return build


def global_pool_layer(fe, ctx, a, path, p, x) -> str:
    """`global_pool: {mode: avg|max, keepdim: true}`: (C, H, W) -> (C, 1, 1), as in a gate."""
    mode = _opt(fe, ctx, a, path, "mode", "avg")
    if mode not in ops.POOL_MODES:
        fe.problem(ctx, path + ("mode",), f"pool mode must be one of {', '.join(ops.POOL_MODES)}, "
                                          f"got {mode!r}{did_you_mean(str(mode), ops.POOL_MODES)}")
        raise Abort
    keepdim = _opt(fe, ctx, a, path, "keepdim", True, want=bool)
    return fe.node(ctx, path, p, "global_pool", {"mode": mode, "keepdim": keepdim}, [x])


def flatten(fe, ctx, a, path, p, x) -> str:
    return fe.node(ctx, path, p, "flatten", {}, [x])


def linear(fe, ctx, a, path, p, x) -> str:
    out = _opt(fe, ctx, a, path, "out", want=int)
    fe.positive(ctx, path, {"out": out}, ("out",))
    return fe.node(ctx, path, p, "linear",
                   {"out": out, "bias": bool(_opt(fe, ctx, a, path, "bias", True))}, [x])


def dropout(fe, ctx, a, path, p, x) -> str:
    pr = _opt(fe, ctx, a, path, "p", 0.5)
    if not isinstance(pr, (int, float)) or not 0 <= pr < 1:
        fe.problem(ctx, path + ("p",), f"dropout p must be in [0, 1), got {pr!r}")
        raise Abort
    return fe.node(ctx, path, p, "dropout", {"p": float(pr)}, [x])


def channel_shuffle(fe, ctx, a, path, p, x) -> str:
    gr, blame = fe.value(ctx, a["groups"], path + ("groups",), int)
    fe.positive(ctx, path, {"groups": gr}, ("groups",))
    return fe.node(ctx, path, p, "channel_shuffle", {"groups": gr}, [x], blame=blame)


def identity(fe, ctx, a, path, p, x) -> str:
    return fe.node(ctx, path, p, "identity", {}, [x])


# -- attention building blocks (ECA, CBAM, Selective Kernel) --------------------------------
def channel_conv(fe, ctx, a, path, p, x) -> str:
    """ECA's Conv1d across the pooled channels: `channel_conv: {kernel: K[, padding: P]}`."""
    k = fe.resolve(ctx, a["kernel"], path + ("kernel",), int)
    fe.positive(ctx, path, {"kernel": k}, ("kernel",))
    pad = _opt(fe, ctx, a, path, "padding", None, int)
    if pad is not None and pad < 0:
        fe.problem(ctx, path + ("padding",), f"padding must be >= 0, got {pad}")
        raise Abort
    return fe.node(ctx, path, p, "channel_conv", {"kernel": k, "padding": pad}, [x])


def reduce(op):
    """dual_pool, spatial_sum, channel_pool: no attributes."""
    def build(fe, ctx, a, path, p, x) -> str:
        return fe.node(ctx, path, p, op, {}, [x])
    return build


def channel_slice(fe, ctx, a, path, p, x) -> str:
    """`channel_slice: {start: S, size: N}`: channels [S, S + N) (Selective Kernel's split)."""
    start, s_blame = fe.value(ctx, a["start"], path + ("start",), int)
    size = fe.resolve(ctx, a["size"], path + ("size",), int)
    fe.positive(ctx, path, {"size": size}, ("size",))
    if start < 0:
        fe.blame(ctx, s_blame, f"start must be >= 0, got {start}")
        raise Abort
    return fe.node(ctx, path, p, "channel_slice", {"start": start, "size": size}, [x])


def drop_path(fe, ctx, a, path, p, x) -> str:
    """`drop_path: {p: P}`: per-sample stochastic depth in training, identity in eval."""
    pr = _opt(fe, ctx, a, path, "p", None)
    if isinstance(pr, bool) or not isinstance(pr, (int, float)) or not 0 <= pr < 1:
        fe.problem(ctx, path + ("p",), f"drop_path p must be in [0, 1), got {pr!r}")
        raise Abort
    return fe.node(ctx, path, p, "drop_path", {"p": float(pr)}, [x])


# -- global context, split attention, layer scale (issue 22) --------------------------------
def softmax(fe, ctx, a, path, p, x) -> str:
    """`softmax: {axis: channels|positions}`."""
    axis = _opt(fe, ctx, a, path, "axis", "channels")
    if axis not in ops.SOFTMAX_AXES:
        fe.problem(ctx, path + ("axis",), f"softmax axis must be one of "
                   f"{', '.join(ops.SOFTMAX_AXES)}, got {axis!r}"
                   f"{did_you_mean(str(axis), ops.SOFTMAX_AXES)}")
        raise Abort
    return fe.node(ctx, path, p, "softmax", {"axis": axis}, [x])


def layernorm(fe, ctx, a, path, p, x) -> str:
    """`layernorm: {eps: E}`: LayerNorm over the channels at each position (timm LayerNorm2d)."""
    eps = _opt(fe, ctx, a or {}, path, "eps", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0:
        fe.problem(ctx, path + ("eps",), f"eps must be a positive number, got {eps!r}")
        raise Abort
    return fe.node(ctx, path, p, "layernorm", {"eps": float(eps)}, [x])


def attn_pool(fe, ctx, a, path, p, x) -> str:
    """`attn_pool: {weights: [layers]}`: the layers map x to weights (1, H, W) (GC: a 1x1 conv to
    one channel, softmax over positions), nodes `<p>.<name>`; `<p>.pool` is sum_hw x * w."""
    w = fe.items(ctx, a["weights"], path + ("weights",), p, x)
    return fe.node(ctx, path, f"{p}.pool", "attn_pool", {}, [x, w])


def layer_scale(fe, ctx, a, path, p, x) -> str:
    """`layer_scale: {init: V}`: a learned per-channel multiply, gamma starting at V."""
    init = _opt(fe, ctx, a or {}, path, "init", 1e-5)
    if isinstance(init, bool) or not isinstance(init, (int, float)):
        fe.problem(ctx, path + ("init",), f"init must be a number, got {init!r}")
        raise Abort
    return fe.node(ctx, path, p, "layer_scale", {"init": float(init)}, [x])


def split_sum(fe, ctx, a, path, p, x) -> str:
    """`split_sum: {parts: P}`: (P * C, H, W) -> (C, H, W), the sum of the P channel splits."""
    parts, blame = fe.value(ctx, a["parts"], path + ("parts",), int)
    fe.positive(ctx, path, {"parts": parts}, ("parts",))
    return fe.node(ctx, path, p, "split_sum", {"parts": parts}, [x], blame=blame)


LAYERS = {
    "conv": conv, "bn": bn,
    **{kind: act(kind) for kind in ops.ACTIVATIONS},
    "maxpool": pool("maxpool"), "avgpool": pool("avgpool"),
    "global_avgpool": global_pool("avg"), "global_maxpool": global_pool("max"),
    "flatten": flatten, "linear": linear, "dropout": dropout,
    "channel_shuffle": channel_shuffle, "identity": identity,
    "channel_conv": channel_conv, "dual_pool": reduce("dual_pool"),
    "spatial_sum": reduce("spatial_sum"), "channel_pool": reduce("channel_pool"),
    "channel_slice": channel_slice, "drop_path": drop_path,
    # raw layers of attention templates (one node each, named by the layer): v2 language core
    "conv2d": conv2d, "act": act_layer, "global_pool": global_pool_layer,
    "softmax": softmax, "layernorm": layernorm, "attn_pool": attn_pool,
    "layer_scale": layer_scale, "split_sum": split_sum,
}


def plugin_layer(plugin: plugins.Plugin):
    """A registered op's layer (ir/plugins.py): each attribute checked where it was written,
    defaults filled in, one node at the layer path."""
    def build(fe, ctx, a, path, p, x) -> str:
        attrs = {}
        for key, decl in plugin.attrs.items():
            if key not in (a or {}):
                attrs[key] = decl.default   # a missing required one is the schema's problem
                continue
            val, blame = fe.value(ctx, a[key], path + (key,))
            why = decl.problem(val)
            if why:
                fe.blame(ctx, blame, f"{plugin.layer} {key}: {why}")
                raise Abort
            attrs[key] = float(val) if decl.type is float else val
        return fe.node(ctx, path, p, plugin.name, attrs, [x])
    return build


def layer_builder(kind: str):
    """The builder of a layer kind: built in, or registered by this program; None if neither."""
    if kind in LAYERS:
        return LAYERS[kind]
    plugin = plugins.by_layer(kind)
    return plugin_layer(plugin) if plugin is not None else None


MERGES = ("add", "concat", "partial_add")   # a residual's; partial_add: ReXNet (docs)


def _agree(merge, xs, bs) -> bool:
    """Can the input be merged with the branch as it is (else the shortcut projects)?"""
    if merge == "add":
        return xs == bs
    return xs[1:] == bs[1:] and (merge == "concat" or xs[0] <= bs[0])


def _merge(fe, ctx, path, p, merge, short, branch, scale) -> str:
    """The residual's merge node; inputs in the order (shortcut, branch): concat puts the
    shortcut's channels first, partial_add adds it to the branch's first channels."""
    if merge == "add":
        return fe.node(ctx, path, f"{p}.add", "add", {"scales": (1.0, float(scale))},
                       [short, branch])
    return fe.node(ctx, path, f"{p}.{merge}", merge, {}, [short, branch])


# -- composites ----------------------------------------------------------------------------
def residual(fe, ctx, a, path, p, x) -> Composite:
    g = fe.graph
    branch = fe.items(ctx, a["branch"], path + ("branch",), f"{p}.branch", x)
    if branch == x:   # as `branch: []`, which the schema refuses (the merge would read x twice)
        fe.problem(ctx, path + ("branch",), "every layer of the branch is switched off by "
                                            "`when:`; a residual branch needs at least one")
        raise Abort
    merge = fe.resolve(ctx, a.get("merge", "add"), path + ("merge",))
    if merge not in MERGES:
        fe.problem(ctx, path + ("merge",), f"merge must be one of {', '.join(MERGES)}, "
                                           f"got {merge!r}")
        raise Abort
    if "skip" in a:
        return _skip_residual(fe, ctx, a, path, p, x, branch, merge)
    sc = a.get("shortcut", "auto")
    when, layers = ("auto", None) if sc == "auto" else ("never", None) if sc == "identity" else \
        ("always", sc) if isinstance(sc, list) else (sc.get("when", "auto"), sc["layers"])
    xs, bs = g.shape(x), g.shape(branch)
    agree = _agree(merge, xs, bs)
    short = x
    if when == "always" or (when == "auto" and not agree):
        if layers is not None:
            lp = path + ("shortcut",) + (("layers",) if isinstance(sc, dict) else ())
            short = fe.items(ctx, layers, lp, f"{p}.shortcut", x)
        else:
            short = projection(fe, ctx, path, p, x, branch)
    scale = fe.number(ctx, a.get("scale", 1.0), path + ("scale",), "residual scale")
    m = _merge(fe, ctx, path, p, merge, short, branch, scale)
    out = fe.items(ctx, a.get("post") or [], path + ("post",), f"{p}.post", m)
    return Composite(p, "residual", x, out, branch_out=branch, shortcut_out=short, merge=m)


def _skip_residual(fe, ctx, a, path, p, x, branch, merge) -> Composite:
    """`skip: auto` (or a boolean expression): an identity skip only where the branch keeps the
    input's shape (MBConv); without it the block is just its branch: no merge node."""
    g = fe.graph
    if "shortcut" in a:
        fe.problem(ctx, path + ("skip",), "give either skip or shortcut, not both", key=True)
        raise Abort
    xs, bs = g.shape(x), g.shape(branch)
    keep = _agree(merge, xs, bs)
    skip = a["skip"]
    if skip != "auto":
        skip = fe.resolve(ctx, skip, path + ("skip",), bool)
        if skip and not keep:
            fe.blame(ctx, fe.value(ctx, a["skip"], path + ("skip",))[1],
                     f"skip needs the branch to keep the shape {xs}, it gives {bs}")
            raise Abort
    if not (keep if skip == "auto" else skip):
        out = fe.items(ctx, a.get("post") or [], path + ("post",), f"{p}.post", branch)
        return Composite(p, "layers", x, out)   # plain: SE positions standard/identity refuse it
    scale = fe.number(ctx, a.get("scale", 1.0), path + ("scale",), "residual scale")
    m = _merge(fe, ctx, path, p, merge, x, branch, scale)
    out = fe.items(ctx, a.get("post") or [], path + ("post",), f"{p}.post", m)
    return Composite(p, "residual", x, out, branch_out=branch, shortcut_out=x, merge=m)


def projection(fe, ctx, path, p, x, branch) -> str:
    """The `auto` shortcut when shapes differ: 1x1 conv (stride from the sizes) + BN."""
    if len(fe.graph.shape(x)) != 3 or len(fe.graph.shape(branch)) != 3:   # a vector
        fe.problem(ctx, path, f"the auto shortcut (a 1x1 conv) needs feature maps, but the block "
                              f"maps {fe.graph.shape(x)} to {fe.graph.shape(branch)}; give the "
                              "shortcut layers explicitly")
        raise Abort
    (_, hi, wi), (co, ho, wo) = fe.graph.shape(x), fe.graph.shape(branch)
    sh, sw = -(-hi // ho), -(-wi // wo)   # the stride s with ceil(n / s) == out, if any
    if ops.conv_out(hi, 1, sh, 0) != ho or ops.conv_out(wi, 1, sw, 0) != wo:
        fe.problem(ctx, path + ("shortcut",),
                   f"auto shortcut cannot map {hi}x{wi} to {ho}x{wo} with a "
                   "strided 1x1 conv; give the shortcut layers explicitly")
        raise Abort
    conv = {"out": co, "kernel": (1, 1), "stride": (sh, sw), "padding": (0, 0), "dilation": (1, 1),
            "groups": 1, "bias": False}
    y = fe.node(ctx, path, f"{p}.shortcut.0.conv", "conv2d", conv, [x])
    return fe.node(ctx, path, f"{p}.shortcut.0.bn", "batchnorm", dict(BN_DEFAULTS), [y])


def parallel(fe, ctx, a, path, p, x) -> Composite:
    br = a["branches"]
    named = br.items() if isinstance(br, dict) else ((f"branch{i}", b) for i, b in enumerate(br))
    outs = []
    for i, (name, items) in enumerate(named):
        key = name if isinstance(br, dict) else i
        if not isinstance(name, str):   # YAML reads `1:`, `true:` or `null:` as no text
            fe.problem(ctx, path + ("branches", key),
                       f"branch name {name!r} is not text: quote it ('{name}')", key=True)
            raise Abort
        if not name or "." in name:
            fe.problem(ctx, path + ("branches", key),
                       f"branch name {name!r}: names are non-empty and have no "
                       "'.' (it separates the parts of node paths)", key=True)
            raise Abort
        outs.append(fe.items(ctx, items, path + ("branches", key), f"{p}.{name}", x))
    if outs == [x]:   # one branch and no layer in it: nothing to merge, no node of its own
        fe.problem(ctx, path + ("branches",), "a parallel of one branch needs a layer in it (it "
                                              "is empty or switched off by `when:`)")
        raise Abort
    if isinstance(a.get("merge"), dict):
        return select_merge(fe, ctx, a, path, p, x, outs)
    merge = fe.resolve(ctx, a.get("merge", "concat"), path + ("merge",))
    if merge not in ("add", "concat"):
        fe.problem(ctx, path + ("merge",), f"merge must be concat or add, got {merge!r}")
        raise Abort
    if merge == "concat":
        m = fe.node(ctx, path, f"{p}.concat", "concat", {}, outs) if len(outs) > 1 else outs[0]
    else:
        m = fe.node(ctx, path, f"{p}.add", "add", {"scales": (1.0,) * len(outs)}, outs) \
            if len(outs) > 1 else outs[0]
    out = fe.items(ctx, a.get("post") or [], path + ("post",), f"{p}.post", m)
    return Composite(p, "parallel", x, out, merge=m)


def select_merge(fe, ctx, a, path, p, x, outs) -> Composite:
    """`merge: {select: TEMPLATE, ...}` (Selective Kernel): the branches' sum `<p>.add` -> the
    template at `<p>.attn` (logits, P * C channels, path-major) -> `<p>.select`, the branches
    weighted by the softmax of their logits across the P branches."""
    spec = dict(a["merge"])
    mpath = path + ("merge",)
    tmpl = fe.template(spec.pop("select"))
    if tmpl is None:
        fe.missing_template(ctx, mpath + ("select",), a["merge"]["select"], fe.template_names())
        raise Abort
    if len(outs) < 2:
        fe.problem(ctx, mpath, "a select merge needs at least two branches")
        raise Abort
    if "paths" in tmpl.params and "paths" not in spec:
        spec["paths"] = len(outs)
    total = fe.node(ctx, path, f"{p}.add", "add", {"scales": (1.0,) * len(outs)}, outs)
    where = ctx.where or format_path(path)
    logits = fe.instance(ctx, tmpl, spec, mpath, f"{p}.attn", total, where=where)
    m = fe.node(ctx, mpath, f"{p}.select", "select", {"paths": len(outs)}, [logits, *outs])
    record_fused(fe.graph, f"{p}.attn", total, m)
    out = fe.items(ctx, a.get("post") or [], path + ("post",), f"{p}.post", m)
    return Composite(p, "parallel", x, out, merge=m)


COMPOSITES = {"residual": residual, "parallel": parallel}
