"""The operation core: each operation written once as a sans-I/O generator (`ops`),
driven by an async and a blocking driver, with what it decides by: a component's key and
record (`identity`), the store's options and policy (`options`, `policy`), limits and
eviction (`limits`), whether an entry still stands (`staleness`), a store's life
(`lifecycle`), `explain`, `verify`, and the 0.2-style back-ends (`legacy`).
"""
