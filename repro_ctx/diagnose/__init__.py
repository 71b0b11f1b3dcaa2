"""Why two runs differ and what a block left changed.

``op_recorder`` records every torch op a function runs; ``divergence`` runs
``find_divergence``/``record``/``compare``; ``report`` and ``causes`` hold what
was found and why, as plain data; ``leaks`` names the state a block left
changed; ``progress`` shows a long diagnosis on stderr.

May import ``repro_ctx.core``, ``sources``, ``scopes`` and ``state``.
"""
