"""Start records in result storage: a record that is not there reads as none, on every object store
the docs name, and any other failure of the read is raised (a 403 is a misconfiguration, not a fresh
source). The cloud SDKs are not dependencies of the project, so their errors are rebuilt here with the
attributes the SDKs give them: google-cloud-storage raises google.api_core.exceptions.NotFound (class
attribute `code`, http.HTTPStatus.NOT_FOUND), azure-storage-blob azure.core.exceptions.
ResourceNotFoundError (`status_code` from the response, which is an object, not a dict), boto3 a
botocore ClientError (`response` a dict with Error.Code)."""

import http

import pytest
from prefect.filesystems import WritableFileSystem
from pydantic import PrivateAttr

from splendor_flows.orchestration.run_records import ResultStorageFiles


class GoogleAPICallError(Exception):
    code: int | None = None
    response: object = None


class NotFound(GoogleAPICallError):
    code = http.HTTPStatus.NOT_FOUND


class Forbidden(GoogleAPICallError):
    code = http.HTTPStatus.FORBIDDEN


class AzureResponse:
    def __init__(self, status_code: int, reason: str) -> None:
        self.status_code = status_code
        self.reason = reason


class HttpResponseError(Exception):
    def __init__(self, message: str, response: AzureResponse, error_code: str) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code
        self.reason = response.reason
        self.error_code = error_code


class ResourceNotFoundError(HttpResponseError):
    pass


class ClientAuthenticationError(HttpResponseError):
    pass


class ClientError(Exception):
    def __init__(self, code: str, status: int) -> None:
        super().__init__(f"An error occurred ({code})")
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


class FailingStorage(WritableFileSystem):
    """A result storage block whose reads fail the way a cloud SDK's do."""

    _block_type_slug = "splendor-test-failing-storage"
    _error: Exception = PrivateAttr(default_factory=lambda: AssertionError("no error given"))

    async def read_path(self, path: str) -> bytes:
        raise self._error

    async def write_path(self, path: str, content: bytes) -> None:
        raise AssertionError("not written in these tests")


def failing(error: Exception) -> ResultStorageFiles:
    storage = FailingStorage()
    storage._error = error
    return ResultStorageFiles(storage)


MISSING = {
    "local": FileNotFoundError(2, "No such file or directory"),
    "s3-no-such-key": ClientError("NoSuchKey", 404),
    "s3-404": ClientError("404", 404),
    "gcs-not-found": NotFound("404 GET storage.googleapis.com/...: No such object: bucket/records/x"),
    "azure-blob-not-found": ResourceNotFoundError(
        "The specified blob does not exist.",
        AzureResponse(404, "The specified blob does not exist."),
        "BlobNotFound",
    ),
}
FAILED = {
    "s3-access-denied": ClientError("AccessDenied", 403),
    "gcs-forbidden": Forbidden(
        "403 GET storage.googleapis.com/...: caller does not have storage.objects.get"
    ),
    "azure-403": ClientAuthenticationError(
        "Server failed to authenticate the request.", AzureResponse(403, "Forbidden"), "AuthenticationFailed"
    ),
    "azure-500": HttpResponseError("Internal error", AzureResponse(500, "Server Error"), "InternalError"),
    "gcs-no-code": GoogleAPICallError("503 Service Unavailable"),
    "other": RuntimeError("connection reset"),
}


@pytest.mark.parametrize("error", MISSING.values(), ids=MISSING.keys())
async def test_a_missing_record_reads_as_none(error: Exception) -> None:
    assert await failing(error).read("records/x.json") is None


@pytest.mark.parametrize("error", FAILED.values(), ids=FAILED.keys())
async def test_any_other_failed_read_is_raised(error: Exception) -> None:
    with pytest.raises(type(error)) as caught:
        await failing(error).read("records/x.json")
    assert caught.value is error
