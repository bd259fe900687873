"""Paddle building blocks shared by paddiff's networks, and strict state-dict loading."""
