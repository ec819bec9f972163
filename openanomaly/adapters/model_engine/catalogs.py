"""Which catalog answers for a pipeline's `model.engine`.

Apart from bootstrap so that `validate` loads only the catalogs, not the TSDB adapters (pandas,
httpx): it runs in editors and pre-commit hooks.
"""

from __future__ import annotations

from openanomaly.adapters.model_engine.custom import CustomEngineCatalog
from openanomaly.adapters.model_engine.mlforecast import MLForecastCatalog
from openanomaly.adapters.model_engine.neuralforecast import NeuralForecastCatalog
from openanomaly.adapters.model_engine.statsforecast import StatsForecastCatalog
from openanomaly.ports import ModelCatalog

_BUILTIN_CATALOGS: dict[str, type[ModelCatalog]] = {
    "statsforecast": StatsForecastCatalog,
    "mlforecast": MLForecastCatalog,
    "neuralforecast": NeuralForecastCatalog,
}


def model_catalog(engine: str) -> ModelCatalog:
    """The catalog of a built-in engine name, or of a custom `package.module:Class`."""
    factory = _BUILTIN_CATALOGS.get(engine)
    return factory() if factory is not None else CustomEngineCatalog(engine)
