"""Errors a user can cause. The CLI turns each into one line and a non-zero exit, never a traceback."""


class JepaError(Exception):
    """Base of every error whose message is meant for the user as it stands."""


class ConfigError(JepaError, ValueError):
    """An impossible configuration: the message names the field and the allowed range."""


class DataError(JepaError):
    """Videos or manifests that cannot be read, past what a run tolerates."""


class TrainingError(JepaError):
    """A run that cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


class JobDetached(JepaError):
    """Following a cluster job was interrupted (Ctrl-C); the job itself goes on in the cluster."""

    def __init__(self, job_id: str, running_as: str):
        super().__init__(f"stopped following job {job_id}; it goes on as {running_as}: follow it with "
                         f"`jepa logs {job_id} --follow`, stop it with `jepa cancel {job_id}`")
