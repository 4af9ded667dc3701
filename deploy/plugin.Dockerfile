# syntax=docker/dockerfile:1
# An image with a third-party plugin package baked in, on top of the platform image. Jobs then name the
# plugin's components in their specs (e.g. `backbone: {kind: factorized_vit}`) and set this image.
# Build from the repository root, after building the platform image (deploy/README.md):
#   docker build -f deploy/plugin.Dockerfile -t jepa-platform-example:0.1.0 .
#   docker build -f deploy/plugin.Dockerfile --build-arg JEPA_IMAGE=registry.example.com/ml/jepa-platform:0.1.0 ...
ARG JEPA_IMAGE=jepa-platform:0.1.0
FROM ${JEPA_IMAGE}

LABEL org.opencontainers.image.title="jepa-platform-example" \
      org.opencontainers.image.description="jepa-platform with the jepa-example-plugin package"

# Installed as root into the image's environment, then back to the platform image's user. The platform
# image sets PIP_CONSTRAINT, so the plugin's dependencies resolve against the same pins and pip cannot
# replace torch. A plugin published as a wheel installs the same way:
#   COPY dist/jepa_example_plugin-0.1.0-py3-none-any.whl /tmp/  and  pip install /tmp/jepa_example_plugin-*.whl
USER root
COPY plugins/jepa-example-plugin /tmp/jepa-example-plugin
RUN python -m pip install /tmp/jepa-example-plugin \
 && rm -rf /tmp/jepa-example-plugin \
 && python -c "from importlib.metadata import entry_points; \
assert 'example' in {e.name for e in entry_points(group='jepa_platform')}, 'plugin entry point not found'" \
 && jepa plugins
USER 1000:1000
