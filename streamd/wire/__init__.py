"""The JetStream vocabulary, pure (no I/O, no lmdb): JSON models, the error table, subjects, headers, times."""
