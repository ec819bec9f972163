"""Reports a person reads: backtest plots."""
