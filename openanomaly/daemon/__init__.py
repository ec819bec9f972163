"""The light-mode daemon: scheduler, jobs, hot reload, HTTP, signals."""
