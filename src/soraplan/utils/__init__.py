"""Small helpers shared across soraplan (file I/O, the CPU allocator setting)."""
