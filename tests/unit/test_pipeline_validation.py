"""Pipeline files: every validation error path, table-driven, with file:line: field: reason."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from openanomaly.adapters.model_engine.catalogs import model_catalog
from openanomaly.adapters.pipeline_source.directory import (
    DirectoryPipelineSource,
    load_pipeline_paths,
)
from openanomaly.config.pipeline_loader import parse_pipeline_text
from openanomaly.config.schema import pipeline_file_schema

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = "name: p\nquery: up\n"


def check(text: str) -> tuple[list[str], list[str]]:
    loaded, problems = parse_pipeline_text(text, "p.yaml", model_catalog)
    return [p.pipeline.name for p in loaded], [str(p) for p in problems]


def test_minimal_pipeline_gets_documented_defaults() -> None:
    loaded, problems = parse_pipeline_text(MINIMAL, "p.yaml", model_catalog)
    assert problems == []
    p = loaded[0].pipeline
    assert (p.step, p.train.every, p.train.window) == (
        timedelta(minutes=1),
        timedelta(days=1),
        timedelta(days=14),
    )
    assert (p.infer.every, p.infer.context) == (timedelta(minutes=1), timedelta(days=1))
    assert (p.model.engine, p.model.name, p.model.level) == ("statsforecast", "MSTL", 99.0)
    assert (p.model.params, p.model.scale) == ({"season_length": "1d"}, 2.0)
    assert p.scoring.direction == "both"
    assert (p.scoring.outside_range, p.scoring.holdoff) == (0.1, timedelta(hours=8))
    assert p.output.prefix == "anomaly"
    assert p.limits.max_series == 10_000


def test_a_model_named_without_params_gets_none_and_holdoff_is_checked() -> None:
    loaded, problems = parse_pipeline_text(
        MINIMAL + "model: {name: AutoETS}\n", "p.yaml", model_catalog
    )
    assert problems == []
    assert loaded[0].pipeline.model.params == {}
    # the default hold-off is cut to a shorter context; one written down is checked
    short = MINIMAL + "model: {name: AutoETS}\ninfer: {context: 4h}\n"
    assert check(short) == (["p"], [])
    names, problems = check(short + "scoring: {holdoff: 6h}\n")
    assert names == []
    assert "longer than infer.context" in problems[0]
    names, problems = check(MINIMAL + "step: 1d\ntrain: {window: 30d}\ninfer: {context: 2d}\n")
    assert "MSTL needs seasons of at least 2 steps" in problems[0]


def test_full_contract_example_is_valid() -> None:
    text = """\
name: node-cpu
query: sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))
step: 1m
train: {every: 1d, window: 14d}
infer: {every: 1m, context: 1d}
model:
  engine: statsforecast
  name: MSTL
  params: {season_length: 1440}
  level: 99
scoring: {direction: both, min_dev: 0, min_rel_dev: 0}
output: {prefix: anomaly, labels: {team: infra}}
limits: {max_series: 10000}
"""
    assert check(text) == (["node-cpu"], [])


CASES = [
    # (pipeline YAML, expected "line: field: reason" fragment)
    ("query: up\n", "p.yaml:1: name: required key is missing"),
    ("name: p\n", "p.yaml:1: query: required key is missing"),
    ("name: Node CPU\nquery: up\n", "p.yaml:1: name: String should match pattern '^[a-z0-9_-]+$'"),
    ("name: p\nquery: '  '\n", "p.yaml:2: query: query is empty"),
    (MINIMAL + "stepp: 1m\n", "p.yaml:3: stepp: unknown key 'stepp' (did you mean 'step'?)"),
    (
        MINIMAL + "train:\n  windw: 1d\n",
        "p.yaml:4: train.windw: unknown key 'windw' (did you mean 'window'?)",
    ),
    (MINIMAL + "step: 1x\n", "p.yaml:3: step: '1x' is not a duration"),
    (MINIMAL + "step: 60\n", "p.yaml:3: step: '60' has no unit"),
    (MINIMAL + "step: 500ms\n", "p.yaml:3: step: step must be at least 1s"),
    (
        MINIMAL + "train: {every: 1d, cron: '0 3 * * *'}\n",
        "p.yaml:3: train: give either every or cron, not both",
    ),
    (MINIMAL + "train: {cron: '0 3 * *'}\n", "p.yaml:3: train.cron: cron needs 5 fields"),
    (MINIMAL + "train: {cron: '0 25 * * *'}\n", "p.yaml:3: train.cron: invalid cron '0 25 * * *'"),
    (MINIMAL + "train: {window: 0s}\n", "p.yaml:3: train.window: duration must be greater than 0s"),
    (MINIMAL + "infer: {every: 0s}\n", "p.yaml:3: infer.every: duration must be greater than 0s"),
    (MINIMAL + "model: {engine: prophet}\n", "p.yaml:3: model.engine: unknown engine 'prophet'"),
    (
        MINIMAL + "model: {name: AutoEts}\n",
        "p.yaml:3: model.name: statsforecast has no model 'AutoEts' (did you mean AutoETS",
    ),
    (
        MINIMAL + "model: {name: AutoETS, params: {seasonlength: 24}}\n",
        "p.yaml:3: model.params.seasonlength: AutoETS has no parameter 'seasonlength' (did you mean 'season_length'?)",
    ),
    (
        MINIMAL + "model: {name: SeasonalNaive}\n",
        "p.yaml:3: model.params.season_length: SeasonalNaive needs parameter 'season_length'",
    ),
    (
        MINIMAL + "model:\n  name: AutoETS\n  params: {season_length: 1d}\n",
        "p.yaml:5: model.params.season_length: AutoETS supports season_length up to 24 steps, got 1440",
    ),
    (
        MINIMAL + "step: 2m\nmodel: {name: MSTL, params: {season_length: 3m}}\n",
        "p.yaml:4: model.params.season_length: season_length 3m is not a whole number of steps (2m)",
    ),
    (
        MINIMAL + "model: {name: MSTL, params: {season_length: 0}}\n",
        "season_length must be between 1 and 1,000,000 steps, got 0",
    ),
    (
        MINIMAL + "model: {name: MSTL, params: {season_length: 1.5}}\n",
        "season_length must be a whole number of steps",
    ),
    (
        MINIMAL + "model: {name: MSTL, params: {season_length: 1day}}\n",
        "season_length: '1day' is not a duration",
    ),
    (MINIMAL + "model: {level: 100}\n", "p.yaml:3: model.level: Input should be less than 100"),
    (MINIMAL + "model: {level: 0}\n", "p.yaml:3: model.level: Input should be greater than 0"),
    (
        MINIMAL + "model: {name: RandomForest, engine: mlforecast}\n",
        "model.name: mlforecast has no model 'RandomForest' (did you mean RandomForestRegressor",
    ),
    (
        MINIMAL + "model: {engine: neuralforecast, name: NHITS}\n",
        "model.params.input_size: NHITS needs input_size (steps of history per forecast)",
    ),
    (
        MINIMAL + "model: {engine: neuralforecast, name: NHITS, params: {h: 3, input_size: 24}}\n",
        "model.params.h: h is not a parameter here: the engine forecasts one step ahead (h=1)",
    ),
    (
        MINIMAL + "model: {engine: neuralforecast, name: StemGNN, params: {input_size: 24}}\n",
        "model.name: neuralforecast has no model 'StemGNN'",
    ),
    (
        MINIMAL + "model: {engine: 'tests.fixtures.nowhere:Engine'}\n",
        "model.engine: cannot import tests.fixtures.nowhere:Engine: no module",
    ),
    (
        MINIMAL + "model: {engine: 'tests.fixtures.custom_engine:Missing'}\n",
        "cannot import tests.fixtures.custom_engine:Missing: no such class",
    ),
    (MINIMAL + "model: {engine: 'tests.fixtures.custom_engine:NOT_A_CLASS'}\n", "is not a class"),
    (
        MINIMAL + "model: {engine: 'tests.fixtures.custom_engine:HalfEngine'}\n",
        "lacks the ModelEngine method predict()",
    ),
    (
        MINIMAL + "model: {engine: 'tests.fixtures.broken_engine:E'}\n",
        "RuntimeError: this module fails at import",
    ),
    (
        MINIMAL + "model: {engine: 'tests.fixtures.custom_engine:GoodEngine', name: Theirs}\n",
        "model.name: GoodEngine has no Theirs",
    ),
    (
        MINIMAL + "scoring: {direction: up}\n",
        "p.yaml:3: scoring.direction: Input should be 'both', 'above' or 'below', got 'up'",
    ),
    (
        MINIMAL + "scoring: {min_dev: -1}\n",
        "p.yaml:3: scoring.min_dev: Input should be greater than or equal to 0",
    ),
    (
        MINIMAL + "output: {prefix: 9lives}\n",
        "p.yaml:3: output.prefix: String should match pattern",
    ),
    (
        MINIMAL + "output:\n  labels: {pipeline: x}\n",
        "p.yaml:4: output.labels: label 'pipeline' is set by OpenAnomaly itself",
    ),
    (MINIMAL + "output:\n  labels: {bad-name: x}\n", "'bad-name' is not a valid label name"),
    (MINIMAL + "output:\n  labels: {env: ''}\n", "label 'env' has an empty value"),
    (MINIMAL + "output:\n  labels: {env: on}\n", "YAML read this as the boolean true: quote it"),
    (
        MINIMAL + "limits: {max_series: 0}\n",
        "p.yaml:3: limits.max_series: Input should be greater than or equal to 1",
    ),
    (
        MINIMAL + "step: 11m\n",
        "p.yaml:3: train.window: 2w is not a multiple of step (11m) "
        "(train.window is not set, so its default applies)",
    ),
    (
        MINIMAL + "step: 11m\ntrain: {window: 11d}\n",
        "p.yaml:3: infer.context: 1d is not a multiple of step (11m)",
    ),
    (
        MINIMAL + "model: {name: MSTL, params: {season_length: 8d}}\n",
        "p.yaml:3: train.window: 2w is shorter than 2 seasons of season_length 11520 at step 1m; "
        "needs at least 2w2d",
    ),
    (
        MINIMAL + "train: {window: 1d}\nmodel: {name: MSTL, params: {season_length: [1h, 1d]}}\n",
        "p.yaml:3: train.window: 1d is shorter than 2 seasons of season_length 1440 at step 1m; needs at least 2d",
    ),
    (
        MINIMAL + "infer: {context: 12h}\nmodel: {name: MSTL, params: {season_length: 1d}}\n",
        "p.yaml:3: infer.context: 12h is shorter than one season (season_length 1440 at step 1m = 1d)",
    ),
    (MINIMAL + "name: q\n", "p.yaml:3: name: duplicate key"),
    ("name: p\nquery: up\nmodel: [\n", "p.yaml:4: invalid YAML"),
    ("", "p.yaml:1: file is empty"),
    ("- name: p\n", "p.yaml:1: a pipeline file must be a YAML mapping"),
    ("pipelines: []\n", "p.yaml:1: pipelines: must be a non-empty list of pipelines"),
    (
        "pipelines:\n  - name: a\n    query: up\nstep: 1m\n",
        "p.yaml:4: step: a file with 'pipelines:' holds nothing else",
    ),
    ("name: p\nquery: up\n---\nname: q\n", "several YAML documents"),
    (MINIMAL + "step: 2w\n", "p.yaml:3: step: step must be at most 1w"),
    (
        MINIMAL + "step: 1w\nmodel: {name: MSTL, params: {season_length: 1000000}}\n",
        "shorter than 2 seasons of season_length 1000000 at step 1w",
    ),
    (
        "name: r\nquery: up\nmodel:\n  params: &a\n    x: *a\n",
        "p.yaml:1: the document expands to more than 100,000 values",
    ),
    (
        MINIMAL + "train: 5\n",
        "p.yaml:3: train: expected a mapping (indented key: value lines), got 5",
    ),
    (
        MINIMAL + "model:\n  params: [1]\n",
        "p.yaml:4: model.params: expected a mapping (indented key: value lines), got [1]",
    ),
    ("name: 123\nquery: up\n", "p.yaml:1: name: Input should be a valid string"),
    ("pipelines:\n  - 5\n", "p.yaml:2: pipelines[0]: expected a mapping"),
    (
        MINIMAL + "step: 99999999999999999d\n",
        "p.yaml:3: step: '99999999999999999d' is too long a duration",
    ),
    (
        MINIMAL + "model: {name: MSTL, params: {season_length: 99999999999999999999}}\n",
        "season_length must be between 1 and 1,000,000 steps, got 99999999999999999999",
    ),
    (
        MINIMAL + "step: 1s\nmodel: {name: MSTL, params: {season_length: 1y}}\n",
        "season_length 1y is more than 1,000,000 steps",
    ),
    ("name: p\n\tquery: up\n", "p.yaml:2: invalid YAML: found character '\\t'"),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[1][:60] for c in CASES])
def test_each_problem_is_located_and_explained(text: str, expected: str) -> None:
    names, problems = check(text)
    assert any(expected in p for p in problems), problems
    if "pipelines:" not in text:
        assert names == []  # an invalid pipeline is never half-loaded


def test_window_exactly_two_seasons_is_enough() -> None:
    text = MINIMAL + "train: {window: 2d}\nmodel: {name: MSTL, params: {season_length: 1d}}\n"
    assert check(text) == (["p"], [])


def test_a_bad_entry_does_not_hide_the_good_ones() -> None:
    text = """\
pipelines:
  - name: good-a
    query: up
  - name: bad
    query: up
    step: soon
  - name: good-b
    query: up
    train: {window: 1d, window: 2d}
  - name: good-c
    query: up
"""
    names, problems = check(text)
    assert names == ["good-a", "good-c"]
    assert problems == [
        "p.yaml:9: pipelines[2].train.window: duplicate key",
        "p.yaml:6: pipelines[1].step: 'soon' is not a duration; use a number and a unit, "
        "e.g. 30s, 5m, 1h, 7d, 1w (units: ms, s, m, h, d, w, y)",
    ]


def test_names_are_unique_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: x\nquery: up\n")
    (tmp_path / "b.yml").write_text("# comment\nname: x\nquery: down\n")
    (tmp_path / "c.yaml").write_text(
        "pipelines:\n  - name: y\n    query: up\n  - name: x\n    query: z\n"
    )
    result = load_pipeline_paths([tmp_path], model_catalog)
    assert [(p.pipeline.name, Path(p.source).name) for p in result.pipelines] == [
        ("x", "a.yaml"),
        ("y", "c.yaml"),
    ]
    rendered = sorted(str(p).replace(str(tmp_path) + "/", "") for p in result.problems)
    assert rendered == [
        "b.yml:2: name: duplicate pipeline name 'x' (first defined at a.yaml:1)",
        "c.yaml:4: name: duplicate pipeline name 'x' (first defined at a.yaml:1)",
    ]


def test_directory_source_reads_yaml_files_only_and_fingerprints(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / ".a.yaml.swp").write_text("garbage: [")
    (tmp_path / "notes.txt").write_text("garbage: [")
    source = DirectoryPipelineSource(tmp_path, model_catalog)
    before = source.fingerprint()
    result = source.load()
    assert [p.pipeline.name for p in result.pipelines] == ["p"]
    assert result.problems == []
    assert source.fingerprint() == before
    (tmp_path / "b.yaml").write_text("name: b\nquery: up\n")
    assert source.fingerprint() != before


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda d: None, "no *.yaml or *.yml pipeline files"),
        (lambda d: (d / "x.yaml").write_bytes(b"\xff\xfe\x00bad"), "not UTF-8 text"),
    ],
)
def test_directory_problems(tmp_path: Path, setup: object, expected: str) -> None:
    setup(tmp_path)  # type: ignore[operator]
    result = load_pipeline_paths([tmp_path], model_catalog)
    assert any(expected in str(p) for p in result.problems)


def test_alias_bombs_are_refused_quickly() -> None:
    lines = ["name: bomb", "query: up", "model:", "  params:", "    a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    lines += [f"    a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    names, problems = check("\n".join(lines) + "\n")
    assert names == []
    assert problems == [
        "p.yaml:1: the document expands to more than 100,000 values through aliases "
        "(an anchor referenced inside itself, or aliases nested too deep)"
    ]


def test_merge_keys_may_override_anchored_values() -> None:
    text = "pipelines:\n  - &base {name: a, query: up, step: 5m}\n  - <<: *base\n    name: b\n"
    loaded, problems = parse_pipeline_text(text, "p.yaml", model_catalog)
    assert problems == []
    assert [(p.pipeline.name, p.pipeline.step) for p in loaded] == [
        ("a", timedelta(minutes=5)),
        ("b", timedelta(minutes=5)),
    ]


def test_broken_links_and_upper_case_suffixes(tmp_path: Path) -> None:
    (tmp_path / "UP.YAML").write_text("name: up\nquery: up\n")
    (tmp_path / "broken.yaml").symlink_to(tmp_path / "missing.yaml")
    result = load_pipeline_paths([tmp_path, tmp_path / "UP.YAML"], model_catalog)
    assert [p.pipeline.name for p in result.pipelines] == ["up"]  # read once, named twice
    assert [(Path(p.where).name, p.reason) for p in result.problems] == [
        ("broken.yaml", "broken symbolic link")
    ]


def test_a_directory_named_like_a_pipeline_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / "b.yaml").mkdir()
    result = load_pipeline_paths([tmp_path], model_catalog)
    assert [p.pipeline.name for p in result.pipelines] == ["p"]
    assert [p.reason for p in result.problems] == [
        "a directory named like a pipeline file; not read"
    ]


def test_missing_path_is_reported(tmp_path: Path) -> None:
    result = load_pipeline_paths([tmp_path / "nope.yaml"], model_catalog)
    assert [p.reason for p in result.problems] == ["no such file or directory"]


def test_custom_engine_that_passes_its_own_check() -> None:
    text = MINIMAL + "model: {engine: 'tests.fixtures.custom_engine:GoodEngine', name: Mine}\n"
    assert check(text) == (["p"], [])


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "examples" / "pipelines").glob("*.yaml"))
    + sorted((ROOT / "pipelines.d").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_shipped_pipelines_are_valid(path: Path) -> None:
    result = load_pipeline_paths([path], model_catalog)
    assert result.problems == []
    assert result.pipelines


def test_config_hash_tracks_what_affects_the_model() -> None:
    base, _ = parse_pipeline_text(MINIMAL, "p.yaml", model_catalog)
    same, _ = parse_pipeline_text(MINIMAL + "scoring: {min_dev: 3}\n", "p.yaml", model_catalog)
    other, _ = parse_pipeline_text(MINIMAL + "train: {window: 7d}\n", "p.yaml", model_catalog)
    h = base[0].pipeline.config_hash()
    assert h == same[0].pipeline.config_hash()
    assert h != other[0].pipeline.config_hash()


def test_committed_schema_matches_the_code() -> None:
    committed = json.loads((ROOT / "docs" / "pipeline.schema.json").read_text())
    assert committed == pipeline_file_schema()


def test_schema_accepts_both_file_shapes_and_describes_fields() -> None:
    schema = pipeline_file_schema()
    assert len(schema["anyOf"]) == 2
    pipeline = schema["$defs"]["Pipeline"]
    assert pipeline["required"] == ["name", "query"]
    assert pipeline["additionalProperties"] is False
    assert schema["$defs"]["TrainSpec"]["properties"]["window"]["default"] == "2w"


def test_neuralforecast_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from openanomaly.adapters.model_engine import neuralforecast

    monkeypatch.setattr(neuralforecast, "package_dir", lambda _name: None)
    issues = neuralforecast.NeuralForecastCatalog().check("NHITS", {"input_size": 24})
    assert [i.field for i in issues] == ["engine"]
    assert "needs the 'neural' extra" in issues[0].reason
    assert "pip install 'openanomaly[neural]'" in issues[0].reason
