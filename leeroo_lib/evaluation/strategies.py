"""Strategies that may ask more than one expert per question, measured on recorded letters.

The paper asks one expert per query. A strategy here may ask several, and pays the sum of the
prices of the experts it called. Its inputs are a letters frame (questions x experts, 'A'-'J' or
missing, as ``data.suites.load_letters`` gives), the gold letters (``data.benchmarks.gold_letters``) and
the experts' prices; it answers each question with a letter, a cost and the experts called, in order.
Only a suite that stores the letters can be replayed this way: the recorded suite keeps right/wrong
alone, so two of its experts that are both wrong cannot be told to agree or disagree.

Every decision to accept or escalate reads only what a deployed system would see (the letters
so far and a policy's predicted chances), never the gold answer; the gold answer only scores the
result and, on the training split, fits the learned cascade. A strategy's ``name`` is its family,
then ": " and its setting where it has one (``strategy_aiq`` groups by family).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data.benchmarks import LETTERS
from .aiq import aiq
from .evaluate import bootstrap_ci

STRATEGY_COLUMNS = ["strategy", "pool", "budget", "mean_cost", "accuracy", "ci_low", "ci_high", "calls_per_question"]
GOAL_COLUMNS = [
    "price_share",
    "reference",
    "reference_accuracy",
    "n_questions",
    "cost_limit",
    "margin",
    "strategy",
    "budget",
    "training_cost",
    "training_accuracy",
    "mean_cost",
    "accuracy",
    "difference",
    "diff_ci_low",
    "diff_ci_high",
    "met",
]


def _short(expert: str) -> str:
    return expert.split("/")[-1]


def _codes(letters: pd.DataFrame, experts: list[str]) -> np.ndarray:
    """Letter codes 0-3 of ``experts`` (columns of ``letters``), -1 where the letter is missing."""
    unknown = [e for e in experts if e not in letters.columns]
    if unknown:
        raise ValueError(
            f"the letters frame has no column for expert(s) {unknown}: pass the pool's letters "
            "(data.suites.load_letters)"
        )
    values = letters[experts]
    odd = ~(values.isin(list(LETTERS)) | values.isna())
    if odd.to_numpy().any():
        raise ValueError(f"letters must be 'A'-'D' or missing, found {sorted(set(values[odd].stack().dropna()))[:5]}")
    codes = np.full(values.shape, -1, dtype=np.int64)
    for code, letter in enumerate(LETTERS):
        codes[values.eq(letter).to_numpy()] = code
    return codes


def _answers(
    index: pd.Index, letter: np.ndarray, cost: np.ndarray, step: np.ndarray, experts: list[str]
) -> pd.DataFrame:
    """The per-question result frame: ``letter`` codes (-1: none), ``cost`` and ``step`` (questions x
    experts: the call order of each expert, -1 when not called)."""
    called = [tuple(experts[j] for j in np.argsort(row, kind="stable") if row[j] >= 0) for row in step]
    return pd.DataFrame(
        {
            "letter": np.where(letter >= 0, np.array(list(LETTERS))[letter], None),
            "cost": cost.astype(np.float64),
            "experts": called,
        },
        index=index,
    )


def _price_vector(prices: pd.Series, experts: list[str]) -> np.ndarray:
    unpriced = [e for e in experts if e not in prices.index]
    if unpriced:
        raise ValueError(f"no price given for expert(s) {unpriced}: add them to prices (experts.expert_costs(...))")
    return prices[experts].to_numpy(np.float64)


class MajorityVote:
    """Ask every listed expert; answer the letter most of them gave. A tie goes to the letter of
    the earliest listed expert among the tied ones, so list the experts best first."""

    budget = np.nan

    def __init__(self, experts: list[str], prices: pd.Series):
        self.experts = list(experts)
        self.prices = _price_vector(prices, self.experts)
        self.name = "majority vote: " + " + ".join(_short(e) for e in self.experts)

    def answer(self, letters: pd.DataFrame) -> pd.DataFrame:
        codes = _codes(letters, self.experts)
        n, k = codes.shape
        votes = np.zeros((n, len(LETTERS)))
        for j in range(k):  # 2^-(j+1) summed over later voters never outweighs an earlier one
            voted = codes[:, j] >= 0
            votes[np.flatnonzero(voted), codes[voted, j]] += 1 + 2.0 ** -(j + 1)
        letter = np.where(votes.max(axis=1) > 0, votes.argmax(axis=1), -1)
        step = np.tile(np.arange(k), (n, 1))
        return _answers(letters.index, letter, np.full(n, self.prices.sum()), step, self.experts)


class AgreementCascade:
    """Ask the cheap experts in order; accept a letter as soon as ``quorum`` of them gave it; once
    the cheap experts left cannot reach the quorum, ask ``strong`` and answer its letter."""

    budget = np.nan

    def __init__(self, cheap: list[str], strong: str, quorum: int, prices: pd.Series):
        if not 1 <= quorum <= len(cheap):
            raise ValueError(f"quorum {quorum} must lie between 1 and the number of cheap experts, {len(cheap)}")
        self.cheap, self.strong, self.quorum = list(cheap), strong, quorum
        self.experts = [*self.cheap, strong]
        self.prices = _price_vector(prices, self.experts)
        self.name = (
            f"agreement cascade: {quorum} of " + " + ".join(_short(e) for e in self.cheap) + f" -> {_short(strong)}"
        )

    def answer(self, letters: pd.DataFrame) -> pd.DataFrame:
        codes = _codes(letters, self.experts)
        n, k = len(codes), len(self.cheap)
        votes = np.zeros((n, len(LETTERS)), dtype=np.int64)
        letter, cost = np.full(n, -1), np.zeros(n)
        step = np.full((n, k + 1), -1)
        waiting = np.ones(n, dtype=bool)
        for t in range(k):
            asked = waiting.copy()
            step[asked, t], cost[asked] = t, cost[asked] + self.prices[t]
            voted = asked & (codes[:, t] >= 0)
            votes[np.flatnonzero(voted), codes[voted, t]] += 1
            accept = asked & (votes.max(axis=1) >= self.quorum)
            letter[accept] = votes[accept].argmax(axis=1)
            escalate = asked & ~accept & (votes.max(axis=1) + k - 1 - t < self.quorum)
            step[escalate, k], cost[escalate] = t + 1, cost[escalate] + self.prices[k]
            letter[escalate] = codes[escalate, k]
            waiting &= ~(accept | escalate)
        return _answers(letters.index, letter, cost, step, self.experts)


def _gold(gold: pd.Series, index: pd.Index) -> pd.Series:
    """The gold letters of ``index``, or an error naming the questions that have none."""
    missing = index[~index.isin(gold.index)]
    if len(missing):
        raise ValueError(
            f"no gold answer for {len(missing)} questions (first: {list(missing[:3])}): "
            "pass data.gold_letters(load_questions(benchmark))"
        )
    return gold.reindex(index)


def _rows_of(proba: pd.DataFrame, letters: pd.DataFrame, experts: list[str]) -> np.ndarray:
    """The policy's chances for the rows of ``letters``, or an error naming what is missing."""
    missing = letters.index[~letters.index.isin(proba.index)]
    if len(missing):
        raise ValueError(
            f"the policy's predictions lack {len(missing)} questions (first: {list(missing[:3])}): "
            "index predict_proba's frame by (subject, idx) and cover every question answered"
        )
    unknown = [e for e in experts if e not in proba.columns]
    if unknown:
        raise ValueError(f"the policy predicts no chance for expert(s) {unknown}: fit it on the pool's experts")
    return proba.loc[letters.index, experts].to_numpy(np.float64)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


def _walk(codes: np.ndarray, chance: np.ndarray, prices: np.ndarray, cap: float) -> list[dict]:
    """The calls of a cascade that may spend ``cap`` on a question. The experts it may call are
    picked as the orchestrator picks one: the cheapest, then each time the expert with the highest
    predicted chance that the rest of the cap affords; they are called cheapest first, so a
    question stops as soon as cheap answers suffice. One entry per call: which questions made it,
    the spend so far, the experts asked (a bit mask) and, for each of the four letters, what a
    deployed system knows of it (its raw counts; ``_features`` spells them out when read, so the walks
    of every cap are held at under half the memory)."""
    n, m = codes.shape
    rows = np.arange(n)
    chosen = np.zeros((n, m), dtype=bool)
    chosen[:, np.argmin(prices)] = prices.min() <= cap + 1e-9
    for _ in range(m - 1):
        affordable = ~chosen & (prices[None, :] <= cap - (chosen * prices).sum(axis=1, keepdims=True) + 1e-9)
        pick = np.where(affordable, chance, -np.inf).argmax(axis=1)
        extend = affordable.any(axis=1)
        chosen[rows[extend], pick[extend]] = True
    order = np.lexsort((-chance, np.broadcast_to(prices, chance.shape), ~chosen), axis=1)
    asked = np.zeros((n, m), dtype=bool)
    spent, missing = np.zeros(n), np.zeros(n)
    votes, chance_sum, chance_max = (np.zeros((n, len(LETTERS))) for _ in range(3))
    difficulty = _logit(chance.mean(axis=1))
    steps = []
    for s in range(int(chosen.sum(axis=1).max())):
        live, expert = chosen.sum(axis=1) > s, order[:, s]
        asked[rows[live], expert[live]] = True
        spent += np.where(live, prices[expert], 0.0)
        letter, p = codes[rows, expert], chance[rows, expert]
        voted = live & (letter >= 0)
        missing += live & (letter < 0)
        votes[rows[voted], letter[voted]] += 1
        chance_sum[rows[voted], letter[voted]] += p[voted]
        chance_max[rows[voted], letter[voted]] = np.maximum(chance_max[rows[voted], letter[voted]], p[voted])
        top = chance_max.argmax(axis=1)
        ranked = np.sort(chance_max, axis=1)
        dissent = np.where(np.arange(len(LETTERS))[None, :] == top[:, None], ranked[:, [-2]], ranked[:, [-1]])
        steps.append(
            {
                "live": live,
                "expert": expert,
                "spent": spent.copy(),
                "mask": asked @ (1 << np.arange(m)),
                "voted": votes > 0,
                "per_letter": np.stack([votes, chance_max, chance_sum, dissent], axis=-1),
                "per_question": np.column_stack([asked.sum(axis=1), missing, difficulty]).astype(np.float64),
            }
        )
    return steps


def _features(step: dict, rows=slice(None)) -> np.ndarray:
    """What the scorer reads of each letter after one call of ``_walk``, for ``rows``: questions x letters x 10."""
    votes, chance_max, chance_sum, dissent = np.moveaxis(step["per_letter"][rows], -1, 0)
    calls, missing, difficulty = np.moveaxis(step["per_question"][rows][:, :, None], 1, 0)
    return np.stack(
        np.broadcast_arrays(
            votes,
            votes / calls,
            votes == calls,
            calls,
            _logit(chance_max),
            chance_sum,
            _logit(dissent),
            dissent > 0,
            missing,
            difficulty,
        ),
        axis=-1,
    ).astype(np.float64)


def _subset(step: dict, rows: np.ndarray) -> dict:
    return {key: value[rows] for key, value in step.items()}


def _best_letters(scorer, steps: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """After each call (rows) of each question (columns): the letter the scorer rates most likely
    right (-1 when no letter was given yet) and its chance (-1 then)."""
    voted = np.stack([st["voted"] for st in steps])
    score = np.full(voted.shape, -1.0)
    if voted.any():
        features = np.concatenate([_features(st)[st["voted"]] for st in steps])
        score[voted] = scorer.predict_proba(features)[:, 1]
    best = score.max(axis=2)
    return np.where(best >= 0, score.argmax(axis=2), -1), best


def _stops(steps: list[dict], chance: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold (rows) and question (columns), the call it stops after: the first whose
    best letter reaches the threshold, else its last."""
    live = np.stack([st["live"] for st in steps])
    reached = live[:, :, None] & (chance[:, :, None] >= thresholds[None, None, :])
    last = live.sum(axis=0) - 1
    return np.where(reached.any(axis=0), reached.argmax(axis=0), last[:, None]).T


def _training_rows(walks: list[list[dict]], truth: np.ndarray, rows: np.ndarray):
    """Features and labels of the letters given in each distinct state (question, experts asked)
    that the walks reach on ``rows`` (a state reached under several caps counts once), with equal
    rows merged into one of that weight (the same fit, ten times faster)."""
    states = [(st, rows[st["live"][rows]]) for steps in walks for st in steps]
    keys = np.concatenate([r.astype(np.int64) << 32 | st["mask"][r] for st, r in states])
    keep = np.zeros(len(keys), dtype=bool)
    keep[np.unique(keys, return_index=True)[1]] = True
    X, y, offset = [], [], 0
    for st, r in states:
        chosen = r[keep[offset : offset + len(r)]]
        offset += len(r)
        voted = st["voted"][chosen]
        X.append(_features(st, chosen)[voted])
        y.append((np.arange(len(LETTERS))[None, :] == truth[chosen][:, None])[voted])
    counts = pd.DataFrame(np.column_stack([np.concatenate(X), np.concatenate(y)])).value_counts(sort=False)
    merged = counts.index.to_frame(index=False).to_numpy(np.float64)
    return merged[:, :-1], merged[:, -1].astype(bool), counts.to_numpy(np.float64)


class LearnedCascade:
    """A cascade in the FrugalGPT style (Chen et al. 2023, arXiv 2305.05176) whose decisions are learned.

    The experts a question may call are picked under a per-question cap as the orchestrator picks
    one: the cheapest, then each time the expert with the highest predicted chance that the rest of
    the cap affords. They are called cheapest first. After each call a scorer (a logistic
    regression over the letters so far: votes, agreement, the policy's chances of the experts
    behind each letter and against it) gives each letter its chance of being right; the question
    stops when the best letter's chance reaches a threshold, else it escalates to its next expert.
    ``fit`` trains the scorer on the training rows and measures every (cap, threshold) on them,
    scored out of fold so the choice is not flattered; ``at_budget`` takes the best training
    accuracy whose training mean cost stays within the budget (on new questions the mean cost
    lands near it, not exactly on it).

    ``proba``: a policy's predicted chances, index (subject, idx), one column per expert of the pool
    (e.g. ``SubjectPolicy`` fitted on the training rows of ``data.suites.load_letter_scores``; chances of
    the training rows from a policy that did not see them make the training accuracy honest).
    """

    n_folds = 5
    n_thresholds = 64

    def __init__(self, proba: pd.DataFrame, prices: pd.Series, seed: int = 0):
        self.proba, self.seed = proba, seed
        self.experts = list(proba.columns)
        self.prices = _price_vector(prices, self.experts)

    def _caps(self) -> np.ndarray:
        """Per-question caps worth trying: the cheapest expert plus up to three others, or everyone."""
        others = np.delete(self.prices, np.argmin(self.prices))
        sums = [sum(c) for k in range(4) for c in itertools.combinations(others, k)]
        return np.unique(np.round(self.prices.min() + np.array([*sums, others.sum()]), 6))

    @staticmethod
    def _fit_scorer(X: np.ndarray, y: np.ndarray, weight: np.ndarray):
        scorer = make_pipeline(StandardScaler(), LogisticRegression(solver="newton-cholesky"))
        return scorer.fit(X, y, standardscaler__sample_weight=weight, logisticregression__sample_weight=weight)

    def fit(self, letters: pd.DataFrame, gold: pd.Series) -> LearnedCascade:
        """Train the scorer on these (training) questions and measure each setting on them."""
        codes = _codes(letters, self.experts)
        chance = _rows_of(self.proba, letters, self.experts)
        truth = _gold(gold, letters.index).map(LETTERS.index).to_numpy()
        caps = self._caps()
        walks = [_walk(codes, chance, self.prices, cap) for cap in caps]
        rows = np.arange(len(codes))
        oof = [(np.full((len(steps), len(rows)), -1), np.full((len(steps), len(rows)), -1.0)) for steps in walks]
        for fit_rows, held in KFold(self.n_folds, shuffle=True, random_state=self.seed).split(rows):
            scorer = self._fit_scorer(*_training_rows(walks, truth, fit_rows))
            for steps, (letter, best) in zip(walks, oof):
                letter[:, held], best[:, held] = _best_letters(scorer, [_subset(st, held) for st in steps])
        self.scorer_ = self._fit_scorer(*_training_rows(walks, truth, rows))
        grid = []
        for cap, steps, (letter, best) in zip(caps, walks, oof):
            live = np.stack([st["live"] for st in steps])
            # 2.0: no letter is accepted before the question's last call
            thresholds = np.unique([*np.quantile(best[live], np.linspace(0, 1, self.n_thresholds)), 2.0])
            stop = _stops(steps, best, thresholds)
            spent = np.stack([st["spent"] for st in steps])
            grid.append(
                pd.DataFrame(
                    {
                        "cap": cap,
                        "threshold": thresholds,
                        "cost": spent[stop, rows].mean(axis=1),
                        "accuracy": (letter[stop, rows] == truth).mean(axis=1),
                    }
                )
            )
        self.settings_ = pd.concat(grid, ignore_index=True)
        return self

    def at_budget(self, budget: float) -> BudgetedCascade:
        """The setting with the best training accuracy whose training mean cost is within ``budget``."""
        if not hasattr(self, "settings_"):
            raise ValueError("this learned cascade is not fitted: call fit(training letters, gold) first")
        affordable = self.settings_[self.settings_["cost"] <= budget + 1e-9]
        if affordable.empty:
            raise ValueError(
                f"budget {budget} is below the cheapest setting's training cost, "
                f"{self.settings_['cost'].min():.2f}: raise it"
            )
        best = affordable.sort_values(["accuracy", "cost"], ascending=[False, True], kind="stable").iloc[0]
        return BudgetedCascade(self, budget, *best[["cap", "threshold", "cost", "accuracy"]].astype(float))


class BudgetedCascade:
    """A fitted ``LearnedCascade`` at one budget: its cap and threshold, and the mean cost and accuracy
    they reached on the training rows, out of fold (what they were chosen by); read-only."""

    name = "learned cascade"

    def __init__(
        self,
        cascade: LearnedCascade,
        budget: float,
        cap: float,
        threshold: float,
        training_cost: float,
        training_accuracy: float,
    ):
        self.cascade, self.budget, self.cap, self.threshold = cascade, budget, cap, threshold
        self.training_cost, self.training_accuracy = training_cost, training_accuracy

    def answer(self, letters: pd.DataFrame) -> pd.DataFrame:
        c = self.cascade
        codes = _codes(letters, c.experts)
        steps = _walk(codes, _rows_of(c.proba, letters, c.experts), c.prices, self.cap)
        letter, best = _best_letters(c.scorer_, steps)
        rows = np.arange(len(codes))
        stop = _stops(steps, best, np.array([self.threshold]))[0]
        order = np.full(codes.shape, -1)
        for s, st in enumerate(steps):
            called = st["live"] & (s <= stop)
            order[rows[called], st["expert"][called]] = s
        spent = np.stack([st["spent"] for st in steps])[stop, rows]
        return _answers(letters.index, letter[stop, rows], spent, order, c.experts)


def _correct(strategy, letters: pd.DataFrame, gold: pd.Series) -> tuple[pd.DataFrame, np.ndarray]:
    """A strategy's answers on ``letters`` and whether each is the gold letter (1.0) or not (0.0)."""
    truth = _gold(gold, letters.index)
    answers = strategy.answer(letters)
    return answers, (answers["letter"] == truth).to_numpy(np.float64)


def evaluate_strategies(strategies, letters: pd.DataFrame, gold: pd.Series, pool: str, seed: int) -> pd.DataFrame:
    """One row per strategy on these questions (the test split): mean cost, accuracy with its
    seeded 95% bootstrap interval, and experts called per question (``STRATEGY_COLUMNS``)."""
    rows = []
    for strategy in strategies:
        answers, correct = _correct(strategy, letters, gold)
        low, high = bootstrap_ci(correct, seed)
        rows.append(
            {
                "strategy": strategy.name,
                "pool": pool,
                "budget": strategy.budget,
                "mean_cost": answers["cost"].mean(),
                "accuracy": correct.mean(),
                "ci_low": low,
                "ci_high": high,
                "calls_per_question": answers["experts"].map(len).mean(),
            }
        )
    return pd.DataFrame(rows, columns=STRATEGY_COLUMNS)


def strategy_family(names: pd.Series) -> pd.Series:
    """A strategy's family from its name: ``majority vote: A + B + C`` is a majority vote."""
    return names.str.partition(": ")[0]


def strategy_aiq(rows: pd.DataFrame, prices: pd.Series) -> pd.DataFrame:
    """AIQ of each strategy family (every setting of it one point) over the pool's price range,
    the axes on which ``aiq.aiq_table`` judges the single-call routers: columns strategy, pool, aiq."""
    families = rows.assign(strategy=strategy_family(rows["strategy"]))
    return pd.DataFrame(
        [
            {
                "strategy": family,
                "pool": pool,
                "aiq": aiq(group["mean_cost"], group["accuracy"], prices.min(), prices.max()),
            }
            for (family, pool), group in families.groupby(["strategy", "pool"], sort=False)
        ]
    )


def _on_training(strategy, letters: pd.DataFrame, gold: pd.Series) -> tuple[float, float]:
    """A strategy's mean cost and accuracy on the training rows ``letters``: a learned cascade's are the
    out-of-fold ones its setting was chosen by (its scorer was fitted on these rows); the others answer them."""
    if isinstance(strategy, BudgetedCascade):
        return strategy.training_cost, strategy.training_accuracy
    answers, correct = _correct(strategy, letters, gold)
    return float(answers["cost"].mean()), float(correct.mean())


def cheaper_win(
    strategies,
    train_letters: pd.DataFrame,
    test_letters: pd.DataFrame,
    gold: pd.Series,
    prices: pd.Series,
    reference: str,
    seed: int,
    price_shares=(0.25,),
    margin: float = 0.01,
) -> pd.DataFrame:
    """Does some strategy beat expert ``reference`` alone by ``margin`` or more in accuracy at a mean cost
    of a share of its price or less? One row per share of ``price_shares`` (``GOAL_COLUMNS``). The strategy is
    chosen on the training split: the best training accuracy among those whose training mean cost is within
    the limit. The test split only reports it: its mean cost and accuracy, its paired difference to the
    reference over the same questions with a seeded 95% bootstrap interval, and ``met`` (the difference
    reaches the margin). Measured, not asserted."""
    training = [_on_training(strategy, train_letters, gold) for strategy in strategies]
    reference_correct = (test_letters[reference] == _gold(gold, test_letters.index)).to_numpy(np.float64)
    rows = []
    for share in price_shares:
        limit = share * float(prices[reference])
        row = {
            "price_share": share,
            "reference": reference,
            "reference_accuracy": float(reference_correct.mean()),
            "n_questions": len(reference_correct),
            "cost_limit": limit,
            "margin": margin,
            "met": False,
        }
        within = [i for i, (cost, _) in enumerate(training) if cost <= limit + 1e-9]
        if within:
            best = max(within, key=lambda i: training[i][1])  # the first listed among equals
            answers, correct = _correct(strategies[best], test_letters, gold)
            diff = correct - reference_correct
            low, high = bootstrap_ci(diff, seed)
            row |= {
                "strategy": strategies[best].name,
                "budget": float(strategies[best].budget),
                "training_cost": training[best][0],
                "training_accuracy": training[best][1],
                "mean_cost": float(answers["cost"].mean()),
                "accuracy": float(correct.mean()),
                "difference": float(diff.mean()),
                "diff_ci_low": low,
                "diff_ci_high": high,
                "met": bool(diff.mean() >= margin),
            }
        rows.append(row)
    return pd.DataFrame(rows, columns=GOAL_COLUMNS)


def strategy_suite(
    letters: pd.DataFrame,
    gold: pd.Series,
    prices: pd.Series,
    proba: pd.DataFrame,
    train: pd.Index,
    n_budgets: int,
    seed: int,
) -> list:
    """The strategies measured on a pool (``letters``: its served experts): majority votes of the 3, 5
    and 7 cheapest experts, listed best first by training accuracy; agreement cascades of the two and
    the three cheapest, escalating to each of the two most accurate experts on the training rows; and
    the learned cascade fitted on the ``train`` rows at ``n_budgets`` budgets over the pool's price range.
    Every choice is made on training rows; the test rows only score the result."""
    from .aiq import budget_grid

    prices = prices[letters.columns]
    train_letters = letters.loc[letters.index.isin(train)]
    accuracy = train_letters.eq(_gold(gold, train_letters.index), axis=0).mean()
    best_first = accuracy.sort_values(ascending=False, kind="stable").index.tolist()
    by_price = prices.sort_values(kind="stable").index.tolist()
    strategies = [
        MajorityVote([e for e in best_first if e in by_price[:k]], prices) for k in (3, 5, 7) if k <= len(by_price)
    ]
    strong = [e for e in best_first if e not in by_price[:3]][:2]
    strategies += [
        AgreementCascade(cheap, target, quorum, prices)
        for target in strong
        for cheap, quorum in ((by_price[:2], 2), (by_price[:3], 2), (by_price[:3], 3))
    ]
    cascade = LearnedCascade(proba[letters.columns], prices, seed=seed).fit(train_letters, gold)
    return strategies + [cascade.at_budget(b) for b in budget_grid(prices, n_budgets)]
