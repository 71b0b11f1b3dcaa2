"""The faces users open a scope with: ``deterministic`` and ``reproducible``.

``deterministic`` is the context manager (``with``, ``async with``) and, as a
decorator, the same as ``reproducible``; ``decorator`` applies a scope to any
callable; ``function_scopes`` follows a generator or coroutine through its
suspensions. Each is a thin face over ``repro_ctx.core.scope``.

May import ``repro_ctx.core`` and ``repro_ctx.sources``.
"""
