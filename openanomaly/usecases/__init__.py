"""Use cases: train, infer, backtest. They take their ports as arguments and do no wiring."""
