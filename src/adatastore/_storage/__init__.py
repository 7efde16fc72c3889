"""Storage primitives the back-end engines share: blocking filesystem calls (`fsio`),
paths resolved beneath a directory without following links (`beneath`), safe names
(`naming`), cross-process locks and leases (`locks`, `leases`) and the record files kept
beside a database (`payloads`). Below the record format: these move bytes, never values.
"""
