"""The constraints a Docker build installs jepa-platform with, on top of a PyTorch base image.

constraints.txt pins the whole stack as tested (Python 3.11, x86_64), including torch and the CUDA wheels
it depends on (nvidia-*, cuda-*, triton). A base image already has torch and its CUDA libraries; pip must
keep them, not replace a few gigabytes of them because a CUDA wheel's patch release differs. So:

- torch and torchvision are pinned to the exact builds the base image has (e.g. 2.14.1+cu130), after
  checking that their release is the one constraints.txt pins: a base image of another torch release is
  an error, not a silently different image;
- the CUDA stack pins (torchaudio, triton, nvidia-*, cuda-*) are dropped: the base's torch pins its own;
- every other pin is kept as it is.

On a base without torch (e.g. python:3.11-slim) the output is constraints.txt unchanged, and pip installs
the pinned torch with its CUDA wheels.

    python constraints_for_base.py constraints.txt > constraints-image.txt
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

PINNED_FROM_BASE = ("torch", "torchvision")
CUDA_STACK = re.compile(r"^(torchaudio|triton|nvidia-.+|cuda-.+)$")
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> str:
    """A version without its local label: 2.14.1+cu130 -> 2.14.1."""
    return version.split("+", 1)[0]


def constraints_for_base(constraints: str, installed: Mapping[str, str]) -> str:
    """``constraints`` (the text of constraints.txt) adapted to a base image with ``installed`` packages
    (canonical name -> version). Raises ValueError when the base's torch or torchvision is another release
    than the one pinned."""
    installed = {canonical(name): version for name, version in installed.items()}
    if "torch" not in installed:
        return constraints
    kept: list[str] = []
    for line in constraints.splitlines():
        pin = PIN.match(line)
        name = canonical(pin.group(1)) if pin else ""
        if name in PINNED_FROM_BASE and name in installed:
            if release(installed[name]) != release(pin.group(2)):
                raise ValueError(
                    f"the base image has {name} {installed[name]} but constraints.txt pins {name}=={pin.group(2)}: "
                    f"build from a base image of {name} {pin.group(2)} (BASE_IMAGE) or update constraints.txt"
                )
            continue
        if CUDA_STACK.match(name):
            continue
        kept.append(line)
    kept.append("# From the base image (its torch keeps its own CUDA libraries):")
    kept += [f"{name}=={installed[name]}" for name in PINNED_FROM_BASE if name in installed]
    return "\n".join(kept) + "\n"


def installed_versions(names: tuple[str, ...] = PINNED_FROM_BASE) -> dict[str, str]:
    """Versions of ``names`` installed in this Python environment."""
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python constraints_for_base.py CONSTRAINTS_TXT > OUT", file=sys.stderr)
        return 2
    if sys.version_info[:2] != (3, 11):
        print(f"warning: constraints.txt was resolved for Python 3.11, this is {sys.version.split()[0]}",
              file=sys.stderr)
    try:
        sys.stdout.write(constraints_for_base(Path(argv[0]).read_text(), installed_versions()))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
