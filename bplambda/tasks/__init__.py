"""Tasks: each produces batches ``(inputs (T, *M, B, I), SequenceTargets)``."""

from bplambda.tasks.base import Task
from bplambda.tasks.toy import ToyTask

__all__ = ["Task", "ToyTask"]
