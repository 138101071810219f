"""How the tutor solves, by concern: ``values`` (modes, Solution, the events a solve streams), ``prompts``,
``reading`` (an answer's program and final answer), ``running`` (the code an answer writes, run in the sandbox),
``greedy`` (greedy answers and the correction of failed programs), ``rounds`` and ``vote`` (votes: rounds, early
stop, time budget, tie-break), ``streams``, ``settings`` (choices and overrides), ``presets`` (named settings and
the bundled models' defaults) and ``solve`` (the entry every door uses).

The modes' enums are mathtune/choices.py's (config.py reads them there).
"""
