import json

import pytest
import yaml

from jepa_platform.spec import JobSpec, SpecError, apply_override, json_schema, load_spec, validate_spec

MINIMAL = {"name": "job", "data": {"train": "train.csv"}}


def write(tmp_path, raw):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_defaults_are_filled_in_for_every_component():
    spec = validate_spec(dict(MINIMAL))
    assert spec.backbone.params["patch_size"] == 16
    assert [m.params["num_blocks"] for m in spec.masks] == [8, 2]
    assert spec.masks[1].params["spatial_scale"] == [0.7, 0.7]
    assert spec.teacher.params["momentum"] == [0.998, 1.0]
    assert spec.optim.schedule_scale == 1.25
    assert spec.data.params == {"num_clips": 1, "max_failure_rate": 0.1, "video_timeout_s": 120.0}


def test_component_param_errors_name_their_full_path():
    raw = dict(MINIMAL, masks=[{"kind": "multiblock"}, {"kind": "multiblock", "params": {"num_blocks": "x"}}])
    with pytest.raises(SpecError, match=r"masks\[1\]\.params\.num_blocks: Input should be a valid integer"):
        validate_spec(raw)


def test_unknown_params_and_kinds_are_rejected():
    with pytest.raises(SpecError, match=r"teacher\.params\.momentun: Extra inputs are not permitted"):
        validate_spec(dict(MINIMAL, teacher={"kind": "ema", "params": {"momentun": [0.9, 1]}}))
    with pytest.raises(SpecError, match=r"backbone\.kind: unknown backbones kind 'vitt' \(known: .*vit"):
        validate_spec(dict(MINIMAL, backbone={"kind": "vitt"}))


def test_structural_errors_list_every_problem():
    raw = {"name": "Bad Name", "optim": {"steps": 0}, "data": {}}
    with pytest.raises(SpecError) as e:
        validate_spec(raw)
    text = str(e.value)
    assert "name: Value error" in text
    assert "optim.steps: Input should be greater than or equal to 1" in text
    assert "data.train" not in text  # checked once the structure is valid


def test_video_dataset_needs_a_manifest():
    with pytest.raises(SpecError, match=r"data\.train: a manifest or folder of videos is required"):
        validate_spec({"name": "job", "data": {}})


def test_shapes_that_do_not_divide_are_refused_before_running():
    with pytest.raises(SpecError, match=r"data\.resolution: must be divisible by backbone\.params\.patch_size"):
        validate_spec(dict(MINIMAL, data={"train": "x", "resolution": 100}))
    with pytest.raises(SpecError, match=r"data\.frames: must be divisible"):
        validate_spec(dict(MINIMAL, data={"train": "x", "frames": 15}))


def test_mask_scale_outside_unit_interval_is_refused_naming_the_field():
    raw = dict(MINIMAL, masks=[{"kind": "multiblock", "params": {"spatial_scale": [0.2, 1.5]}}])
    with pytest.raises(SpecError, match=r"masks\[0\]\.params: spatial_scale"):
        validate_spec(raw)


def test_overrides_are_typed_by_the_schema(tmp_path):
    path = write(tmp_path, MINIMAL)
    spec = load_spec(path, ["optim.steps=12", "optim.warmup_steps=2", "optim.clip_grad=null",
                            "masks[1].params.num_blocks=3", "data.stride=2", "optim.weight_decay=[0.01, 0.1]",
                            "name=007"])
    assert spec.optim.steps == 12 and spec.optim.clip_grad is None
    assert spec.masks[1].params["num_blocks"] == 3 and spec.masks[0].params["num_blocks"] == 8
    assert spec.optim.weight_decay == (0.01, 0.1)
    assert spec.name == "007"
    with pytest.raises(SpecError, match=r"optim\.steps: Input should be a valid integer"):
        load_spec(path, ["optim.steps=many"])
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        load_spec(path, ["optim.steps"])


def test_override_index_syntax_accepts_dots_and_brackets():
    raw = {"masks": [{"kind": "a"}, {"kind": "b"}]}
    apply_override(raw, "masks.0.kind=tube")
    apply_override(raw, "masks[1].kind=random")
    assert [m["kind"] for m in raw["masks"]] == ["tube", "random"]


def test_bad_yaml_and_missing_files_are_one_clear_error(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_resolved_spec_round_trips():
    spec = validate_spec(dict(MINIMAL))
    again = validate_spec(yaml.safe_load(spec.to_yaml()))
    assert again == spec


def test_json_schema_covers_the_spec_and_every_component():
    schema = json_schema()
    json.dumps(schema)
    assert set(JobSpec.model_fields) <= set(schema["properties"])
    assert "num_blocks" in schema["x-jepa-components"]["maskers"]["multiblock"]["properties"]


PIPELINE = {**MINIMAL, "optim": {"steps": 10, "warmup_steps": 1},
            "stages": [{"name": "teacher", "optim": {"steps": 5}}, {"name": "student"}]}


def test_stage_overrides_keep_their_type_in_the_resolved_spec(tmp_path):
    spec = load_spec(write(tmp_path, PIPELINE), ["stages[0].optim.steps=20", "stages[1].optim.lr=0.01"])
    assert spec.stages == [{"name": "teacher", "optim": {"steps": 20}}, {"name": "student", "optim": {"lr": 0.01}}]
    assert "steps: '20'" not in spec.to_yaml() and [s.optim.steps for s in spec.pipeline()] == [20, 10]
    again = validate_spec(yaml.safe_load(spec.to_yaml()))  # the resolved spec runs the same stages
    assert [s.resolved() for s in again.pipeline()] == [s.resolved() for s in spec.pipeline()]


def test_one_override_reaches_every_stage_and_a_stage_that_wins_is_named(tmp_path):
    path = write(tmp_path, PIPELINE)
    spec = load_spec(path, ["optim.steps=20"])
    assert [s.optim.steps for s in spec.pipeline()] == [5, 20]
    assert spec.notes == ["optim.steps=20: stage 'teacher' sets its own optim.steps (5), which wins there; "
                          "stages[*].optim.steps=20 sets it in every stage"]
    every = load_spec(path, ["stages[*].optim.steps=20"])
    assert [s.optim.steps for s in every.pipeline()] == [20, 20] and every.notes == []
    masks = load_spec(path, ["masks[*].params.num_blocks=3"])
    assert [m.params["num_blocks"] for m in masks.masks] == [3, 3]
    with pytest.raises(SpecError, match=r"optim\.steps is a value, not a mapping"):
        load_spec(path, ["optim.steps.x=1"])
    with pytest.raises(SpecError, match=r"'name\[0\]=x': name is a value, not a mapping"):
        load_spec(path, ["name[0]=x"])
    with pytest.raises(SpecError, match=r"data has no elements for \[\*\]"):
        load_spec(path, ["data[*].x=1"])


def test_a_misspelt_field_param_or_kind_gets_a_did_you_mean():
    cases = {
        "optim.stpes: Extra inputs are not permitted (did you mean 'steps'?)": {"optim": {"stpes": 3}},
        "backbone.params.dpeth: Extra inputs are not permitted (did you mean 'depth'?)":
            {"backbone": {"kind": "vit", "params": {"dpeth": 3}}},
        "kubernetes.secrets.gcs_kye: Extra inputs are not permitted (did you mean 'gcs_key'?)":
            {"kubernetes": {"secrets": {"gcs_kye": "a/b"}}},
        "stages[0].data.resolutoin: Extra inputs are not permitted (did you mean 'resolution'?)":
            {"stages": [{"name": "a", "data": {"resolutoin": 3}}]},
    }
    for message, extra in cases.items():
        with pytest.raises(SpecError) as e:
            validate_spec({**MINIMAL, **extra})
        assert message in str(e.value), str(e.value)
    with pytest.raises(SpecError, match=r"backbone\.kind: unknown backbones kind 'vitt' \(known: .*vit.*\) "
                       r"\(did you mean 'vit'\?\)"):
        validate_spec({**MINIMAL, "backbone": {"kind": "vitt"}})
    with pytest.raises(SpecError) as e:  # nothing close: the list only
        validate_spec({**MINIMAL, "backbone": {"kind": "zzz"}})
    assert "unknown backbones kind 'zzz' (known: " in str(e.value) and "did you mean" not in str(e.value)


def test_the_json_schema_checks_each_components_params_by_kind(tmp_path):
    """What an editor does with `jepa schema`: the example specs (as written and resolved) pass; a misspelt
    kind or param, in any component family, fails."""
    from pathlib import Path

    import jsonschema

    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for example in sorted(Path(__file__).parents[1].glob("examples/*.yaml")):
        raw = yaml.safe_load(example.read_text())
        assert not list(validator.iter_errors(raw)), example.name
    assert not list(validator.iter_errors(validate_spec(dict(PIPELINE)).resolved()))
    assert not list(validator.iter_errors({**MINIMAL, "target": "k8s", "kubernetes": {"namespace": "ml"}}))
    bad = {
        "kind": {"backbone": {"kind": "vitt"}},
        "param": {"backbone": {"kind": "vit", "params": {"dpeth": 3}}},
        "a param of the wrong type": {"backbone": {"kind": "vit", "params": {"depth": "deep"}}},
        "mask param": {"masks": [{"kind": "multiblock", "params": {"num_blokcs": 3}}]},
        "teacher": {"teacher": {"kind": "ema", "params": {"momentumm": [0.99, 1.0]}}},
        "runner": {"target": "nowhere"},
        "runner param": {"target": {"kind": "ray", "params": {"adress": "http://h:8265"}}},
        "kubernetes section": {"kubernetes": {"namspace": "ml"}},
        "dataset param": {"data": {"dataset": "synthetic", "params": {"videos_per_clas": 2}}},
        "default dataset's param": {"data": {"train": "a.csv", "params": {"size": 64}}},
    }
    for what, extra in bad.items():
        assert list(validator.iter_errors({**MINIMAL, **extra})), what


def test_a_resolved_spec_reads_back_as_the_same_stages_without_being_checked_again(monkeypatch):
    """What travels (the resolved spec) rebuilds the same stages; a stage that changes a component's kind
    keeps none of the job's params for it; a worker reads its stage back without building a masker."""
    from pathlib import Path

    from jepa_platform.plugins import manager
    from jepa_platform.spec import resolved_spec, travelling

    for example in sorted(Path(__file__).parents[1].glob("examples/*.yaml")):
        spec = load_spec(example)
        again = validate_spec(spec.resolved())
        assert [s.resolved() for s in again.pipeline()] == [s.resolved() for s in spec.pipeline()], example.name
    switched = validate_spec({**MINIMAL, "teacher": {"kind": "ema", "params": {"momentum": [0.99, 1.0]}},
                              "stages": [{"name": "a", "teacher": {"kind": "pixel"}}]})
    assert "momentum" not in switched.pipeline()[0].teacher.params
    salt = load_spec(Path(__file__).parents[1] / "examples/salt-quickstart.yaml")
    sent = json.loads(json.dumps(travelling(salt)))  # as it travels: JSON in a record or an env var

    def no_lookups(family):
        raise AssertionError(f"looked up {family} again")

    monkeypatch.setattr(manager, "registry", no_lookups)
    monkeypatch.setattr("jepa_platform.spec.validation.registry", no_lookups)
    stage = salt.pipeline()[1]
    assert resolved_spec(stage.resolved()).resolved() == stage.resolved()  # what a worker gets
    arrived = resolved_spec(sent)  # what a detached job or a cluster's driver gets: the whole pipeline
    assert arrived.resolved() == salt.resolved()
    assert [s.resolved() for s in arrived.pipeline()] == [s.resolved() for s in salt.pipeline()]


def test_the_spec_package_imports_neither_torch_nor_the_training_or_evaluation_packages():
    import subprocess
    import sys

    code = ("import sys, jepa_platform.spec; mods = sorted(sys.modules); "
            "print([m for m in mods if m == 'torch' or m.startswith(('jepa_platform.train', 'jepa_platform.eval'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    spec = validate_spec(dict(MINIMAL))
    assert spec.layout.metrics == spec.job_dir + "/metrics.jsonl"
    assert spec.layout.checkpoints == spec.job_dir + "/checkpoints"
