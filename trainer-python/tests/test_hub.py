"""Hub load failures: the ones a retry cannot fix exit 2 with advice; an unreachable Hub stays retryable."""
import pytest

from bsft_trainer.process.events import EXIT_FAILED, EXIT_INVALID
from bsft_trainer.checkpoints.hub import from_hub


# Stand-ins named and related like huggingface_hub's errors (transformers raises OSError from them).
class RepositoryNotFoundError(Exception):
    pass


class GatedRepoError(RepositoryNotFoundError):
    pass


class EntryNotFoundError(Exception):
    pass


class LocalEntryNotFoundError(EntryNotFoundError, FileNotFoundError):
    pass


class HFValidationError(ValueError):
    pass


def _failing(cause):
    def load(source, **kwargs):
        raise OSError(f"cannot load {source}") from cause
    return load


@pytest.mark.parametrize("cause, code, text", [
    (GatedRepoError(), EXIT_INVALID, "gated repo"),
    (RepositoryNotFoundError(), EXIT_INVALID, "no such repo"),
    (HFValidationError(), EXIT_INVALID, "neither an existing local folder"),
    (EntryNotFoundError(), EXIT_INVALID, "lacks a file"),
])
def test_permanent_failures_are_config_errors(cause, code, text):
    with pytest.raises(Exception) as e:
        from_hub("owner/model", _failing(cause))
    assert e.value.exit_code == code and text in str(e.value) and "owner/model" in str(e.value)


def test_uncached_files_are_a_config_error_offline_and_retryable_online(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception) as e:
        from_hub("owner/model", _failing(LocalEntryNotFoundError()))
    assert e.value.exit_code == EXIT_INVALID and "hf download owner/model" in str(e.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(Exception) as e:
        from_hub("owner/model", _failing(LocalEntryNotFoundError()))
    assert e.value.exit_code == EXIT_FAILED and e.value.kind == "internal" and "cannot be reached" in str(e.value)


def test_other_failures_pass_through_unchanged():
    with pytest.raises(OSError, match="cannot load"):
        from_hub("owner/model", _failing(RuntimeError("disk")))
    assert from_hub("x", lambda source, **kw: (source, kw), a=1) == ("x", {"a": 1})
