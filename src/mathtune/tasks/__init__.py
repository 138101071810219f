"""Tasks: how to build model inputs from rows and how outputs are written and scored."""

from .labels import LabelMap
from .misconception import MisconceptionTask
from .products import ProductsTask
from .topic import TOPIC_NAMES, TopicTask

TASKS = {"topic": TopicTask, "misconception": MisconceptionTask, "products": ProductsTask}


def get_task(name: str, settings=None):
    """The task object; ``settings`` is the recipe's task section (or its dict from a model manifest)."""
    return TASKS[name](settings)


__all__ = ["LabelMap", "TOPIC_NAMES", "TopicTask", "MisconceptionTask", "ProductsTask", "TASKS", "get_task"]
