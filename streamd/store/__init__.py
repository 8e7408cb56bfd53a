"""Persistence, the only package that imports lmdb: environment and layout, write path, reads, the writer."""
