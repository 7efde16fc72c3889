"""The record format: the envelope every stored value travels in (`record`), the
compression of its parts (`compression`), and values sealed into records and back —
serializer, envelope, signature (`sealing`). Knows nothing of back-ends or policy
(diskcache keeps its disk format apart from its cache policy the same way).
"""
