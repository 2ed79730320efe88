"""Look of the architecture diagrams: colours, op descriptions, HTML-like labels, the legend.

Labels are Graphviz HTML-like labels (bold op, grey shape and cost lines) rather than
edge labels: text inside nodes is never crossed by an edge, edge labels often are.
Every label is built from the IR alone, so the same graph always gives the same text.
"""
from __future__ import annotations

from html import escape
from typing import Callable, NamedTuple

from ...analysis.counts import Cost
from ...analysis.numbers import si
from ...ir import plugins

FONT = "Helvetica"          # fontconfig maps it to Liberation Sans (Helvetica metrics) for PNG/PDF
SMALL = 9                   # point size of shape / cost lines
GREY = "#555555"

# op family -> (fill, border). SE is the only warm colour, so SE blocks stand out at a glance.
COLORS = {
    "conv": ("#dce9f7", "#3b6ea8"),
    # batchnorm, activations, flatten, dropout, identity, shuffle
    "plain": ("#f2f2f2", "#8a8a8a"),
    "pool": ("#e0f2e0", "#3c8d40"),
    "linear": ("#ebe2f6", "#6a4c9c"),
    "merge": ("#ffffff", "#444444"),       # add, concat
    "io": ("#ffffff", "#444444"),
    "se": ("#fdd9b5", "#d9480f"),
}
SE_CLUSTER = ("#fff3e6", "#d9480f")
BLOCK_CLUSTER = ("#f6f8fb", "#8796a8")
STAGE_CLUSTER = ("#ffffff", "#4d5b6b")
SCOPE_CLUSTER = ("#ffffff", "#aab4c0")    # nested residual/parallel scopes, stem, head

ACT_NAMES = {"relu": "ReLU", "relu6": "ReLU6", "sigmoid": "sigmoid", "hard_sigmoid": "hard sigmoid",
             "hard_swish": "hard swish", "silu": "SiLU", "tanh": "tanh",
             "gelu": "GELU"}

# The layers of the `se` template (specs/blocks/attention.yaml), the one place they are named
# outside it; se_describe names them by their role in the paper (eqs. 2-4, figure 3): squeeze,
# fc1, ReLU, fc2, excite, scale.
SE_NODES = ("pool", "fc1", "act", "fc2", "gate", "scale")


def shape_text(shape) -> str:
    return "×".join(str(d) for d in shape)


def cost_text(c: Cost) -> str:
    """'MACs 1.2M · params 4.6k', or '' for a free op (BN params still count)."""
    parts = ([f"MACs {si(c.macs)}"] if c.macs else []) + ([f"params {si(c.params)}"]
                                                          if c.params else [])
    return " · ".join(parts)


def _pair(p) -> str:
    return f"{p[0]}×{p[1]}"


def _conv(a, in_shapes) -> str:
    parts = [f"conv {_pair(a['kernel'])}", str(a["out"])]
    if a["stride"] != (1, 1):
        (sh, sw) = a["stride"]
        parts.append("stride " + (str(sh) if sh == sw else _pair(a["stride"])))
    if a["groups"] > 1:
        depthwise = in_shapes and a["groups"] == in_shapes[0][0] == a["out"]
        parts.append("depthwise" if depthwise else f"groups {a['groups']}")
    if a["dilation"] != (1, 1):
        parts.append(f"dilation {a['dilation'][0]}")
    return ", ".join(parts)


def _pool(kind):
    def text(a, in_shapes) -> str:
        s = a["stride"]
        out = f"{kind} pool {_pair(a['kernel'])}" + (f", stride {s[0]}" if s != (1, 1) else "")
        return out + (", ceil" if a.get("ceil_mode") else "")
    return text


def _add(a, in_shapes) -> str:
    scales = [s for s in a.get("scales") or () if s != 1.0]
    return "add" + (f", branch × {scales[0]:g}" if scales else "")


def _mul(a, in_shapes) -> str:
    spatial = len(in_shapes) == 2 and in_shapes[1][0] == 1 and in_shapes[0][0] != 1
    return "scale (spatial ×)" if spatial else "scale (channel-wise ×)"


def _slice(a, in_shapes) -> str:
    return f"channels {a['start']}..{a['start'] + a['size'] - 1}"


class OpLook(NamedTuple):
    family: str                               # a key of COLORS
    describe: Callable[[dict, list], str]     # (attrs, input shapes) -> the node's title


def _text(t: str):
    return lambda a, in_shapes: t


# One entry per IR op (ops.OPS): its colour family and its description.
LOOKS: dict[str, OpLook] = {
    "input": OpLook("io", _text("input")),
    "conv2d": OpLook("conv", _conv),
    "batchnorm": OpLook("plain", _text("BN")),
    "act": OpLook("plain", lambda a, ins: ACT_NAMES.get(a["kind"], a["kind"])),
    "maxpool2d": OpLook("pool", _pool("max")),
    "avgpool2d": OpLook("pool", _pool("avg")),
    "global_pool": OpLook("pool", lambda a, ins: f"global {a['mode']} pool"),
    "flatten": OpLook("plain", _text("flatten")),
    "linear": OpLook("linear", lambda a, ins: f"fc, {a['out']}"),
    "dropout": OpLook("plain", lambda a, ins: f"dropout {a['p']:g}"),
    "identity": OpLook("plain", _text("identity")),
    "add": OpLook("merge", _add),
    "concat": OpLook("merge", _text("concat")),
    "mul": OpLook("plain", _mul),
    "scale_add": OpLook("merge", _text("add (+ channel-wise scale)")),   # passes/fuse.py
    "channel_shuffle": OpLook("plain", lambda a, ins: f"channel shuffle, groups {a['groups']}"),
    "channel_conv": OpLook("conv", lambda a, ins: f"channel conv 1-D, k={a['kernel']}"),
    "dual_pool": OpLook("pool", _text("avg + max pool")),
    "spatial_sum": OpLook("pool", _text("sum over H×W")),
    "channel_pool": OpLook("pool", _text("channel avg + max")),
    "select": OpLook("merge", lambda a, ins: f"select ({a['paths']} paths, softmax)"),
    "channel_slice": OpLook("plain", _slice),
    "drop_path": OpLook("plain", lambda a, ins: f"drop path {a['p']:g}"),
    "softmax": OpLook("plain", lambda a, ins: f"softmax over {a['axis']}"),
    "layernorm": OpLook("plain", _text("LayerNorm (channels)")),
    "attn_pool": OpLook("pool", _text("attention pool (softmax-weighted sum)")),
    "layer_scale": OpLook("plain", _text("layer scale (channel-wise ×)")),
    "split_sum": OpLook("pool", lambda a, ins: f"sum of {a['parts']} splits"),
    "split_select": OpLook("merge", lambda a, ins: f"split select ({a['parts']} splits, softmax)"),
    "partial_add": OpLook("merge", _text("add to the first channels")),
}
FAMILY = {op: look.family for op, look in LOOKS.items() if look.family != "plain"}


def _plugin_look(op: str) -> OpLook:
    """A registered op's look (register_op's graphviz=(family, title)); plain by default."""
    family, title = plugins.get(op).graphviz
    return OpLook(family if family in COLORS else "plain",
                  title if callable(title) else _text(str(title)))


def describe(op: str, a: dict, in_shapes: list) -> str:
    """The op and its key attributes, e.g. 'conv 3×3, 128, stride 2, groups 32'."""
    return (LOOKS.get(op) or _plugin_look(op)).describe(a, in_shapes)


def family(op: str) -> str:
    """The op's colour family (a key of COLORS)."""
    if op in LOOKS or plugins.get(op) is None:
        return FAMILY.get(op, "plain")
    return _plugin_look(op).family


def se_describe(role: str, op: str, a: dict, info: dict) -> str:
    """An SE node named as in the paper: 'squeeze: global avg pool', 'fc1 ↓16 (r=16)'."""
    if role == "fc1":
        r = f" (r={info['reduction']})" if info["reduction"] else ""
        return f"fc1, {info['channels']}→{info['reduced']}{r}"
    if role == "fc2":
        return f"fc2, {info['reduced']}→{info['channels']}"
    if role == "gate":
        return f"excite: {info['gate']}"
    if role == "pool":
        return f"squeeze: global {a['mode']} pool"
    if role == "scale":
        return "scale ⊗"
    return describe(op, a, [])


def html_lines(title: str, *lines: str, bold: bool = True, left: bool = False) -> str:
    """A label: the title, then small grey lines (empty ones dropped); `left` for clusters."""
    br = '<br align="left"/>' if left else "<br/>"
    t = escape(title)
    out = f"<b>{t}</b>" if bold else t
    for ln in lines:
        if ln:
            out += f'{br}<font point-size="{SMALL}" color="{GREY}">{escape(ln)}</font>'
    return f"<{out}{br if left else ''}>"


def html_table(rows: list[tuple[str, str]], title: str | None = None, footer: str = "",
               title_bg: str | None = None) -> str:
    """A borderless two-column table (description | output shape), as in the paper's Table 1."""
    cells = []
    if title:
        bg = f' bgcolor="{title_bg}"' if title_bg else ""
        cells.append(f'<tr><td colspan="2" align="left"{bg}><b>{escape(title)}</b></td></tr>')
    for desc, shape in rows:
        cells.append(f'<tr><td align="left">{escape(desc)}</td>'
                     f'<td align="right"><font point-size="{SMALL}" '
                     f'color="{GREY}">{escape(shape)}</font></td></tr>')
    if footer:
        cells.append(f'<tr><td colspan="2" align="left"><font point-size="{SMALL}" color="{GREY}">'
                     f'{escape(footer)}</font></td></tr>')
    return (f'<<table border="0" cellborder="0" cellspacing="0" cellpadding="2">'
            f'{"".join(cells)}</table>>')


def node_style(family: str) -> dict:
    fill, border = COLORS[family]
    shape = {"merge": "ellipse", "io": "ellipse"}.get(family, "box")
    out = {"shape": shape, "style": "rounded,filled" if shape == "box" else "filled",
           "fillcolor": fill, "color": border}
    if family == "se":
        out["class"] = "se"       # SVG class: CSS can restyle SE, tests can count it
    return out


def cluster_style(kind: str) -> dict:
    fill, border = {"se": SE_CLUSTER, "block": BLOCK_CLUSTER,
                    "stage": STAGE_CLUSTER}.get(kind, SCOPE_CLUSTER)
    style = {"stage": "rounded,bold", "scope": "rounded,dashed"}.get(kind, "rounded,filled")
    out = {"style": style, "fillcolor": fill, "color": border, "labeljust": "l", "fontname": FONT,
           "penwidth": "2" if kind == "se" else "1"}
    if kind == "se":
        out["class"] = "se"
    return out


def title_and_legend(name: str, level: str) -> str:
    """The graph label: the network's name, then a one-row legend. As the graph label it sits
    above the layout, so it never takes a rank of its own and no edge can cross it."""
    def swatch(family, text):
        fill, border = COLORS[family]
        return (f'<td bgcolor="{fill}" border="1" color="{border}" width="14"> </td>'
                f'<td align="left">{escape(text)}  </td>')
    items = [("conv", "convolution" + (" (+ BN, activation)" if level != "op" else ""))]
    if level == "op":
        items.append(("plain", "BN, activation, reshape"))
    items += [("pool", "pooling"), ("linear", "fully connected"), ("se", "Squeeze-and-Excitation"),
              ("merge", "merge")]
    notes = ["C×H×W: output shape", "MACs: multiply-adds", "params: parameters"]
    if level != "stage":
        notes.append("dashed edge: identity shortcut")
    small = f'<font point-size="{SMALL}" color="{GREY}">'
    return (f'<<table border="0" cellborder="0" cellspacing="3" cellpadding="1">'
            f'<tr><td align="left"><font point-size="14"><b>{escape(name)}</b></font>'
            f'  {escape(level)} level</td></tr>'
            f'<tr><td><table border="0" cellborder="0" cellspacing="3" cellpadding="1"><tr>'
            + "".join(swatch(f, t) for f, t in items) + '</tr></table></td></tr>'
            f'<tr><td align="left">{small}{escape(" · ".join(notes))}</font></td></tr></table>>')
