"""Storage: the recorder (Arrow IPC stream writer, checksummed batches), the reader (salvage of
damaged files), importers of other tools' logs, and export. Builds on the core only.

``Recording``'s notebook conveniences (``play``, ``redrive``, ``metrics``, ``replay_data``, its
HTML) delegate at call time to the layers that own them; they are the only imports that point up
(CONTRIBUTING.md, "Layers").
"""
