"""paddiff's built-in components. Each is registered through an entry point in setup.cfg, the
same way a third-party plugin package registers its own."""
