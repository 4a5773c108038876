"""Small helpers shared across soraplan (file I/O)."""
