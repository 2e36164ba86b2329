import pytest

from tensorir import ProfileError
from tensorir.target import Managed, load_target, target_from_dict

KPU = {"name": "kpu-16x16", "source": "example", "compute": {"ignored": "by passes"},
       "memory": [
           {"name": "L1", "capacity_bytes": 65536, "line_bytes": 64, "managed": "scratchpad",
            "double_buffered": True},
           {"name": "L2", "capacity_bytes": 1 << 20, "managed": "scratchpad",
            "double_buffered": True},
           {"name": "DRAM", "capacity_bytes": 1 << 33}]}


def test_levels_innermost_first_with_double_buffering_halving_capacity():
    t = target_from_dict(KPU)
    assert [lv.name for lv in t.levels] == ["L1", "L2", "DRAM"]
    assert t.levels[0].managed is Managed.SCRATCHPAD and t.levels[0].usable_bytes == 32768
    assert t.main_memory.name == "DRAM" and t.main_memory.usable_bytes == 1 << 33
    assert [lv.name for lv in t.on_chip] == ["L1", "L2"] and t.level("L2").line_bytes == 64
    with pytest.raises(ProfileError, match="has no memory level 'L3'"):
        t.level("L3")


@pytest.mark.parametrize("patch, message", [
    ({"memory": []}, r"target.memory: expected a non-empty list"),
    ({"name": ""}, r"target.name: expected a non-empty string"),
    ({"memory": [{"name": "L1"}]}, r"target.memory\[0\].capacity_bytes: missing"),
    ({"memory": [{"name": "L1", "capacity_bytes": -1}]},
     r"target.memory\[0\].capacity_bytes: expected a positive integer, got -1"),
    ({"memory": [{"name": "L1", "capacity_bytes": 10, "line_bytes": 48}]},
     r"target.memory\[0\].line_bytes: expected a power of two, got 48"),
    ({"memory": [{"name": "L1", "capacity_bytes": 10, "managed": "magic"}]},
     r"target.memory\[0\].managed: expected 'scratchpad' or 'cache', got 'magic'"),
    ({"memory": [{"name": "L1", "capacity_bytes": 10, "double_buffered": "yes"}]},
     r"double_buffered: expected true or false"),
    ({"memory": [{"name": "A", "capacity_bytes": 100}, {"name": "B", "capacity_bytes": 10}]},
     r"target.memory\[1\].capacity_bytes: 10 is smaller than the inner level 'A'"),
    ({"memory": [{"name": "A", "capacity_bytes": 10}, {"name": "A", "capacity_bytes": 20}]},
     r"target.memory\[1\].name: level 'A' appears twice"),
])
def test_invalid_targets_name_the_field(patch, message):
    with pytest.raises(ProfileError, match=message):
        target_from_dict({**KPU, **patch})


def test_load_yaml_and_json_files(tmp_path):
    import json

    import yaml
    (tmp_path / "kpu.yaml").write_text(yaml.safe_dump(KPU))
    (tmp_path / "kpu.json").write_text(json.dumps(KPU))
    assert load_target(tmp_path / "kpu.yaml") == load_target(tmp_path / "kpu.json")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmemory: [\n")
    with pytest.raises(ProfileError, match="bad.yaml: not valid YAML"):
        load_target(bad)
    with pytest.raises(ProfileError, match="missing.yaml: cannot read"):
        load_target(tmp_path / "missing.yaml")
    (tmp_path / "field.yaml").write_text("name: x\nmemory:\n  - {name: L1, capacity_bytes: 0}\n")
    with pytest.raises(ProfileError, match=r"field.yaml.memory\[0\].capacity_bytes"):
        load_target(tmp_path / "field.yaml")
