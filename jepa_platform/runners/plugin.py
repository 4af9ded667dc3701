"""The built-in runners (`local`, `ray`, `kubernetes`): params models, factories and their registration.

Importing this module imports no runner (only the kubernetes runner's params model); each factory imports
its own when called.
"""

from __future__ import annotations

from pydantic import Field

from jepa_platform.plugins.hookspecs import hookimpl
from jepa_platform.plugins.registries import Params
from jepa_platform.runners.k8s_settings import KubernetesSettings


def build_local_runner(params: Params):
    """Embedded Ray on this machine, Ray Train TorchTrainer (gloo on CPU, nccl on GPU)."""
    from jepa_platform.runners.local import LocalRunner

    return LocalRunner()


def build_kubernetes_runner(params: KubernetesSettings):
    """A KubeRay RayJob on a Kubernetes cluster (kubeconfig or in-cluster), workers on a profile's node pool."""
    from jepa_platform.runners.kubernetes import KubernetesRunner

    return KubernetesRunner(settings=params)


class RayRunnerParams(Params):
    address: str | None = Field(None, description="Ray dashboard address, e.g. http://HOST:8265 (short form: the "
                                "spec's cluster.address; default: $JEPA_RAY_ADDRESS).")
    working_dir: str | None = Field(None, description="A folder shipped as the job's working directory.")
    plugins: list[str] | None = Field(None, description="Extra pip requirements or local paths to ship; the "
                                      "plugins the spec's components come from are shipped without it.")


def build_ray_runner(params: RayRunnerParams):
    """An existing Ray cluster, through the Ray Jobs API (token: $JEPA_RAY_TOKEN)."""
    from jepa_platform.runners.ray_jobs import RayJobsRunner

    return RayJobsRunner(params.address, working_dir=params.working_dir, plugins=params.plugins)


@hookimpl
def jepa_register_runners(register):
    register("ray", build_ray_runner, RayRunnerParams)
    register("local", build_local_runner, Params)
    register("kubernetes", build_kubernetes_runner, KubernetesSettings)
