"""Pipeline sources: where pipeline definitions come from."""
