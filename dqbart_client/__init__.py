"""The Python client of the dqbart service.

    from dqbart_client import Client
    client = Client()  # DQB_API_URL (default http://127.0.0.1:8000) and DQB_API_KEY
    teacher = client.models.upload("teacher/")
    job = client.jobs.wait(client.jobs.create(recipe).id)
    client.models.download(job.result_model, "model.tar")
"""

from dqbart_client._client import Client
from dqbart_client.errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ChecksumMismatchError,
    ConflictError,
    DqbartError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)
from dqbart_client.types import (
    TERMINAL_STATUSES,
    Checkpoint,
    Dataset,
    Download,
    Event,
    Job,
    MetricPoint,
    Model,
    Sweep,
    SweepPoint,
)

__all__ = [
    "TERMINAL_STATUSES", "APIConnectionError", "APIStatusError", "AuthenticationError", "BadRequestError",
    "Checkpoint", "ChecksumMismatchError", "Client", "ConflictError", "Dataset", "Download", "DqbartError",
    "Event", "InternalServerError", "Job", "MetricPoint", "Model", "NotFoundError", "PayloadTooLargeError",
    "PermissionDeniedError", "RateLimitError", "Sweep", "SweepPoint", "UnprocessableEntityError",
]
