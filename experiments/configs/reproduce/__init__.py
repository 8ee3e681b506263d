"""Configs of the reproduced table (docs/reproductions.md): one per row."""
