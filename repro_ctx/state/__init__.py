"""State as a value: ``capture()``, ``RNGState``, checkpoints, DataLoader workers and ranks.

``snapshot`` holds ``capture``/``RNGState``; ``state_dict`` turns snapshots into
plain data and back; ``workers`` seeds DataLoader workers; ``distributed``
checks and checkpoints state across torch.distributed ranks (its public face
is ``repro_ctx.distributed``).

May import ``repro_ctx.core``, ``repro_ctx.sources`` and ``repro_ctx.scopes``.
"""
