"""The README and docs/ against results/: every table and every number in prose is what `leeroo report` writes
from the files, so a changed number, in a file or on a page, fails here; and no number of a measurement stands
in prose outside a generated block."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import yaml

from leeroo_lib.config import ROOT, Profile, load_profile
from leeroo_lib.evaluation.report import BLOCK, VALUE, fill, pages, tables

PAGES = pages(ROOT)
# What a number in prose may be without a file behind it: part of a name (a model, a paper's figure, a version, a
# notebook, a file), a setting the profile or the command line fixes, or a count of things the project defines.
NAMED = re.compile(
    "|".join(
        [
            r"(?:Figures?|Tables?|Eq\.|Equation|[Ss]ections?|Algorithm|[Nn]otebooks?|[Cc]laims?|C)\s?\d[\d.,\- ]*",
            r"\b\d+(?:\.\d+)?(?:[BMk]\b|B-|x\d|-shot|-bit|-option|-class|-core| cores| GiB| CPU| GPU| bits?)",
            r"(?:Gemini|Llama|Python|Claude|GPT|Phi|Qwen|Jamba|Gemma|Mistral|Mixtral|Yi|torch)[- ]\d[\w.-]*",
            r"[A-Za-z]+[-_]?v?\d[\w.]*",  # names with digits: Llama-2-70B, MiniLM-L6, gpt-4o, torch==2.13.0
            r"\b[0-9a-f]*[a-f][0-9a-f]*\b",  # commits
            r"\b95% ",  # the intervals' level
            r"\b(?:200|400|401|404|413|429|499|503)\b",  # HTTP status codes
            r"\b0[1-8]\b|\b\d\d_\w+|\d+\.\.\d+",  # notebooks
            r"\d+(?:\.\d+){2,}|127\.0\.0\.1|:\d{4}\b|arXiv \S+|\b20[12]\d\b",  # versions, addresses, ports, years
        ]
    )
)
NUMBER = re.compile(r"[-+]?\$?\d[\d,]*(?:\.\d+)?%?")
# a number the profiles fix (a budget, a question count, a seed) is a setting, not a measurement
SETTINGS = {
    float(n)
    for path in (ROOT / "configs").rglob("*.yaml")
    for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", path.read_text())
}


def prose(text: str) -> str:
    """``text`` without what is not prose: generated blocks and values, code, links' targets, comments."""
    for pattern in (BLOCK, VALUE, re.compile(r"```.*?```", re.DOTALL), re.compile(r"<!--.*?-->", re.DOTALL)):
        text = pattern.sub(" ", text)
    text = re.sub(r"`[^`]*`", " ", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def loose_numbers(text: str) -> list[str]:
    """The numbers of ``text``'s prose that neither a generated block nor a name accounts for."""
    kept = NAMED.sub(" ", prose(text))
    return [n for n in NUMBER.findall(kept) if _plain(n) not in SETTINGS]


def _plain(number: str) -> float | None:
    digits = number.strip("+$%,").replace(",", "")
    return None if number.startswith("-") or number.endswith("%") else float(digits)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_number_on_the_page_is_the_files(page):
    text = page.read_text()
    assert fill(text, ROOT / "results", load_profile("cpu")) == text, "run `leeroo report --profile cpu`"
    assert loose_numbers(text) == [], "numbers in prose with no file behind them: put them in a value block"


def test_a_changed_number_fails_in_a_table_and_in_prose(tmp_path):
    readme = (ROOT / "README.md").read_text()
    cfg = load_profile("cpu")
    results, data = tmp_path / "results", tmp_path / "data"
    results.mkdir()
    data.mkdir()
    for path in (ROOT / "results").glob("*.csv"):
        (results / path.name).write_text(path.read_text())
    (data / "claims.csv").write_text((ROOT / "data" / "claims.csv").read_text())
    assert fill(readme, results, cfg) == readme
    claims = pd.read_csv(ROOT / "results" / "claims.csv")
    claims.loc[claims["measured"].notna().idxmax(), "measured"] += 0.1
    claims.to_csv(results / "claims.csv", index=False)
    assert fill(readme, results, cfg) != readme  # a table
    (results / "claims.csv").write_text((ROOT / "results" / "claims.csv").read_text())
    ledger = pd.read_csv(ROOT / "data" / "claims.csv")
    ledger.loc[(ledger["id"] == "C5") & (ledger["benchmark"] == "mmlu"), "margin"] = 1.6
    ledger.to_csv(data / "claims.csv", index=False)
    assert fill(readme, results, cfg) != readme  # a prose value
    assert fill(readme.replace("1.52", "1.6", 1), ROOT / "results", cfg) != readme.replace("1.52", "1.6", 1)


def test_prose_numbers_are_caught():
    assert loose_numbers("Leeroo gains +4.5 points [+2.8, +6.1] over 2,074 questions.") == [
        "+4.5",
        "+2.8",
        "+6.1",
        "2,074",
    ]
    assert loose_numbers("Figure 4 and Eq. 1 on Llama-2-70B, 5-shot, 2 cores, notebook 04, `make test` in 9 min") == [
        "9"
    ]
    assert loose_numbers("<!-- value:x.csv|a == 1|b|{:.1f} -->+4.5<!-- /value --> points") == []
    with pytest.raises(ValueError, match="selects 0 rows"):
        fill("<!-- value:claims.csv|id == 'nope'|measured|{:.1f} -->1<!-- /value -->", ROOT / "results", None)


def test_fill_names_what_is_wrong(tmp_path):
    cfg = load_profile("cpu")
    with pytest.raises(ValueError, match=r"README blocks \['nope'\] name no table"):
        fill("<!-- results:nope -->\nx\n<!-- /results -->", ROOT / "results", cfg)
    # another profile's results lack rows a page reports: the error says which and what to run
    table1 = pd.read_csv(ROOT / "results" / "table1.csv")
    table1[~((table1["system"] == "leeroo-open") & (table1["budget"] == 0.4))].to_csv(tmp_path / "table1.csv")
    with pytest.raises(ValueError, match=r"no row for leeroo in pool 'open' at budget 0.4: the README reports"):
        fill("<!-- results:mmlu-table1 -->\n<!-- /results -->", tmp_path, cfg)


def renamed_profile(names: dict[str, str]) -> Profile:
    """The cpu profile with pools renamed (``names``: old name -> new) wherever it names them."""
    settings = yaml.safe_load((ROOT / "configs" / "cpu.yaml").read_text())
    evaluation, selfplay = settings["evaluation"], settings["selfplay"]
    settings["pools"] = {names.get(n, n): pool for n, pool in settings["pools"].items()}
    evaluation["highlight"] = {names.get(n, n): budget for n, budget in evaluation["highlight"].items()}
    named = [*evaluation["goals"], *evaluation["strategies"], *selfplay["curves"], selfplay["new_expert"], selfplay]
    for entry in named:
        entry["pool"] = names.get(entry["pool"], entry["pool"])
    return Profile.model_validate(settings)


def test_the_pages_read_which_pools_to_show_from_the_profile_not_their_names(tmp_path):
    """Renamed pools (and the results renamed with them) give the same tables: each block finds its pools by what
    they are (the paper's pools, a benchmark's, its strategies' pool), the paper's Table 1 rows by
    data/paper_counterparts.csv in whichever pools stand for the paper's."""
    names = {"open": "oss", "mix": "blend", "frontier": "helm", "pro-all": "pro-every"}
    table1 = pd.read_csv(ROOT / "results" / "table1.csv")
    table1["pool"] = table1["pool"].replace(names)
    table1["system"] = table1["system"].replace({f"leeroo-{old}": f"leeroo-{new}" for old, new in names.items()})
    table1.to_csv(tmp_path / "table1.csv", index=False)
    strategies = pd.read_csv(ROOT / "results" / "strategies.csv")
    strategies.assign(pool=strategies["pool"].replace(names)).to_csv(tmp_path / "strategies.csv", index=False)
    blocks = ["mmlu-table1", "mmlu-routers", "frontier-experts", "frontier-strategies", "mmlu-pro-routers"]
    blocks += ["mmlu-pro-experts", "mmlu-pro-strategies"]
    ours, renamed = tables(ROOT / "results", load_profile("cpu")), tables(tmp_path, renamed_profile(names))
    for block in blocks:
        assert re.findall(r"\d+\.\d+", renamed[block]()) == re.findall(r"\d+\.\d+", ours[block]()), block
    assert "| leeroo-oss, budget 0.4 |" in renamed["mmlu-table1"]()
    swapped = renamed_profile(names)
    swapped.pools["oss"].paper_pool, swapped.pools["blend"].paper_pool = None, "open"
    with pytest.raises(ValueError, match=r"no pool of the profile stands for the paper's pool 'mix'"):
        tables(tmp_path, swapped)["mmlu-table1"]()
