"""The job spec's model: one YAML file describing a whole run, each component named by `kind` with
`params` its own model checks (`spec.validation`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, field_validator, model_validator

from jepa_platform.errors import EXIT_USAGE, JepaError
from jepa_platform.layout import JobLayout
from jepa_platform.spec.embed import EmbedSettings
from jepa_platform.spec.monitor import MonitorConfig
from jepa_platform.spec.optim import OptimConfig
from jepa_platform.spec.probe import ProbeSettings, Strict
from jepa_platform.storage import absolute_local, join


class SpecError(JepaError):
    """A spec that does not validate; the message lists every problem with its path."""

    exit_code = EXIT_USAGE

    @classmethod
    def listing(cls, source: str, problems: list[str]) -> SpecError:
        """`SOURCE is invalid:` and one indented line per problem."""
        return cls(f"{source} is invalid:\n  " + "\n  ".join(problems))


class ComponentSpec(Strict):
    kind: str = Field(description="Registered component name (see `jepa components`).")
    params: dict[str, Any] = Field(default_factory=dict, description="Validated by the component's own model.")


def multiblock(num_blocks: int, scale: float) -> ComponentSpec:
    return ComponentSpec(kind="multiblock", params={"num_blocks": num_blocks, "spatial_scale": [scale, scale]})


class DataSpec(Strict):
    dataset: str = Field("video", description="Registered dataset kind.")
    train: str | None = Field(
        None, description="Training manifest (`path label` CSV) or folder of videos; any fsspec URL."
    )
    val: str | None = Field(None, description="A small labelled set (manifest or folder per class) the encoder is "
                            "evaluated on during training: k-NN every monitor.eval_every steps.")
    frames: int = Field(16, ge=1)
    stride: int = Field(4, ge=1)
    resolution: int = Field(224, ge=1)
    loader_workers: int = Field(2, ge=0, description="DataLoader processes per training worker.")
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict, description="Validated by the dataset kind's model.")

    _absolute = field_validator("train", "val")(classmethod(lambda cls, v: absolute_local(v)))

    @field_validator("val")
    @classmethod
    def _val_exists(cls, v: str | None) -> str | None:
        """The labelled set the run is evaluated on must be there before anything starts (a local one is
        checked here; a remote one when the run builds its evaluation, before its first step)."""
        if v is not None and "://" not in v and not Path(v).exists():
            raise ValueError(f"no such file or folder: {v} (the labelled set for the k-NN evaluation)")
        return v


class ResourcesSpec(Strict):
    workers: int = Field(1, ge=1, description="Ray Train workers (one process, one GPU each on GPU pools).")
    cpus_per_worker: float = Field(1, gt=0)
    gpus_per_worker: float = Field(0, ge=0)
    accelerator_type: str | None = Field(None, description="e.g. A100, H100; a Ray accelerator_type.")
    max_failures: int = Field(0, ge=-1, description="Worker-group restarts Ray Train may make (-1: unlimited).")
    schedule_timeout_s: float = Field(
        600, gt=0, description="On a cluster, how long the job waits for its workers' resources to exist (an "
        "autoscaler adding nodes) before it fails saying what is missing; on this machine's own Ray, resources "
        "it lacks are refused at once.")


class StorageSpec(Strict):
    output: str = Field(
        "./runs", validate_default=True, description="Output root: a local path, s3:// or gs:// URL."
    )
    endpoint_url: str | None = Field(None, description="An S3-compatible store's endpoint (MinIO, Ceph, R2...), "
                                     "for data, checkpoints and metrics alike; default: AWS's (or $AWS_ENDPOINT_URL).")
    region: str | None = Field(None, description="The S3 region; default: the environment's.")
    anonymous: bool = Field(False, description="Unsigned requests (public buckets), no credentials needed.")
    timeout_s: float = Field(30, gt=0, description="Connect and read timeout of one object-store request (each "
                             "call is tried 5 times): a store that stops answering is an error in bounded time, "
                             "not a hang.")

    def configure(self) -> None:
        """Applies these settings to every s3:// and gs:// URL this process (and those it forks) reaches."""
        from jepa_platform.storage import configure_object_stores

        configure_object_stores(self.endpoint_url, self.region, self.anonymous, self.timeout_s)

    _absolute = field_validator("output")(classmethod(lambda cls, v: absolute_local(v)))


class ClusterSpec(Strict):
    address: str | None = Field(
        None, description="Target ray: the Ray dashboard's address, e.g. http://HOST:8265 (--address overrides it; "
        "without either, $JEPA_RAY_ADDRESS).",
    )


class InitSpec(Strict):
    """Continued pretraining: the run's first step starts from these weights instead of random ones."""

    checkpoint: str = Field(
        description="Weights to start from, any fsspec URL: an official V-JEPA / V-JEPA 2 / 2.1 .pt, a Hugging Face "
        "V-JEPA 2 folder, a jepa export, or a jepa-platform run or checkpoint. It must fit the backbone (and "
        "predictor); what does not is named, tensor by tensor, before the first step.")
    key: Literal["auto", "teacher", "student", "target_encoder", "encoder"] = Field(
        "auto", description="Which encoder of the file: auto = the target encoder / teacher when saved. It "
        "initialises the student and an EMA teacher alike.")
    predictor: bool = Field(True, description="Also the predictor, where the file has one (extra mask tokens are "
                            "left out); otherwise the predictor starts fresh.")

    _absolute = field_validator("checkpoint")(classmethod(lambda cls, v: absolute_local(v)))


class ProbeSpec(ProbeSettings):
    """A frozen evaluation run as this stage instead of training (what `jepa probe` runs). `checkpoint:
    stage:NAME` probes an earlier stage; backbone and clip sizes default to that stage's; `output`
    defaults to this stage's folder."""


class EmbedSpec(EmbedSettings):
    """An embedding job run as this stage instead of training (what `jepa embed` runs). `checkpoint:
    stage:NAME` embeds with an earlier stage's encoder; backbone and clip sizes default to that stage's;
    `output` defaults to this stage's folder."""


NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


TARGET_ALIASES = {"k8s": "kubernetes"}


RUNNER_SECTIONS = {"kubernetes": "kubernetes"}  # runner -> the spec section that holds its params in short


class JobSpec(Strict):
    """One training job."""

    name: str = Field(description="Job name: lowercase letters, digits and '-'; names the output folder.")
    backbone: ComponentSpec = ComponentSpec(kind="vit", params={"size": "base"})
    predictor: ComponentSpec = ComponentSpec(kind="vit_predictor")
    masks: list[ComponentSpec] = Field(default_factory=lambda: [multiblock(8, 0.15), multiblock(2, 0.7)])
    teacher: ComponentSpec = ComponentSpec(kind="ema")
    optim: OptimConfig = OptimConfig()
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="Health metrics every N steps and "
                                   "the collapse alarm's rules.")
    init: InitSpec | None = Field(None, description="Start from pretrained weights (V-JEPA 2, ...), optimiser and "
                                  "schedules fresh; a resumed run continues from its own checkpoint instead.")
    data: DataSpec
    resources: ResourcesSpec = ResourcesSpec()
    storage: StorageSpec = StorageSpec()
    target: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(kind="local"),
        description="Where the job runs: a registered runner (local, ray, kubernetes or a plugin's) and its params; "
        "a bare name is short for {kind: NAME}, and k8s for kubernetes.",
    )
    cluster: ClusterSpec = ClusterSpec()
    probe: ProbeSpec | None = Field(None, description="Makes this job (stage) a frozen evaluation; see `jepa probe`.")
    embed: EmbedSpec | None = Field(None, description="Makes this job (stage) write a frozen encoder's features "
                                    "per video; see `jepa embed`.")
    kubernetes: dict[str, Any] | None = Field(
        None, description="Params of runner kubernetes, used whenever the job runs there (also with --target k8s): "
        "namespace, image, node pool profile, Secrets for storage credentials, RayJob lifetimes (see `jepa "
        "components runners`); `target.params` win over it."
    )
    stages: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Pipeline stages, run in order as one job. Each has a unique `name` and overrides this spec's "
        "fields (mappings merge, lists replace); `stage:NAME` in params refers to an earlier stage's checkpoints.",
    )
    _pipeline: list[JobSpec] = PrivateAttr(default_factory=list)
    _notes: list[str] = PrivateAttr(default_factory=list)  # for the spec's writer; not part of the spec

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError("must be 1-63 lowercase letters, digits or '-', starting and ending alphanumeric")
        return v

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = {"kind": v}
        if isinstance(v, dict) and isinstance(v.get("kind"), str):
            v = {**v, "kind": TARGET_ALIASES.get(v["kind"], v["kind"])}
        return v

    @model_validator(mode="before")
    @classmethod
    def _runner_section(cls, v: Any) -> Any:
        """The section of the target's runner (`RUNNER_SECTIONS`, e.g. `kubernetes:`) is folded under
        `target.params`, which win."""
        target = v.get("target") if isinstance(v, dict) else None
        target = {"kind": target} if isinstance(target, str) else target
        if not isinstance(target, dict) or not isinstance(target.get("kind"), str):
            return v
        section = RUNNER_SECTIONS.get(TARGET_ALIASES.get(target["kind"], target["kind"]))
        params = target.get("params") or {}
        if section and isinstance(v.get(section), dict) and isinstance(params, dict):
            v = {**v, "target": {**target, "params": deep_merge(v[section], params)}}
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> JobSpec:
        if self.probe is not None and self.embed is not None:
            raise ValueError("probe and embed: a job (stage) is one of training, a probe or an embedding")
        if self.embed is not None and self.embed.output is None:  # the stage's own folder
            self.embed = self.embed.model_copy(update={"output": self.job_dir})
        return self

    @field_validator("masks")
    @classmethod
    def _masks(cls, v: list[ComponentSpec]) -> list[ComponentSpec]:
        if not v:
            raise ValueError("at least one mask is needed")
        return v

    @property
    def job_dir(self) -> str:
        return join(self.storage.output, self.name)

    @property
    def layout(self) -> JobLayout:
        """Every file this job (stage) writes in its folder."""
        return JobLayout(self.job_dir)

    @property
    def length(self) -> int:
        """Steps of a training stage; epochs of a probe stage; 1 for an embedding (done or not)."""
        if self.embed is not None:
            return 1
        return self.probe.epochs if self.probe is not None else self.optim.steps

    @property
    def trains(self) -> bool:
        """Whether this job (stage) trains a model, rather than probing or embedding with a frozen one."""
        return self.probe is None and self.embed is None

    @property
    def notes(self) -> list[str]:
        """Notes for the spec's writer from loading it (e.g. a stage's own value winning over an override)."""
        return list(self._notes)

    def pipeline(self) -> list[JobSpec]:
        """The stages to run, in order: the expanded `stages`, or this spec alone when it has none."""
        return list(self._pipeline) if self.stages else [self]

    def components(self) -> list[tuple[str, str, ComponentSpec]]:
        """(path, family, spec) of every component the job names."""
        out = [("backbone", "backbones", self.backbone), ("predictor", "predictors", self.predictor),
               ("teacher", "teachers", self.teacher)]
        out += [(f"masks[{i}]", "maskers", m) for i, m in enumerate(self.masks)]
        out.append(("data", "datasets", ComponentSpec(kind=self.data.dataset, params=self.data.params)))
        out.append(("target", "runners", self.target))
        for kind, section in RUNNER_SECTIONS.items():  # checked by that runner's own params model
            if getattr(self, section) is not None:
                out.append((section, "runners", ComponentSpec(kind=kind, params=getattr(self, section))))
        return out

    def runner_params(self, kind: str) -> dict[str, Any]:
        """The params for runner `kind`: its section of the spec (`kubernetes:`, ray's `cluster.address`), then
        `target.params` when the target names it."""
        sections = {k: getattr(self, section) or {} for k, section in RUNNER_SECTIONS.items()}
        sections["ray"] = {"address": self.cluster.address} if self.cluster.address else {}
        own = self.target.params if self.target.kind == kind else {}
        return {**sections.get(kind, {}), **own}

    def resolved(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.resolved(), sort_keys=False)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`: mappings merge, anything else replaces. A component whose `kind` changes is
    replaced whole: the params of one kind mean nothing to another (a stage's pixel teacher over the job's
    EMA teacher keeps none of its params)."""
    out = dict(base)
    for k, v in override.items():
        merge = isinstance(v, dict) and isinstance(out.get(k), dict) and v.get("kind", out[k].get("kind")) == \
            out[k].get("kind")
        out[k] = deep_merge(out[k], v) if merge else v
    return out

