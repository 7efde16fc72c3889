"""Compute once: single-flight within a process and locks across processes (`flights`),
what `get_or_compute` and `warm` see of a store (`host`), `warm`'s pipelines in this
process (`warm`) and on an executor (`remote`, `executors`, `spec`: a store described
for a worker), and `warm` as the facade calls it (`sweep`). Above the core: a
computation is a lookup, a call and a store, each an operation of the core.
"""
