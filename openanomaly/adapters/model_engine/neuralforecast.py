"""NeuralForecast (extra `neural`): NHITS, NBEATS, TFT, ... trained with a quantile loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openanomaly.adapters.model_engine.catalog_checks import check_name
from openanomaly.adapters.model_engine.introspect import module_exports, package_dir
from openanomaly.errors import MissingExtra
from openanomaly.ports import CatalogIssue


class NeuralForecastCatalog:
    """Model names of `neuralforecast.models`; the import (torch) is paid only when fitting."""

    engine = "neuralforecast"

    def check(self, name: str, params: Mapping[str, Any]) -> list[CatalogIssue]:
        root = package_dir("neuralforecast")
        if root is None:
            missing = MissingExtra("engine 'neuralforecast'", "neural", "neuralforecast")
            return [CatalogIssue("engine", str(missing))]
        return check_name(self.engine, name, module_exports(root / "models" / "__init__.py"))
