"""The `leeroo` command line: each subcommand's help, `leeroo route` from a file to the routes, `leeroo cv`'s checks."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from leeroo_lib import cli, config
from leeroo_lib.config import load_profile
from leeroo_lib.data.benchmarks import read_questions
from leeroo_lib.routing.orchestrator import Orchestrator
from leeroo_lib.routing.policies.baselines import SubjectPolicy

SUBCOMMANDS = ["check-profile", "score", "route", "serve", "cv", "report"]
COSTS = pd.Series({"cheap": 0.1, "dear": 1.0})


def test_leeroo_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "leeroo_lib.cli", "--help"], capture_output=True, text=True, check=True)
    assert all(name in out.stdout for name in SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([name, "--help"])
    assert stop.value.code == 0 and f"usage: leeroo {name}" in capsys.readouterr().out


@pytest.fixture
def saved(tmp_path, monkeypatch):
    """The smoke profile writing under tmp_path, with an orchestrator saved where notebook 04 puts it:
    the subject baseline, which routes astronomy to the cheap expert and algebra to the dear one."""
    cfg = load_profile("smoke").model_copy(update={"output_dir": str(tmp_path)})
    monkeypatch.setattr(config, "load_profile", lambda name=None: cfg)
    train = pd.DataFrame({"subject": ["astronomy"] * 4 + ["algebra"] * 4, "idx": range(8)})
    scores = pd.DataFrame(
        {"cheap": [1, 1, 1, 1, 0, 0, 0, 0], "dear": [0, 0, 0, 0, 1, 1, 1, 1]},
        index=pd.MultiIndex.from_frame(train),
        dtype=float,
    )
    Orchestrator(SubjectPolicy().fit(train, scores), COSTS, pools={"both": ["cheap", "dear"]}).save(
        cfg.artifact("orchestrator")
    )
    return tmp_path


def test_route_reads_a_jsonl_file_and_writes_each_questions_expert(saved, capsys):
    questions = saved / "mine.jsonl"
    rows = [
        {"question": "Which planet is closest to the Sun?", "choices": ["Venus", "Mercury"], "subject": "astronomy"},
        {"question": "Is x^2 - 1 irreducible over Q?", "choices": ["yes", "no"], "subject": "algebra"},
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows))
    out = saved / "routes.csv"
    args = ["route", "--questions", str(questions), "--pool", "both", "--output", str(out)]
    assert cli.main([*args, "--budget", "0.55"]) == 0
    routes = pd.read_csv(out)
    assert list(routes["expert"]) == ["cheap", "dear"] and routes["cost_per_1m_usd"].mean() == pytest.approx(0.55)
    assert cli.main([*args, "--budget", "0.1"]) == 0  # only the cheap one fits
    assert list(pd.read_csv(out)["expert"]) == ["cheap", "cheap"]
    assert cli.main([*args, "--budget", "0.05"]) == 2
    assert "below the cheapest allowed expert, cheap" in capsys.readouterr().err


def test_a_questions_file_without_choices_is_named(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("question\nWhat is 2 + 2?\n")
    with pytest.raises(ValueError, match=r"mine\.csv lacks the column\(s\) \['choices'\]"):
        read_questions(path)
    path.write_text('question,choices\nWhat is 2 + 2?,"[""4"", ""5""]"\n')
    read = read_questions(path)
    assert read.loc[0, "choices"] == ["4", "5"] and read.loc[0, "subject"] == "" and len(read.loc[0, "qkey"]) == 16


def test_cv_names_a_goal_the_profile_does_not_have(capsys):
    assert cli.main(["cv", "--profile", "smoke", "--goal", "9"]) == 2
    assert "goal 9 is not one of the profile's evaluation.goals (0 to 3)" in capsys.readouterr().err


def test_check_profile_names_a_compared_policy_no_class_registers(tmp_path, monkeypatch, capsys):
    smoke = yaml.safe_load((config.CONFIG_DIR / "smoke.yaml").read_text())
    smoke["name"] = "mine"
    smoke["policy"]["compare"] = ["subject-best", "mf", "leeroo-stacked", "my-policy"]
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(smoke))
    monkeypatch.setattr(config.loader, "CONFIG_DIR", tmp_path)
    assert load_profile("mine").policy.compared == ["subject-best", "mf", "leeroo-stacked", "my-policy"]
    assert cli.main(["check-profile", "mine"]) == 2
    assert "unknown policy 'my-policy'; known policies:" in capsys.readouterr().err
