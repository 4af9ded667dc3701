# The `inline_plugin` fixture, for registering hooks in a test without installing anything.
from jepa_platform.plugins.testing import inline_plugin  # noqa: F401
