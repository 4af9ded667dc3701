"""The names of what a job writes in its folder (`spec.job_dir`), in one place for every reader."""

SPEC_FILE = "spec.resolved.yaml"  # the spec the run was last started with
METRICS_FILE = "metrics.jsonl"  # one row per logged step
CHECKPOINTS = "checkpoints"  # the CheckpointStore: step_N/state.pt and a `latest` pointer
FLOPS_FILE = "flops.json"  # FLOPs of one step and of the whole run
TENSORBOARD = "tensorboard"  # event files of the metrics
TEACHER_PIN = "teacher.pin.json"  # the teacher file a student run started with (file, step, sha256)
RAY_TRAIN_DIR = "ray-train"  # Ray Train's own run folder; it registers no checkpoint
