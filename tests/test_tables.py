import numpy as np
import pandas as pd

from leeroo_lib.evaluation.evaluate import TABLE1_COLUMNS
from leeroo_lib.evaluation.tables import percent_with_ci, table1_for_reading


def test_percent_with_ci_reads_as_the_readme_writes_it():
    assert percent_with_ci([0.623, 0.7, np.nan], [0.601, np.nan, np.nan], [0.645, np.nan, np.nan]) == [
        "62.3 [60.1, 64.5]",
        "70.0",
        "-",
    ]
    assert percent_with_ci([0.027], [0.007], [0.046], signed=True) == ["+2.7 [+0.7, +4.6]"]


def test_table1_for_reading_keeps_only_the_columns_that_apply():
    table1 = pd.DataFrame(
        [
            {
                "system": "small",
                "kind": "single",
                "cost_per_1m_usd": 0.2,
                "accuracy": 0.6,
                "ci_low": 0.55,
                "ci_high": 0.65,
                "n_questions": 200,
                "pool": "open",
            },
            {
                "system": "Oracle (open)",
                "kind": "oracle",
                "accuracy": 0.98,
                "ci_low": 0.97,
                "ci_high": 0.99,
                "n_questions": 200,
                "pool": "open",
            },
        ]
    ).reindex(columns=TABLE1_COLUMNS)
    readable = table1_for_reading(table1)
    assert list(readable.columns) == ["system", "pool", "cost (USD / 1M tokens)", "accuracy % [95% CI]", "questions"]
    assert readable["cost (USD / 1M tokens)"].tolist() == ["0.20", "-"]
    assert readable["accuracy % [95% CI]"].tolist() == ["60.0 [55.0, 65.0]", "98.0 [97.0, 99.0]"]
    router = table1.iloc[:1].assign(system="leeroo-open", kind="leeroo", budget=0.6, allocation="global")
    assert table1_for_reading(router)["allocation"].tolist() == ["global"]
