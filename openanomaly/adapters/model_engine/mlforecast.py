"""MLForecast: gradient boosting or linear regressors on lag, rolling and calendar features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openanomaly.adapters.model_engine.catalog_checks import check_name
from openanomaly.adapters.model_engine.introspect import package_dir
from openanomaly.ports import CatalogIssue

# Regressor name -> the package that provides it. Curated rather than discovered: listing every
# scikit-learn estimator means importing all of scikit-learn (seconds), and these are the
# regressors that make sense on lag features at monitoring scale.
REGRESSORS: dict[str, str] = {
    "LGBMRegressor": "lightgbm",
    "LinearRegression": "sklearn",
    "Ridge": "sklearn",
    "Lasso": "sklearn",
    "ElasticNet": "sklearn",
    "HuberRegressor": "sklearn",
    "HistGradientBoostingRegressor": "sklearn",
    "RandomForestRegressor": "sklearn",
    "ExtraTreesRegressor": "sklearn",
    "KNeighborsRegressor": "sklearn",
}


class MLForecastCatalog:
    engine = "mlforecast"

    def check(self, name: str, params: Mapping[str, Any]) -> list[CatalogIssue]:
        issues = check_name(self.engine, name, REGRESSORS)
        if issues:
            return issues
        package = REGRESSORS[name]
        if package_dir(package) is None:
            return [
                CatalogIssue("name", f"{name} needs the '{package}' package: pip install {package}")
            ]
        return []
