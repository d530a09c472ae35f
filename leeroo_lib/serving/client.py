"""What a client reads from one answer of the service: the answer, the expert that gave it and the routing
headers (``x-leeroo-*``), through the openai client as any OpenAI-compatible caller would."""

from __future__ import annotations

import pandas as pd
from openai import OpenAI

from ..data.benchmarks import question_texts


def ask(client: OpenAI, model: str, question: pd.Series, max_tokens: int = 4, **extra) -> dict:
    """Ask one question (a row of ``data.load_questions``, written as the policy reads it, its subject in the
    body; ``extra`` such as ``budget`` goes in the body too) and return the expert that answered, its
    predicted chance of success, its price, the mean price over the service's window, the fallbacks taken and
    the answer."""
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        max_tokens=max_tokens,
        messages=[{"role": "user", "content": question_texts(question.to_frame().T)[0]}],
        extra_body={"subject": question["subject"], **extra},
    )
    answer = raw.parse()
    return {
        "expert": answer.model,
        "P(success)": float(raw.headers["x-leeroo-success-proba"]),
        "price": float(raw.headers["x-leeroo-price-per-1m-usd"]),
        "window mean price": float(raw.headers["x-leeroo-window-mean-price"]),
        "fallbacks": int(raw.headers["x-leeroo-fallbacks"]),
        "answer": answer.choices[0].message.content,
    }
