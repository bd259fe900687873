"""paddiff: Stable-Diffusion-class text-to-image generation on PaddlePaddle.

Importing `paddiff` is cheap: it does not import Paddle, PaddleNLP or PaddleHub. Those are imported
by the components that need them, the first time they are used.
"""

__version__ = "0.1.0"

from paddiff import hub_import  # noqa: E402

hub_import.install()  # PaddleHub's module folder is also named `paddiff`: see hub_import.py

from paddiff.interfaces import (  # noqa: E402
    VAE,
    Denoiser,
    SafetyFilter,
    Scheduler,
    SchedulerOutput,
    TextEncoder,
    Verdict,
)
from paddiff.registry import (  # noqa: E402
    BrokenPluginError,
    PluginConformanceError,
    PluginError,
    UnknownPluginError,
    get,
    list_plugins,
    register,
)

__all__ = [
    "__version__",
    "TextEncoder",
    "Denoiser",
    "VAE",
    "Scheduler",
    "SchedulerOutput",
    "SafetyFilter",
    "Verdict",
    "get",
    "register",
    "list_plugins",
    "PluginError",
    "UnknownPluginError",
    "BrokenPluginError",
    "PluginConformanceError",
]
