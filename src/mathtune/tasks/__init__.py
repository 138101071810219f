"""Tasks: how rows become model inputs and labels, how outputs are scored, written and served.

Every task registers in ``TASKS`` (tasks/base.py); importing this package registers the built-in ones.
"""

from .base import TASKS, ClassificationTask, Task, get_task, higher_is_better, is_generative, register_task, task_class
from .labels import LabelMap
from .misconception import MisconceptionTask
from .products import ProductsTask
from .topic import TOPIC_NAMES, TopicTask
from .tutor import TutorTask

__all__ = ["LabelMap", "TOPIC_NAMES", "TopicTask", "MisconceptionTask", "ProductsTask", "TutorTask", "TASKS",
           "Task", "ClassificationTask", "get_task", "task_class", "register_task", "higher_is_better",
           "is_generative"]
