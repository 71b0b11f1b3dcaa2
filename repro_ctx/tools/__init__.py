"""What users run: the ``repro-ctx`` command line, ``doctor``, the pytest plugin, the IPython magic.

``cli`` parses the commands; ``doctor`` and ``selfcheck`` report what a scope
covers here; ``outputs`` and ``tensor_outputs`` compare a command's outputs
for ``repro-ctx check``; ``magics`` is ``%%deterministic``; ``pytest_plugin``
is loaded through the ``pytest11`` entry point.

May import every folder but ``integrations``.
"""
