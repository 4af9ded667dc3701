"""An example jepa-platform plugin: a future-prediction masker and a divided space-time ViT.

The hooks live in `jepa_example_plugin.plugin` (the entry point); the components in `future` and
`factorized_vit`. Nothing heavy is imported here, so listing plugins stays fast.
"""

__version__ = "0.1.0"
