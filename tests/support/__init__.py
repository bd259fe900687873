"""Helpers shared by the tests of several areas, imported as `support.<module>`.

tests/ is on sys.path (pyproject.toml's pytest `pythonpath`); fixtures live in tests/conftest.py.
"""
