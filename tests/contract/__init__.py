"""Contract tests: every adapter of a core port passes the same suite."""
