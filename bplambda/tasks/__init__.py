"""Tasks: each produces batches ``(inputs (T, *M, B, I), SequenceTargets)``."""

from bplambda.tasks.base import Task
from bplambda.tasks.delayed_match import DelayedMatch
from bplambda.tasks.pattern_generation import PatternGeneration
from bplambda.tasks.toy import ToyTask

__all__ = ["DelayedMatch", "PatternGeneration", "Task", "ToyTask"]
