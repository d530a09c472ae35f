"""Self-play (section 2.2 of the paper): generate questions, route them with exploration, evaluate
the answers, add them to the training set, retrain.

Pieces, each small and seeded:
- ``QuestionPoolGenerator`` draws unseen training questions: spread over subjects in a random order, or, for
  ``epsilon-greedy-selection``, sampled with weights by how much the experts' predicted outcomes
  disagree (``disagreement``); ``LLMGenerator`` has an instruct LM write new questions, which
  ``parse_generation`` validates (malformed ones are rejected with a reason).
- ``choose_experts``: which experts answer each question. ``epsilon-greedy`` (and its selection variant)
  sends it to the expert the orchestrator picks for it under the loop's cost budget (the policy's top
  expert once prices count) and each other expert with probability epsilon; ``uniform`` spends the same
  number of evaluations but draws the first expert at random instead of asking the orchestrator;
  ``full-information`` asks every expert (the upper bound).
- ``ReplayEvaluator``: a training question's recorded outcome is its evaluation (replay); it refuses any
  question outside the training split. Generated questions are answered by live experts
  (``answer_live``, lm-evaluation-harness).
- ``SelfPlayLoop``: rounds with a budget of expert evaluations each, stopping once ``max_evaluations``
  are spent; after every round the policy is refit and the test questions, where given, are routed under a
  fixed cost budget (``Orchestrator``). Questions every evaluated expert answers, or none does, are logged
  and may be down-weighted. ``add_expert`` lets a new expert join mid-loop and recomputes the universe
  (Algorithm 1) from the loop's own evaluations.
- ``training_loop``: the loop whose gathered outcomes are the orchestrator's self-play training set
  (``policy.train_on: selfplay``), one per benchmark.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..config import LiveExpert, ModelSource, PoolUniverse, SelfPlay, SelfPlayTraining
from ..data.benchmarks import MMLU_LETTERS, question_key
from ..data.splits import split_index
from ..experts.live_models import model_source, nf4_model
from .orchestrator import Orchestrator, routed_accuracy
from .universe import greedy_universe

FULL, UNIFORM, GREEDY, SELECTION = "full-information", "uniform", "epsilon-greedy", "epsilon-greedy-selection"
STRATEGIES = (FULL, UNIFORM, GREEDY, SELECTION)
SPLIT, ALL_RIGHT, ALL_WRONG, SINGLE = "split", "all_right", "all_wrong", "single"


def disagreement(proba: pd.DataFrame) -> pd.Series:
    """Spread (standard deviation over experts) of the predicted outcomes of each question: high where some
    experts are predicted to succeed and others to fail, the questions that "highlight the distinctions
    between the experts"."""
    return proba.std(axis=1, ddof=0)


class QuestionPoolGenerator:
    """Unseen questions of a question pool (training questions, not a pool of experts). By default one subject
    after another, in a seeded order, so every subject comes up. With ``select`` and a policy: a seeded sample
    without replacement, each question drawn with weight ``disagreement`` (Efraimidis-Spirakis keys), so
    questions the experts are predicted to split on come first while every question keeps a chance."""

    def __init__(self, question_pool: pd.DataFrame, select: bool = False, seed: int = 0):
        self.question_pool = question_pool.reset_index(drop=True)
        self.select = select
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.seen = np.zeros(len(self.question_pool), dtype=bool)

    @property
    def remaining(self) -> int:
        return int((~self.seen).sum())

    def propose(self, n: int, policy=None) -> pd.DataFrame:
        """Up to ``n`` unseen questions in the order they should be asked (not yet marked seen)."""
        unseen = self.question_pool[~self.seen]
        priority = pd.Series(self._rng.random(len(unseen)), index=unseen.index)
        if self.select and policy is not None:
            weight = disagreement(policy.predict_proba(unseen)).to_numpy() + 1e-6
            return unseen.iloc[np.argsort(-np.log(priority.to_numpy()) / weight, kind="stable")[:n]]
        subject_turn = pd.Series(self._rng.permutation(unseen["subject"].unique()))
        turn = unseen["subject"].map(pd.Series(subject_turn.index, index=subject_turn.to_numpy()))
        rank = priority.groupby(unseen["subject"]).rank(ascending=False, method="first")
        order = np.lexsort((turn.to_numpy(), rank.to_numpy()))
        return unseen.iloc[order[:n]]

    def consume(self, questions: pd.DataFrame) -> None:
        self.seen[questions.index.to_numpy()] = True


class ReplayEvaluator:
    """eval(e_j(q_i)) of training-split questions from the recorded score matrix (replay). A test
    question is refused, so nothing the router is judged on ever enters the loop."""

    def __init__(self, scores: pd.DataFrame, splits: pd.DataFrame):
        self.outcomes = scores.loc[split_index(splits, "train")]
        self.evaluated: list[tuple[str, int]] = []

    def _rows(self, questions: pd.DataFrame) -> pd.DataFrame:
        keys = pd.MultiIndex.from_frame(questions[["subject", "idx"]])
        outside = ~keys.isin(self.outcomes.index)
        if outside.any():
            raise ValueError(
                f"{outside.sum()} questions are not training-split questions of the score matrix (first: "
                f"{list(keys[outside][:3])}); self-play may only evaluate training questions"
            )
        return self.outcomes.loc[keys]

    def available(self, questions: pd.DataFrame, experts) -> pd.DataFrame:
        """Which experts have a recorded outcome on each question (indexed like ``questions``)."""
        return pd.DataFrame(self._rows(questions)[experts].notna().to_numpy(), index=questions.index, columns=experts)

    def evaluate(self, questions: pd.DataFrame, chosen: list[list[str]]) -> pd.DataFrame:
        """The recorded outcomes of the chosen experts, NaN for the others; index (subject, idx)."""
        rows = self._rows(questions)
        asked = np.zeros(rows.shape, dtype=bool)
        column = {expert: j for j, expert in enumerate(rows.columns)}
        for i, experts in enumerate(chosen):
            asked[i, [column[e] for e in experts]] = True
        self.evaluated += list(rows.index)
        return rows.where(asked)


def choose_experts(
    strategy: str, top: pd.Series | None, available: pd.DataFrame, epsilon: float, rng: np.random.Generator
) -> list[list[str]]:
    """The experts that answer each question (rows of ``available``). ``top`` names the
    orchestrator's pick per question; where it is None (no policy yet) or the pick has no recorded
    outcome for the question, the first expert is drawn at random."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy '{strategy}': use one of {STRATEGIES}")
    experts = np.asarray(available.columns)
    mask = available.to_numpy()
    if strategy == FULL:
        return [list(experts[m]) for m in mask]
    first = np.argmax(np.where(mask, rng.random(mask.shape), -1), axis=1)
    if strategy in (GREEDY, SELECTION) and top is not None:
        picked = available.columns.get_indexer(top.to_numpy())
        usable = mask[np.arange(len(mask)), picked]
        first[usable] = picked[usable]
    extra = mask & (rng.random(mask.shape) < epsilon)
    extra[np.arange(len(mask)), first] = True
    return [list(experts[m]) for m in extra]


def signal(outcomes: pd.DataFrame) -> pd.Series:
    """Per question: 'split' when the evaluated experts disagree (what teaches routing), 'all_right'
    or 'all_wrong' when two or more agree, 'single' when only one was asked."""
    n = outcomes.notna().sum(axis=1)
    right = outcomes.sum(axis=1)
    kind = np.select([n < 2, right == n, right == 0], [SINGLE, ALL_RIGHT, ALL_WRONG], SPLIT)
    return pd.Series(kind, index=outcomes.index, name="signal")


class SelfPlayLoop:
    """Rounds of generate, orchestrate, evaluate, retrain on a question pool (training questions).

    Round r may spend ``first_round_evaluations * growth**r`` expert evaluations, and the loop stops once
    ``max_evaluations`` are spent (None: when the question pool is used up); the last round spends what is left.
    After each round the policy (``make_policy(seed)``) is refit on everything gathered, questions of little
    signal weighted by ``low_signal_weight`` (1: every question alike, for policies that take no weights),
    and the test questions are routed under ``budget`` (mean cost per query); their recorded outcomes give
    the test accuracy (NaN with no ``test_questions``: the loop only gathers).
    """

    def __init__(
        self,
        strategy: str,
        generator: QuestionPoolGenerator,
        evaluator: ReplayEvaluator,
        experts: list[str],
        make_policy,
        test_questions: pd.DataFrame | None,
        test_outcomes: pd.DataFrame | None,
        costs: pd.Series,
        budget: float,
        routing_mode: str = "global",
        epsilon: float = 0.1,
        first_round_evaluations: int = 200,
        growth: float = 2.0,
        low_signal_weight: float = 0.25,
        max_evaluations: int | None = None,
        seed: int = 0,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy '{strategy}': use one of {STRATEGIES}")
        self.strategy = strategy
        self.generator = generator
        self.evaluator = evaluator
        self.experts = list(experts)
        self.make_policy = make_policy
        self.test_questions = test_questions
        self.test_outcomes = test_outcomes
        self.costs = costs
        self.budget = budget
        self.routing_mode = routing_mode
        self.epsilon = epsilon
        self.first_round_evaluations = first_round_evaluations
        self.growth = growth
        self.low_signal_weight = low_signal_weight
        self.max_evaluations = max_evaluations
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.policy = None
        self.questions = generator.question_pool.iloc[:0]
        self.gathered = pd.DataFrame(
            columns=self.experts, dtype=float, index=pd.MultiIndex.from_tuples([], names=["subject", "idx"])
        )
        self.log = pd.DataFrame(columns=["round", "subject", "idx", "n_evaluated", "signal"])
        self.evaluations = 0
        self.round = 0

    @classmethod
    def from_settings(
        cls,
        strategy: str,
        question_pool: pd.DataFrame,
        evaluator: ReplayEvaluator,
        experts: list[str],
        make_policy,
        costs: pd.Series,
        budget: float,
        settings: SelfPlay,
        seed: int,
        test_questions: pd.DataFrame | None = None,
        test_outcomes: pd.DataFrame | None = None,
        max_evaluations: int | None = None,
    ) -> SelfPlayLoop:
        """A loop over ``question_pool`` with the exploration settings of the profile's ``selfplay`` block."""
        return cls(
            strategy,
            QuestionPoolGenerator(question_pool, strategy == SELECTION, seed),
            evaluator,
            experts,
            make_policy,
            test_questions,
            test_outcomes,
            costs,
            budget,
            routing_mode=settings.routing_mode,
            epsilon=settings.epsilon,
            first_round_evaluations=settings.first_round_evaluations,
            growth=settings.growth,
            low_signal_weight=settings.low_signal_weight,
            max_evaluations=max_evaluations,
            seed=seed,
        )

    def _round_evaluations(self) -> int:
        """How many expert evaluations this round may spend."""
        planned = int(round(self.first_round_evaluations * self.growth**self.round))
        return planned if self.max_evaluations is None else min(planned, self.max_evaluations - self.evaluations)

    @property
    def done(self) -> bool:
        """The question pool is used up, or what is left of the evaluation budget cannot pay for one question asked of
        every expert."""
        spent = self.max_evaluations is not None and self.max_evaluations - self.evaluations < len(self.experts)
        return spent or not self.generator.remaining

    def _orchestrate(self, evaluations: int) -> tuple[pd.DataFrame, list[list[str]]]:
        """The next questions and their experts, as many as the round's ``evaluations`` allow; the
        policy's top expert of each is chosen under the loop's cost ``budget``."""
        batch = self.generator.propose(evaluations, self.policy)
        top = None if self.policy is None else self._orchestrator().route(batch, self.budget)
        chosen = choose_experts(
            self.strategy, top, self.evaluator.available(batch, self.experts), self.epsilon, self._rng
        )
        keep = max(1, int(np.searchsorted(np.cumsum([len(c) for c in chosen]), evaluations, side="right")))
        self.generator.consume(batch.iloc[:keep])
        return batch.iloc[:keep], chosen[:keep]

    def _add(self, questions: pd.DataFrame, outcomes: pd.DataFrame) -> None:
        new = ~outcomes.index.isin(self.gathered.index)
        self.questions = pd.concat([self.questions, questions[new]])
        grown = pd.concat([self.gathered, pd.DataFrame(np.nan, index=outcomes.index[new], columns=self.experts)])
        values = grown.to_numpy(np.float64, copy=True)
        rows = grown.index.get_indexer(outcomes.index)
        incoming = outcomes[self.experts].to_numpy(np.float64)
        values[rows] = np.where(np.isnan(incoming), values[rows], incoming)
        self.gathered = pd.DataFrame(values, index=grown.index, columns=self.experts)

    def _refit(self) -> None:
        policy = self.make_policy(self.seed)
        if self.low_signal_weight == 1:
            self.policy = policy.fit(self.questions, self.gathered)
            return
        kinds = signal(self.gathered)
        weight = np.where(kinds.isin([ALL_RIGHT, ALL_WRONG]), self.low_signal_weight, 1.0)
        self.policy = policy.fit(self.questions, self.gathered, sample_weight=weight)

    def _orchestrator(self) -> Orchestrator:
        return Orchestrator(self.policy, self.costs, mode=self.routing_mode)

    def test_accuracy(self, experts: list[str] | None = None) -> float:
        """Accuracy on the test questions routed by the current policy under the fixed budget, over
        ``experts`` (None: every expert of the loop)."""
        routes = self._orchestrator().route(self.test_questions, self.budget, experts=experts)
        return routed_accuracy(routes, self.test_outcomes.set_axis(self.test_questions.index)[self.policy.experts_])

    def run_round(self) -> dict:
        questions, chosen = self._orchestrate(self._round_evaluations())
        outcomes = self.evaluator.evaluate(questions, chosen)
        kinds = signal(outcomes[self.experts])
        self.log = pd.concat(
            [
                self.log,
                pd.DataFrame(
                    {
                        "round": self.round,
                        "subject": questions["subject"].to_numpy(),
                        "idx": questions["idx"].to_numpy(),
                        "n_evaluated": [len(c) for c in chosen],
                        "signal": kinds.to_numpy(),
                    }
                ),
            ],
            ignore_index=True,
        )
        self.evaluations += sum(len(c) for c in chosen)
        self._add(questions, outcomes)
        self._refit()
        self.round += 1
        shares = kinds.value_counts(normalize=True)
        return {
            "strategy": self.strategy,
            "round": self.round,
            "questions": len(self.questions),
            "evaluations": self.evaluations,
            "accuracy": np.nan if self.test_questions is None else self.test_accuracy(),
            **{f"share_{k}": float(shares.get(k, 0.0)) for k in (SPLIT, ALL_RIGHT, ALL_WRONG, SINGLE)},
        }

    def run(self, max_rounds: int | None = None, progress: bool = True) -> pd.DataFrame:
        """Rounds until the question pool is used up or the evaluations spent (or ``max_rounds``): one row per round,
        what it had paid for by then (questions, evaluations) and the test accuracy."""
        rows = []
        with tqdm(desc=f"self-play ({self.strategy})", unit="round", total=max_rounds, disable=not progress) as bar:
            while not self.done and (max_rounds is None or len(rows) < max_rounds):
                rows.append(self.run_round())
                bar.update()
        return pd.DataFrame(rows)

    def add_expert(self, expert: str, rule: PoolUniverse, step: int, patience: int, max_new_evaluations: int) -> dict:
        """The paper's integration of a new expert, on the loop's own evaluations. The expert answers seen
        questions ``step`` at a time (a seeded order), and on each of them every expert of the loop not
        yet asked there answers too, so that Algorithm 1 under ``rule`` can be recomputed on the questions
        every candidate answered. The decision (serve or refuse) stands once ``patience`` recomputations in
        a row agree, or when ``max_new_evaluations`` of the expert are spent. The policy is then refit with
        the expert, and the test questions routed over the universe without it and with the decision."""
        if expert in self.experts:
            raise ValueError(f"expert '{expert}' is already in the loop")
        candidates = self.experts + [expert]
        complete = self.evaluator.available(self.questions, candidates).all(axis=1).to_numpy()
        order = self.questions[complete].sample(frac=1.0, random_state=self.seed)
        if order.empty:
            raise ValueError(f"no question seen so far has a recorded outcome for every expert and '{expert}'")
        self.experts = candidates
        self.gathered = self.gathered.reindex(columns=candidates)
        decisions, new_evaluations, other_evaluations = [], 0, 0
        for start in range(0, min(len(order), max_new_evaluations), step):
            batch = order.iloc[start : min(start + step, max_new_evaluations)]
            missing = self.gathered.loc[pd.MultiIndex.from_frame(batch[["subject", "idx"]])].isna().to_numpy()
            chosen = [list(np.asarray(candidates)[m]) for m in missing]
            paid = sum(len(c) for c in chosen)
            new_evaluations += len(batch)
            other_evaluations += paid - len(batch)
            self._add(batch, self.evaluator.evaluate(batch, chosen))
            sample = self.gathered.loc[pd.MultiIndex.from_frame(order.iloc[: start + len(batch)][["subject", "idx"]])]
            universe = universe_by_rule(sample, rule, self.costs)
            decisions.append(expert in universe)
            if len(decisions) >= patience and len(set(decisions[-patience:])) == 1:
                break
        self.evaluations += new_evaluations + other_evaluations
        without = universe_by_rule(sample[candidates[:-1]], rule, self.costs)
        self._refit()
        return {
            "loop_decision": "serve" if decisions[-1] else "refuse",
            "new_expert_evaluations": new_evaluations,
            "other_evaluations": other_evaluations,
            "universe_without": without,
            "universe_with": universe,
            "accuracy_before": self.test_accuracy(without),
            "accuracy_after": self.test_accuracy(universe),
        }


def universe_by_rule(scores: pd.DataFrame, rule: PoolUniverse, costs: pd.Series) -> list[str]:
    """The experts Algorithm 1 serves on ``scores`` (complete rows) under a pool's universe ``rule``."""
    budget = {"costs": costs, "budget": rule.price_cap} if rule.rule == "cost_aware" else {}
    return [e for e, _ in greedy_universe(scores, k=rule.k or scores.shape[1], **budget)]


def training_loop(
    questions: pd.DataFrame,
    scores: pd.DataFrame,
    splits: pd.DataFrame,
    experts: list[str],
    costs: pd.Series,
    make_policy,
    settings: SelfPlay,
    training: SelfPlayTraining,
    max_evaluations: int | None,
    seed: int,
) -> SelfPlayLoop:
    """The epsilon-greedy loop whose gathered outcomes are a benchmark's self-play training set: over
    ``training.questions`` of its training questions (a seeded sample; all when None) and ``experts`` (those
    its policy predicts), the orchestrator's pick routed under ``training.budget``, the other settings the
    profile's ``selfplay`` block; it stops once ``max_evaluations`` are spent (None: every question asked).
    It routes no test question: Table 1 measures what the data it paid for are worth."""
    keys = pd.MultiIndex.from_frame(questions[["subject", "idx"]])
    train = questions[keys.isin(split_index(splits, "train"))]
    if training.questions is not None and training.questions < len(train):
        train = train.sample(n=training.questions, random_state=seed).sort_values(["subject", "idx"])
    evaluator = ReplayEvaluator(scores[experts], splits)
    return SelfPlayLoop.from_settings(
        GREEDY,
        train,
        evaluator,
        experts,
        make_policy,
        costs,
        training.budget,
        settings,
        seed,
        max_evaluations=max_evaluations,
    )


# --- questions written by an LLM -------------------------------------------------------------------

GENERATION_PROMPT = (
    "Write one new multiple-choice exam question about {topic}. Here is an example of the format:\n\n"
    "{example}\n\nNow write a different question on {topic} in exactly this format: 'Question:', "
    "four options A. to D., and 'Answer:' followed by the letter of the correct option."
)
_OPTION = re.compile(r"^\s*\(?([A-D])[.):]\s*(.+?)\s*$", re.MULTILINE)
_ANSWER = re.compile(r"Answer\s*:\s*\(?([A-D])\b")
_QUESTION = re.compile(r"Question\s*:\s*(.+?)\s*(?=^\s*\(?A[.):])", re.DOTALL | re.MULTILINE)


def format_question(question: str, choices, answer: int) -> str:
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(MMLU_LETTERS, choices))
    return f"Question: {question}\n{options}\nAnswer: {MMLU_LETTERS[answer]}"


def parse_generation(text: str, example: str = "") -> dict:
    """The question, four choices and answer index in a generation, with ``valid`` and, when not
    valid, the ``reason`` it was rejected."""
    parsed = {"question": None, "choices": None, "answer": None}
    found = _QUESTION.search(text)
    if not found or not found.group(1).strip():
        return {**parsed, "valid": False, "reason": "no 'Question:' followed by options"}
    parsed["question"] = " ".join(found.group(1).split())
    options = {}
    for letter, option in _OPTION.findall(text[found.end() :]):
        options.setdefault(letter, option)
    missing = [c for c in MMLU_LETTERS if c not in options]
    if missing:
        return {**parsed, "valid": False, "reason": f"missing option(s) {', '.join(missing)}"}
    parsed["choices"] = [options[c] for c in MMLU_LETTERS]
    if len({c.lower() for c in parsed["choices"]}) < 4:
        return {**parsed, "valid": False, "reason": "options are not four distinct answers"}
    answer = _ANSWER.search(text[found.end() :])
    if not answer:
        return {**parsed, "valid": False, "reason": "no 'Answer:' with a letter A-D"}
    parsed["answer"] = MMLU_LETTERS.index(answer.group(1))
    if example and " ".join(example.split()).startswith(f"Question: {parsed['question']}"):
        return {**parsed, "valid": False, "reason": "copies the example question"}
    return {**parsed, "valid": True, "reason": ""}


class LLMGenerator:
    """An instruct LM writes a new question for a subject, shown one training question of that
    subject as the format; each generation is parsed and validated (``parse_generation``).
    ``model`` is a profile entry (``config.ModelSource``): {gguf: {package, file}} (CPU) or
    {pretrained: hub id, load_in_4bit}.
    Generations are cached under their settings, so a rerun costs nothing."""

    def __init__(
        self,
        model: ModelSource,
        examples: pd.DataFrame,
        max_new_tokens: int = 200,
        temperature: float = 0.7,
        device: str = "cpu",
        seed: int = 0,
    ):
        self.model = model
        self.examples = examples
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.device = device
        self.seed = seed

    def _load(self):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = model_source(self.model)
        tokenizer = AutoTokenizer.from_pretrained(source)
        if self.model.load_in_4bit:
            model = nf4_model(AutoModelForCausalLM, source, self.device)
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).to(self.device)
        return tokenizer, model.eval()

    def _prompt(self, subject: str) -> tuple[str, str]:
        rows = self.examples[self.examples["subject"] == subject]
        if rows.empty:
            raise ValueError(f"no example question of subject '{subject}' to show the generator")
        row = rows.sample(n=1, random_state=self.seed).iloc[0]
        example = format_question(row["question"], row["choices"], int(row["answer"]))
        return GENERATION_PROMPT.format(topic=subject.replace("_", " "), example=example), example

    def generate(self, subjects: list[str], cache_path: Path | None = None) -> pd.DataFrame:
        """One generation per subject, in one batch: subject, text, valid, reason, question, choices,
        answer, qkey. Each stops at the end-of-text token or after ``max_new_tokens``."""
        settings = {
            "model": self.model.model_dump(exclude_unset=True),
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "subjects": list(subjects),
        }
        if cache_path is not None and Path(cache_path).is_file():
            cached = json.loads(Path(cache_path).read_text())
            if cached["settings"] == settings:
                return pd.DataFrame(cached["rows"])
        import torch

        tokenizer, model = self._load()
        tokenizer.padding_side = "left"  # batched generation continues every prompt from its end
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        prompts, examples = zip(*(self._prompt(subject) for subject in subjects))
        chats = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            for p in prompts
        ]
        inputs = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        torch.manual_seed(self.seed)
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=True,
                temperature=self.temperature,
                pad_token_id=tokenizer.pad_token_id,
            )
        texts = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        rows = []
        for subject, example, text in zip(subjects, examples, texts):
            parsed = parse_generation(text, example)
            qkey = question_key(parsed["question"], parsed["choices"]) if parsed["valid"] else None
            rows.append({"subject": subject, "text": text, **parsed, "qkey": qkey})
        if cache_path is not None:
            Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
            Path(cache_path).write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
        return pd.DataFrame(rows)


def answer_live(generated: pd.DataFrame, experts: list[LiveExpert], folder: Path) -> pd.DataFrame:
    """eval(e_j(q)) of live experts on valid generated questions, scored zero-shot by
    lm-evaluation-harness (``scoring``): one row per question, one 0/1 column per expert. The result
    is kept in ``folder`` and reused while the questions are the same; what lm-eval prints goes to
    ``live_answers.log`` there."""
    from ..experts.scoring import (
        evaluate_questions,
        library_output_to,
        load_expert_model,
        task_manager,
        write_local_tasks,
    )

    folder = Path(folder)
    valid = generated[generated["valid"]].copy()
    valid["idx"] = valid.groupby("subject").cumcount()
    stored = folder / "live_answers.parquet"
    if stored.is_file():
        cached = pd.read_parquet(stored)
        if list(cached["qkey"]) == list(valid["qkey"]) and {e.name for e in experts} <= set(cached.columns):
            return cached
    task_dir = write_local_tasks(valid, folder / "tasks", sorted(valid["subject"].unique()))
    manager = task_manager(task_dir)
    result = valid[["subject", "idx", "qkey", "answer"]].reset_index(drop=True)
    for entry in experts:
        with library_output_to(folder / "live_answers.log"):
            scored, _ = evaluate_questions(load_expert_model(entry), valid, 0, task_dir, manager, method=entry.method)
        result[entry.name] = result[["subject", "idx"]].merge(scored, on=["subject", "idx"])["correct"]
    result.to_parquet(stored, index=False)
    return result
