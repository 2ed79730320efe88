"""Zoo name lookup: the quick path (a file stem, no family file read) answers as the index does."""
from secompile.zoo import names


def test_lookup_by_stem_agrees_with_the_whole_index():
    index = names._zoo_index(names.ZOO_DIR)
    assert len(index) > 40
    assert {n: names.lookup(n) for n in index} == index
    assert names.lookup("se_resnext50") == names.ZooEntry(f"{names.ZOO_DIR}/se_resnext50.yaml")
    assert names.lookup("no_such_model") is None and names.lookup("..") is None


def test_lookup_by_stem_reads_no_family_file(monkeypatch):
    names._zoo_index.cache_clear()
    monkeypatch.setattr(names, "_variants", lambda path: (_ for _ in ()).throw(AssertionError))
    assert names.lookup("se_resnext50").file.endswith("se_resnext50.yaml")
    names._zoo_index.cache_clear()
