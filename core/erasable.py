"""Where copies derived from a customer's print file are kept, laid out so an erasure can find every one of them.

A prepared print file (QA's reduced copy of the design) shows a personalised line's text as pixels: it is the
customer's data as much as the print file is. Its entries live in one folder per print file content hash, whatever
the code version that wrote them, so erasing the asset deletes the folder (`ObjectStore.delete_prefix`).
"""

from __future__ import annotations

QA_REFERENCES = "cache/qa-references"
"""Object store prefix of QA's prepared print files (`workers.qa.shared_references`)."""


def qa_references_of(sha256: str) -> str:
    """The folder (ending in "/") holding every prepared entry, of any code version, of the print file `sha256`."""
    if not sha256 or "/" in sha256 or sha256.startswith("."):
        raise ValueError(f"not a content hash: {sha256!r}")
    return f"{QA_REFERENCES}/{sha256}/"


def qa_reference_name(sha256: str, substrate: tuple[int, int, int]) -> str:
    """The name QA keeps a print file's prepared copy under: its content hash and the blank's colour."""
    return f"{sha256}:{substrate}"


def qa_reference_sha256(name: str) -> str:
    """The print file's content hash in a prepared entry's name (`qa_reference_name`)."""
    return name.partition(":")[0]
