"""Loading from a Hub id or a local folder: failures a retry cannot fix become config errors (exit 2) that say what
to do; a Hub that cannot be reached stays a retryable failure, reported in one line instead of a traceback."""
from __future__ import annotations

import os

from ..process.events import ConfigError, TrainerError
from collections.abc import Callable
from typing import Any, TypeVar
T = TypeVar("T")

# Causes (huggingface_hub errors under transformers' OSError), most specific first, and what the user should know.
_PERMANENT = {
    "GatedRepoError": "a gated repo: accept its terms on the Hub with the account whose HF_TOKEN the worker has",
    "RepositoryNotFoundError": "no such repo on the Hub, or a private one HF_TOKEN cannot read",
    "RevisionNotFoundError": "the repo has no such revision (model.revision)",
    "EntryNotFoundError": "the repo lacks a file transformers needs (config.json, weights or tokenizer files)",
    "HFValidationError": "neither an existing local folder nor a Hub repo id (owner/name)",
}


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def load_error(source: str, error: BaseException) -> TrainerError | None:
    """The TrainerError for a failed `from_pretrained(source)`, or None when it is none of the known Hub failures."""
    cause = error.__cause__ or error
    names = [c.__name__ for c in type(cause).__mro__]
    if "LocalEntryNotFoundError" in names:  # a subclass of EntryNotFoundError: not cached, Hub not asked
        if offline():
            return ConfigError(f"model {source!r} is not in the Hugging Face cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')}) "
                               f"and HF_HUB_OFFLINE is set: download it first (hf download {source})")
        return TrainerError("internal", f"model {source!r}: the Hub cannot be reached and the files are not cached "
                                        "(a retry may succeed)")
    for name, advice in _PERMANENT.items():
        if name in names:
            return ConfigError(f"model {source!r}: {advice}")
    return None


def from_hub(source: str, load: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`load(source, *args, **kwargs)` (a transformers/peft `from_pretrained`), with `load_error`'s errors."""
    try:
        return load(source, *args, **kwargs)
    except (OSError, ValueError) as e:
        mapped = load_error(source, e)
        if mapped is None:
            raise
        raise mapped from e
