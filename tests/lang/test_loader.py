"""Safe YAML loading: locations, duplicate keys, merge keys, hostile documents."""
import time

import pytest

from secompile.lang.errors import LimitError, SpecError
from secompile.lang.loader import MAX_BYTES, load_yaml_file, load_yaml_text


def test_values_and_keys_are_located():
    data, smap = load_yaml_text("name: x\nstages:\n  - {block: basic, out: 16}\n", "f.yaml")
    assert data == {"name": "x", "stages": [{"block": "basic", "out": 16}]}
    assert (smap.mark(("stages", 0, "out")).line, smap.mark(("stages", 0, "out")).col) == (3, 25)
    assert (smap.mark(("stages", 0, "out"), key=True).line, smap.mark(("stages", 0, "out"), key=True).col) == (3, 20)
    # a missing path falls back to its nearest located ancestor
    assert smap.mark(("stages", 0, "nothere")) == smap.mark(("stages", 0))


def test_duplicate_keys_are_errors():
    with pytest.raises(SpecError) as e:
        load_yaml_text("name: a\nstages: []\nname: b\n", "d.yaml")
    assert e.value.messages == ["d.yaml:3:1: name: duplicate key 'name' (first defined at line 1)"]


def test_anchors_and_merge_keys_work():
    text = ("base: &b {out: 64, stride: 1}\n"
            "a: {<<: *b, stride: 2}\n"
            "c: [*b, *b]\n")
    data, _ = load_yaml_text(text)
    assert data["a"] == {"out": 64, "stride": 2}
    assert data["c"] == [{"out": 64, "stride": 1}] * 2


def test_object_tags_are_refused():
    with pytest.raises(SpecError) as e:
        load_yaml_text("name: !!python/object/apply:os.system ['echo hi']\n", "t.yaml")
    assert e.value.messages == [
        "t.yaml:1:7: name: tag !!python/object/apply:os.system is not allowed (specs are plain data)"]
    with pytest.raises(SpecError):
        load_yaml_text("x: !custom 3\n")


def test_billion_laughs_is_refused_fast():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    t = time.perf_counter()
    with pytest.raises(LimitError) as e:
        load_yaml_text("\n".join(lines) + "\n", "lol.yaml")
    assert time.perf_counter() - t < 1.0
    assert "document expands to more than 200000 nodes" in e.value.messages[0]


def test_deep_nesting_is_refused():
    with pytest.raises(LimitError) as e:
        load_yaml_text("x: " + "[" * 500 + "]" * 500 + "\n", "deep.yaml")
    assert "nesting deeper than 64 levels" in e.value.messages[0]


def test_large_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.seek(50 * 1024 * 1024)
        f.write(b"\n")
    t = time.perf_counter()
    with pytest.raises(LimitError) as e:
        load_yaml_file(str(big))
    assert time.perf_counter() - t < 1.0
    assert f"larger than the {MAX_BYTES // 2**20} MiB limit" in e.value.messages[0]


def test_syntax_errors_are_located():
    with pytest.raises(SpecError) as e:
        load_yaml_text("name: x\nstages: [1, 2\n", "s.yaml")
    assert e.value.messages[0].startswith("s.yaml:3:1: <yaml>: ")


def test_not_utf8(tmp_path):
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecError) as e:
        load_yaml_file(str(p))
    assert "not UTF-8 text" in e.value.messages[0]
