"""Which engine runs a pipeline's `model.engine`: built-ins by name, custom ones by import.

Apart from `catalogs` (which `validate` uses) because building an engine may import its
library; engines import their heavy libraries lazily anyway, on first fit or predict.
"""

from __future__ import annotations

from openanomaly.adapters.model_engine.custom import load_custom_engine
from openanomaly.errors import ConfigError, Problem
from openanomaly.ports import ModelEngine


def model_engine(engine: str) -> ModelEngine:
    if engine == "statsforecast":
        from openanomaly.adapters.model_engine.statsforecast import StatsForecastEngine

        return StatsForecastEngine()
    if engine == "mlforecast":
        from openanomaly.adapters.model_engine.mlforecast import MLForecastEngine

        return MLForecastEngine()
    if engine == "neuralforecast":
        from openanomaly.adapters.model_engine.neuralforecast import NeuralForecastEngine

        return NeuralForecastEngine()
    try:
        engine_class = load_custom_engine(engine)
        built: ModelEngine = engine_class()
    except Exception as exc:  # a user's module: anything can go wrong in it
        reason = f"cannot build engine {engine}: {type(exc).__name__}: {exc}"
        raise ConfigError([Problem("model.engine", 0, "", reason)]) from None
    return built
