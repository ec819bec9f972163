"""Model engines (StatsForecast, MLForecast, NeuralForecast, custom) and their catalogs."""
