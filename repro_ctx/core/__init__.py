"""The floor everything stands on: the source protocol, the plan, and the scope primitive.

``source`` defines what a source is and what a scope applies (``Plan``);
``scope`` opens and closes scopes on the stack; ``seed`` validates seeds and
derives every stream's seed from one; ``plain`` is the checkpoint data form;
``equality`` compares snapshots exactly; ``fork`` and ``error_notes`` keep the
scope safe across ``fork()`` and helpful when an op fails inside it.

May import nothing else of repro_ctx: every other folder imports from here.
"""
