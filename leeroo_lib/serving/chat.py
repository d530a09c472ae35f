"""Reading a chat request: the question the policy reads, and the prompt a base model is sent.

Free text has no four choices: a message written as ``data.benchmarks.question_texts`` writes a question
(stem, then lines ``A. ...`` to ``D. ...``) is read as one; any other text is the stem with no choices.
The subject is unknown unless the request names it (``extra_body={"subject": "anatomy"}``); the subject
baseline then falls back to each expert's overall accuracy.
"""

from __future__ import annotations

import re

import pandas as pd

from ..data.benchmarks import question_key
from .errors import InvalidRequest

QUESTION_PATTERN = re.compile(
    r"(?s)\A(?P<stem>.*)\nA\. (?P<a>[^\n]*)\nB\. (?P<b>[^\n]*)\nC\. (?P<c>[^\n]*)"
    r"\nD\. (?P<d>[^\n]*)\s*\Z"
)


def message_text(content) -> str:
    """A message's text: a string, the text parts of an OpenAI content list, or none (an assistant's tool
    call). JSON may carry lone surrogates (``"\\ud800"``), which no tokenizer encodes: refused here rather
    than failing deep inside."""
    if content is None:
        return ""
    if isinstance(content, list):
        content = "\n".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    if not isinstance(content, str):
        raise InvalidRequest(
            f"message content must be a string or a list of text parts, not {type(content).__name__}",
            "invalid_content",
        )
    try:
        content.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidRequest(
            f"message text is not valid Unicode ({error.reason} at character {error.start}): send UTF-8 text",
            "invalid_content",
        ) from None
    return content


def chat_question(messages: list[dict], subject: str | None = None) -> pd.DataFrame:
    """The one-row questions frame the policy reads, from the last user message of a chat."""
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise InvalidRequest(
            "the request has no user message: the orchestrator reads the last user message", "no_user_message"
        )
    text = message_text(users[-1].get("content"))
    if not text.strip():
        raise InvalidRequest("the last user message is empty: there is no question to route", "no_user_message")
    match = QUESTION_PATTERN.match(text)
    stem, choices = (match["stem"], [match[c] for c in "abcd"]) if match else (text, [])
    return pd.DataFrame(
        {
            "subject": [subject or ""],
            "idx": [-1],
            "question": [stem],
            "choices": [choices],
            "qkey": [question_key(stem, choices)],
        }
    )


def chat_prompt(messages: list[dict]) -> str:
    """A chat as one prompt for a completions-only (base) model: the turns in order, each but the
    user's labelled with its role, then an open ``Answer:``."""
    turns = [
        (
            message_text(m.get("content"))
            if m.get("role") == "user"
            else f"{m.get('role', 'user').capitalize()}: {message_text(m.get('content'))}"
        )
        for m in messages
    ]
    return "\n\n".join(turns) + "\nAnswer:"
