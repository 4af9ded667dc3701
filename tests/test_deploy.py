"""deploy/: the container images (checked statically: no Docker engine in tests), the constraints the image
is installed with, and the accelerator profiles the Kubernetes target reads."""

from __future__ import annotations

import importlib.util
import json
import re
from importlib import metadata
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CONSTRAINTS = (ROOT / "constraints.txt").read_text()
VERSION = metadata.version("jepa-platform")
CREDENTIAL_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSW|CREDENTIAL|AWS_|GOOGLE_APPLICATION", re.IGNORECASE)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped, as Docker reads them."""
    joined: list[str] = []
    current = ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not current):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        joined.append(current.strip())
        current = ""
    assert not current, f"{dockerfile} ends inside a continued instruction"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in joined]


def arg_defaults(steps: list[tuple[str, str]]) -> dict[str, str]:
    return dict(args.split("=", 1) for kind, args in steps if kind == "ARG" and "=" in args)


def base_image(steps: list[tuple[str, str]]) -> str:
    """The FROM image with ARG defaults substituted."""
    (image,) = [args.split()[0] for kind, args in steps if kind == "FROM"]
    return re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults(steps)[m.group(1)], image)


def pin(name: str) -> str:
    return re.search(rf"^{re.escape(name)}==(\S+)$", CONSTRAINTS, re.MULTILINE).group(1)


def runs(steps: list[tuple[str, str]]) -> str:
    return "\n".join(args for kind, args in steps if kind == "RUN")


@pytest.fixture(scope="module")
def image() -> list[tuple[str, str]]:
    return instructions(DEPLOY / "Dockerfile")


@pytest.fixture(scope="module")
def plugin_image() -> list[tuple[str, str]]:
    return instructions(DEPLOY / "plugin.Dockerfile")


@pytest.fixture(scope="module")
def constraints_for_base():
    spec = importlib.util.spec_from_file_location("constraints_for_base", DEPLOY / "constraints_for_base.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- deploy/Dockerfile ------------------------------------------------------------------------------------


def test_base_image_is_pinned_to_the_torch_and_cuda_of_the_constraints(image):
    name, _, tag = base_image(image).partition("@")[0].rpartition(":")
    assert name == "pytorch/pytorch" and tag and tag != "latest"
    cuda_major = re.search(r"^nvidia-cudnn-cu(\d+)==", CONSTRAINTS, re.MULTILINE).group(1)
    assert re.fullmatch(rf"{re.escape(pin('torch'))}-cuda{cuda_major}\.\d+-cudnn\d+-runtime", tag), tag


def test_runs_as_a_non_root_numeric_user(image):
    users = [args for kind, args in image if kind == "USER"]
    assert users and users[-1] == "1000:1000"  # numeric, so that Kubernetes' runAsNonRoot can verify it
    assert "useradd --uid 1000" in runs(image)
    env = " ".join(args for kind, args in image if kind == "ENV")
    assert "HOME=/home/jepa" in env
    assert "chmod 1777 /tmp" in runs(image)
    assert [args for kind, args in image if kind == "WORKDIR"] == ["/workspace"]


def test_installs_the_package_under_the_pinned_constraints(image):
    copies = [args for kind, args in image if kind == "COPY"]
    assert any(c.split()[:2] == ["constraints.txt", "deploy/constraints_for_base.py"] for c in copies)
    commands = runs(image)
    assert ("constraints_for_base.py /opt/jepa-platform/constraints.txt > /opt/jepa-platform/constraints-image.txt"
            in re.sub(r"\s+", " ", commands))
    install = re.search(r"pip install -c (\S+) \"/tmp/jepa-platform\[s3,gcs\]\"", commands)
    assert install and install.group(1) == "/opt/jepa-platform/constraints-image.txt"
    assert "PIP_CONSTRAINT=/opt/jepa-platform/constraints-image.txt" in " ".join(
        args for kind, args in image if kind == "ENV")
    # the ray CLI (KubeRay runs `ray start`) and jepa must be on PATH once installed
    assert "jepa --help" in commands and "ray --version" in commands
    assert any(r.startswith("ray[") and "default" in r for r in metadata.requires("jepa-platform"))


def test_starts_nothing_and_has_no_healthcheck(image):
    kinds = {kind for kind, _ in image}
    assert not kinds & {"CMD", "ENTRYPOINT", "HEALTHCHECK"}  # KubeRay sets each container's command


def test_holds_no_credentials(image, plugin_image):
    for steps in (image, plugin_image):
        for kind, args in steps:
            if kind in ("ENV", "ARG"):
                names = re.findall(r"(?:^|\s)(\w+)=", args) or [args.split("=")[0]]
                assert not [n for n in names if CREDENTIAL_NAME.search(n)], args
        assert not re.search(r"--mount=type=secret|AKIA[0-9A-Z]{12}|BEGIN [A-Z ]*PRIVATE KEY", runs(steps))


def test_labels_name_the_image_and_its_version(image):
    labels = " ".join(args for kind, args in image if kind == "LABEL")
    assert 'org.opencontainers.image.title="jepa-platform"' in labels
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert arg_defaults(image)["VERSION"] == VERSION


def dockerignore_includes(ignore_file: Path, path: str) -> bool:
    """Whether Docker sends ``path`` (relative to the context) with these ignore patterns (last match wins)."""
    included = True
    for raw in ignore_file.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            included = negate
    return included


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "plugin.Dockerfile"])
def test_build_context_sends_what_copy_needs_and_no_caches(dockerfile):
    ignore = DEPLOY / f"{dockerfile}.dockerignore"  # BuildKit reads <Dockerfile>.dockerignore beside it
    sources = [src for kind, args in instructions(DEPLOY / dockerfile) if kind == "COPY"
               for src in args.split()[:-1] if not src.startswith("--")]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        files = [src] if (ROOT / src).is_file() else [
            str(p.relative_to(ROOT)) for p in (ROOT / src).rglob("*") if p.is_file() and not
            {"__pycache__", "tests", ".pytest_cache", ".ruff_cache"} & set(p.parts) and ".egg-info" not in str(p)]
        assert files and all(dockerignore_includes(ignore, f) for f in files), src
    for unwanted in (".venv/bin/python", "runs/quickstart/metrics.jsonl", "tests/test_deploy.py",
                     "jepa_platform/__pycache__/cli.cpython-311.pyc", ".git/HEAD"):
        assert not dockerignore_includes(ignore, unwanted), unwanted


# --- deploy/plugin.Dockerfile -----------------------------------------------------------------------------


def test_plugin_image_builds_on_the_platform_image(plugin_image):
    assert base_image(plugin_image) == f"jepa-platform:{VERSION}"
    assert re.search(r"pip install /tmp/jepa-example-plugin\b", runs(plugin_image))
    assert ("COPY", "plugins/jepa-example-plugin /tmp/jepa-example-plugin") in plugin_image
    assert [args for kind, args in plugin_image if kind == "USER"][-1] == "1000:1000"
    assert "group='jepa_platform'" in runs(plugin_image)  # the build fails if the entry point did not register


# --- deploy/constraints_for_base.py -----------------------------------------------------------------------


def test_base_torch_build_is_kept_and_its_cuda_stack_left_to_it(constraints_for_base):
    base = {"torch": f"{pin('torch')}+cu130", "torchvision": f"{pin('torchvision')}+cu130"}
    out = constraints_for_base.constraints_for_base(CONSTRAINTS, base)
    pins = {Requirement(line).name: str(Requirement(line).specifier) for line in out.splitlines()
            if line and not line.startswith("#")}
    assert pins["torch"] == f"=={pin('torch')}+cu130" and pins["torchvision"] == f"=={pin('torchvision')}+cu130"
    assert not [n for n in pins if n.startswith(("nvidia-", "cuda-")) or n == "triton"]
    kept = {n: s for n, s in pins.items() if n not in ("torch", "torchvision")}
    original = {Requirement(line).name: str(Requirement(line).specifier) for line in CONSTRAINTS.splitlines()
                if line and not line.startswith("#")}
    assert kept == {n: s for n, s in original.items()
                    if n not in ("torch", "torchvision", "triton") and not n.startswith(("nvidia-", "cuda-"))}
    assert pins["ray"] == f"=={pin('ray')}" and pins["numpy"] == f"=={pin('numpy')}"


def test_base_image_of_another_torch_release_is_refused(constraints_for_base):
    with pytest.raises(ValueError, match=r"base image has torch 2\.99\.0\+cu130 but constraints.txt pins"):
        constraints_for_base.constraints_for_base(CONSTRAINTS, {"torch": "2.99.0+cu130"})


def test_base_without_torch_gets_the_constraints_unchanged(constraints_for_base):
    assert constraints_for_base.constraints_for_base(CONSTRAINTS, {}) == CONSTRAINTS


# --- deploy/accelerator-profiles.yaml ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def profiles() -> dict:
    return yaml.safe_load((DEPLOY / "accelerator-profiles.yaml").read_text())


def test_profiles_follow_the_chart_schema(profiles):
    schema = json.loads((ROOT / "helm" / "jepa-platform" / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator({**schema["definitions"]["acceleratorProfile"],
                                            "definitions": schema["definitions"]})
    for name, profile in profiles.items():
        assert re.fullmatch(schema["definitions"]["dnsLabel"]["pattern"], name)
        assert not list(validator.iter_errors(profile)), name
    wrong = {**profiles["h100-80g"], "gpus_per_node": 0}
    assert list(validator.iter_errors(wrong))  # a GPU resource with no GPUs is caught


def test_profiles_select_the_documented_node_pools(profiles):
    gke = {name: p["node_selector"].get("cloud.google.com/gke-accelerator") for name, p in profiles.items()}
    assert gke["a100-40g"] == "nvidia-tesla-a100"
    assert gke["a100-80g"] == "nvidia-a100-80gb"
    assert gke["h100-80g"] == "nvidia-h100-80gb"
    assert profiles["h100-80g-nfd"]["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    gpu_toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    for name, profile in profiles.items():
        if profile["gpus_per_node"]:
            assert profile["gpu_resource"] == "nvidia.com/gpu", name
            assert gpu_toleration in profile["tolerations"], name
    assert profiles["cpu"]["gpus_per_node"] == 0 and "gpu_resource" not in profiles["cpu"]
    assert profiles["cpu"]["tolerations"] == [] and profiles["cpu"]["node_selector"] == {}


def test_packaged_profiles_equal_the_deploy_file():
    """The wheel ships a copy of the profiles (for laptops without the repository); it must not drift."""
    root = Path(__file__).parent.parent
    packaged = root / "jepa_platform" / "runners" / "accelerator-profiles.yaml"
    assert packaged.read_text() == (root / "deploy" / "accelerator-profiles.yaml").read_text()
