"""Tasks: how to build model inputs from rows and how outputs are written and scored."""

from .labels import LabelMap
from .topic import TOPIC_NAMES, TopicTask

TASKS = {"topic": TopicTask}


def get_task(name: str):
    return TASKS[name]()


__all__ = ["LabelMap", "TOPIC_NAMES", "TopicTask", "TASKS", "get_task"]
