"""The pages of the web UI, one module per page (and helpers they share in `common`)."""
