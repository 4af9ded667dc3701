"""The components that ship with jepa-platform, as one plugin: the package's `builtin` entry point.

Each folder registers its own family beside its code (`models/plugin.py`, `masks/plugin.py`, ...); this
module only lists them for the plugin manager, which loads it through the entry point exactly as it
loads a third-party package and never imports a component itself.
"""

from jepa_platform.data import plugin as data
from jepa_platform.masks import plugin as masks
from jepa_platform.models import plugin as models
from jepa_platform.runners import plugin as runners
from jepa_platform.teachers import plugin as teachers
from jepa_platform.train import plugin as train

HOOK_MODULES = (models, masks, teachers, data, runners, train)
