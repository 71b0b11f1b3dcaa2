"""The pytest plugin under its documented name: ``-p repro_ctx.pytest_plugin``, and
``-W error::repro_ctx.pytest_plugin.StateLeakWarning``.

The plugin lives in ``repro_ctx.tools.pytest_plugin`` and is loaded through the
``pytest11`` entry point. This name is the same module object (it replaces
itself in ``sys.modules``), so naming it with ``-p`` never registers the
plugin's hooks twice.
"""

import sys

from .diagnose.leaks import StateLeakWarning as StateLeakWarning  # named here for the docs
from .tools import pytest_plugin

sys.modules[__name__] = pytest_plugin
