"""Faulty plugins for paddiff's registry tests."""
