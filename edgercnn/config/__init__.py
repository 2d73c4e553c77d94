"""The run configuration: the frozen :class:`Config`, its recipes (packaged YAML) and the stage schedule.

It validates with the vocabularies of :mod:`edgercnn.model` and :mod:`edgercnn.data`, so it sits above them and
below everything that runs a config.
"""

from edgercnn.config.runconfig import Config, config_from_dict, load_config

__all__ = ["Config", "config_from_dict", "load_config"]
