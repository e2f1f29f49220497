"""Moved: a job's inputs are placed by the worker (`claude_jobs.worker.inputs`)."""

from ..worker.inputs import DEFAULT_MAX_INPUT_BYTES as DEFAULT_MAX_INPUT_BYTES
from ..worker.inputs import InputUnavailableError as InputUnavailableError
from ..worker.inputs import materialize_inputs as materialize_inputs
from ..worker.inputs import safe_filename as safe_filename
