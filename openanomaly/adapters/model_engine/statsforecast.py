"""StatsForecast: classical models (AutoETS, AutoARIMA, MSTL, ...) fitted per series."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openanomaly.adapters.model_engine.catalog_checks import check_name, check_params
from openanomaly.adapters.model_engine.introspect import (
    class_signatures,
    module_exports,
    package_dir,
)
from openanomaly.ports import CatalogIssue

# Exported by statsforecast.models but not forecasters a user can pick from YAML: they wrap
# another estimator object, or produce constant/empty output.
_NOT_SELECTABLE = frozenset({"SklearnModel", "ConstantModel", "ZeroModel", "NaNModel"})
# statsforecast's ETS code skips the seasonal component when season_length > 24 (it inherits R
# forecast's limit): the fit succeeds but the seasonality silently disappears.
_MAX_SEASON = {"AutoETS": 24, "HoltWinters": 24}


class StatsForecastCatalog:
    """Models of `statsforecast.models`, read from its source (see `introspect`)."""

    engine = "statsforecast"

    def check(self, name: str, params: Mapping[str, Any]) -> list[CatalogIssue]:
        root = package_dir("statsforecast")
        if root is None:
            return [CatalogIssue("name", "statsforecast is not installed")]
        models = root / "models.py"
        known = [n for n in module_exports(models) if n not in _NOT_SELECTABLE]
        issues = check_name(self.engine, name, known)
        if issues:
            return issues
        issues = check_params(name, class_signatures(models)[name], params)
        season = params.get("season_length")
        limit = _MAX_SEASON.get(name)
        if limit is not None and isinstance(season, int) and season > limit:
            issues.append(
                CatalogIssue(
                    "params.season_length",
                    (
                        f"{name} supports season_length up to {limit} steps, got {season}: "
                        "statsforecast would drop the seasonality; "
                        "use MSTL for long seasons, or a longer step"
                    ),
                )
            )
        return issues
