"""recursa: tiny recursive reasoning models (TRM) that run anywhere.

Public API::

    from recursa import build_model, load_checkpoint, evaluate, TASKS
"""

__version__ = "0.1.0"

from .errors import RecursaError  # noqa: E402
from .evaluation.evaluate import evaluate  # noqa: E402
from .inference.checkpoint import load_checkpoint  # noqa: E402
from .models import build_model  # noqa: E402
from .tasks import TASKS  # noqa: E402

__all__ = ["RecursaError", "TASKS", "build_model", "evaluate", "load_checkpoint", "__version__"]
