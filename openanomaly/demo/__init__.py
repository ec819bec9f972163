"""`openanomaly demo`: a TSDB, synthetic metrics with known incidents, backtest and live scoring."""
