"""Engine catalogs: what `validate` knows about models must match the installed libraries."""

from __future__ import annotations

import inspect

import pytest

from openanomaly.adapters.model_engine.introspect import class_signatures, package_dir
from openanomaly.adapters.model_engine.statsforecast import StatsForecastCatalog


def test_statsforecast_source_reading_matches_the_imported_library() -> None:
    """If statsforecast reorganises its module, this fails instead of validate going blind."""
    from statsforecast import models

    root = package_dir("statsforecast")
    assert root is not None
    signatures = class_signatures(root / "models.py")
    checked = 0
    for name in models.__all__:
        real = inspect.signature(getattr(models, name).__init__)
        params = {p for p in real.parameters if p != "self"}
        has_kwargs = any(p.kind is p.VAR_KEYWORD for p in real.parameters.values())
        required = {
            p.name
            for p in real.parameters.values()
            if p.name != "self"
            and p.default is p.empty
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        seen = signatures[name]
        assert seen.open == has_kwargs, name
        if not seen.open:
            assert seen.params == params - {"kwargs", "args"}, name
        assert seen.required == required, name
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("AutoETS", {"season_length": 24, "model": "ZZZ"}, []),
        ("AutoARIMA", {}, []),
        ("MSTL", {"season_length": [24, 168]}, []),
        ("HoltWinters", {"season_length": 48}, ["params.season_length"]),
        ("AutoETS", {"alpha": 0.3}, ["params.alpha"]),
        ("SeasonalNaive", {}, ["params.season_length"]),
        ("NoSuchModel", {}, ["name"]),
        ("SklearnModel", {}, ["name"]),  # wraps an estimator object: not selectable from YAML
    ],
)
def test_statsforecast_checks(name: str, params: dict[str, object], expected: list[str]) -> None:
    issues = StatsForecastCatalog().check(name, params)
    assert [i.field for i in issues] == expected
    assert all(i.reason for i in issues)


def test_every_offered_neural_model_exists_in_neuralforecast() -> None:
    from openanomaly.adapters.model_engine.introspect import module_exports, package_dir
    from openanomaly.adapters.model_engine.neuralforecast import MODELS
    from tests.conftest import require_module

    require_module("neuralforecast", "the `neural` extra: bash .ci/install-neural")
    root = package_dir("neuralforecast")
    assert root is not None
    exported = set(module_exports(root / "models" / "__init__.py"))
    assert set(MODELS) <= exported, set(MODELS) - exported
