"""Pure domain code: no I/O, no third-party clients."""
