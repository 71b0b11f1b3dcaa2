"""Thin adapters from training frameworks' hooks to the scopes and captures the core has.

Each module imports its framework only when it is imported itself, never from
``import repro_ctx``.

May import every folder but ``tools``.
"""
