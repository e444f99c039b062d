"""benchmarks/sweep_training.py's CSV round trip and --resume guard (the sweep itself is a benchmark, not a test)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from helpers import REPO

SCRIPT = REPO / "benchmarks" / "sweep_training.py"  # the repository's, also when the installed wheel is tested


@pytest.fixture
def sweep(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("sweep_training", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "OUT", tmp_path)
    return module


def test_rows_of_both_formats_and_the_zero_shot_row_survive_a_round_trip(sweep, tmp_path):
    # a row from before the steps and cpu columns, then a new one: the header is every row's columns
    (tmp_path / "methods.csv").write_text(
        "method,learning_rate,trainable,saved,train_loss,test_loss,test_accuracy,seconds\n"
        "P-Tuning v2 (20 tokens),0.03,230400,230400,0.16,0.19,0.6615,72.4\n"
    )
    rows = sweep.read_csv("methods")
    assert rows[0]["steps"] == 40 and rows[0]["trainable"] == 230400 and rows[0]["train_loss"] == 0.16
    rows.append({**rows[0], "method": "Prefix Tuning (20 tokens)", "steps": 80, "cpu": "AMD EPYC"})
    rows.append(
        {"method": "Zero-shot (label likelihood)", "learning_rate": 0, "trainable": 0, "saved": 0, "train_loss": "",
         "test_loss": "", "test_accuracy": 0.5, "seconds": 0.0, "steps": "", "cpu": "AMD EPYC"}
    )  # fmt: skip
    sweep.write_csv("methods", rows)
    back = sweep.read_csv("methods")
    assert [r["steps"] for r in back] == [40, 80, ""]
    assert back[1]["cpu"] == "AMD EPYC" and back[0]["cpu"] == ""  # the old row has no CPU recorded
    assert back[2]["train_loss"] == "" and back[2]["test_accuracy"] == 0.5


def test_resume_refuses_to_mix_step_budgets_before_loading_anything(sweep, tmp_path, monkeypatch, capsys):
    sweep.write_csv("training_sweep", [{"variant": "P-Tuning v2", "learning_rate": 0.03, "seed": 0, "steps": 80}])
    monkeypatch.setattr(sweep, "load_base_model", lambda: pytest.fail("loaded the model before refusing"))
    monkeypatch.setattr(sys, "argv", ["sweep_training.py", "--resume", "--out", str(tmp_path), "--steps", "40"])
    with pytest.raises(SystemExit) as exit_info:
        sweep.main()
    assert exit_info.value.code == 2
    assert "holds runs of [80] steps; --resume with --steps 40 would mix budgets" in capsys.readouterr().err
