"""Cross-cutting promises: key derivations, bit-identity, faults, interruptions, damaged
files, old runs, the import layers, the README's snippets, packaging. docs/promises.md
names the test of each promise."""
