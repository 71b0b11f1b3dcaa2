"""One module per piece of state a scope covers, each owning capture, seed, restore and plain form.

Python ``random``, NumPy's global state (and ``numpy_access``, NumPy's locked
state access), generator objects (``generators``, ``numpy_generators``), torch's
CPU and accelerator generators, torch's flags and TF32, the environment
variables, the ``register()`` registry, the source-plugin API and its
registry, and ``default_set``, which composes them for every scope.

May import ``repro_ctx.core`` only.
"""
