"""Code shipped inside a model folder (transformers' `trust_remote_code`): allowed or not
by the worker's machine (XINFERENCE_TRUST_REMOTE_CODE), never by a request.

Checked three times: the supervisor places a model that needs it only on workers that
allow it, the worker refuses it before the replica's process starts, and a loader that
finds custom code the family did not announce (a `model_path` folder) answers with the
same 400 instead of a generic load failure.
"""

from typing import Optional

from ..constants import TRUST_REMOTE_CODE_ENV, trust_remote_code_allowed
from ..errors import InvalidRequestError

HOW_TO_ENABLE = (f"start the worker with `xinference-local --trust-remote-code` (or "
                 f"{TRUST_REMOTE_CODE_ENV}=1 in the worker's environment)")


def refusal(model: str, reason: str = "this worker does not allow that") -> InvalidRequestError:
    return InvalidRequestError(
        f"{model} runs Python code from its model folder (trust_remote_code), and {reason}. "
        f"To allow it for every model, {HOW_TO_ENABLE}.",
        param="model_name",
        code="trust_remote_code_disabled",
    )


def check_allowed(model: str, needs_remote_code: bool) -> None:
    """A 400 when `model` needs remote code and this process may not run it."""
    if needs_remote_code and not trust_remote_code_allowed():
        raise refusal(model)


def load_refusal(model: str, error: BaseException) -> Optional[InvalidRequestError]:
    """The refusal for a loader's error that asks for trust_remote_code (transformers raises
    a ValueError saying "pass the argument `trust_remote_code=True`"), else None."""
    if "trust_remote_code" in str(error) and not trust_remote_code_allowed():
        return refusal(model)
    return None
