"""In-process fake pakr clusters for applications' tests (placeholder, filled below)."""
