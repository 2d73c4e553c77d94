"""Things built from a config: the one floor just above ``edgercnn.config`` and below all that needs them.

(Not ``edgercnn/build``: .gitignore ignores every ``build/`` folder.)"""
