"""Errors a user can cause, and the exit status each kind ends `jepa` (and a job's driver) with.

The CLI turns each into one line and its class's `exit_code`, never a traceback; the status is the same
whichever runner the job was given to:

- 0: the command did what was asked (the job succeeded);
- 1 (`EXIT_FAILED`): the job ran and failed, or was cancelled while `jepa submit` followed it;
- 2 (`EXIT_USAGE`): refused before anything ran: a spec, option, file or name that is wrong, a job or
  component that does not exist;
- 3 (`EXIT_UNAVAILABLE`): where the job runs could not be reached or would not take it: an unreachable or
  misaddressed cluster, rejected credentials, missing permissions, quota or operator, a job of that name
  still running there;
- 130 (`EXIT_INTERRUPTED`): Ctrl-C. A local job stops and resumes when submitted again; a cluster job goes
  on, and `jepa logs`/`jepa cancel` take it from there.
"""

import difflib
from collections.abc import Iterable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'depth'?)` for a misspelt name, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class JepaError(Exception):
    """Base of every error whose message is meant for the user as it stands."""

    exit_code = EXIT_FAILED


class ConfigError(JepaError, ValueError):
    """An impossible configuration: the message names the field and the allowed range."""

    exit_code = EXIT_USAGE


class DataError(JepaError):
    """Videos or manifests that cannot be read, past what a run tolerates."""


class TrainingError(JepaError):
    """A run that cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


class ClusterError(JepaError):
    """The cluster a job is sent to cannot be reached, or refuses it; the message says which and why."""

    exit_code = EXIT_UNAVAILABLE


class NotFound(JepaError):
    """A job (or a cluster's record of it) that does not exist."""

    exit_code = EXIT_USAGE


class JobDetached(JepaError):
    """Following a cluster job was interrupted (Ctrl-C); the job itself goes on in the cluster."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, job_id: str, running_as: str):
        super().__init__(f"stopped following job {job_id}; it goes on as {running_as}: follow it with "
                         f"`jepa logs {job_id} --follow`, stop it with `jepa cancel {job_id}`")
