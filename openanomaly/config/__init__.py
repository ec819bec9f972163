"""Configuration: the process settings and the pipeline files, with precise error locations."""
