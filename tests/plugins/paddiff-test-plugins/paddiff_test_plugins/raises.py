raise RuntimeError("this plugin module fails on import (on purpose, for paddiff's tests)")
