"""The run says what is in force: the start-up print, config.json with its history, schedules at every tick."""

import json

import pytest
from conftest import MemDataset, tiny_run_config

from ganforge.training.config import TrainConfig
from ganforge.training.loop import train
from ganforge.training.stats import read_stats


def cfg_for(tmp_path, **kw):
    return tiny_run_config(tmp_path, **{"kimg": 0.032, "snap": 0.016, "tick": 0.016, **kw})


def test_a_resume_that_changes_lr_and_gamma_shows_everywhere(tmp_path):
    first = []
    state = train(cfg_for(tmp_path, freeze="mapping"), MemDataset(), log=first.append)
    text = "\n".join(first)
    assert "Preset tiny: stylegan2 tiny at 16x16" in text and "Batch 8 (8 per process × 1)" in text
    assert "G lr 0.002, D lr 0.002" in text and "γ 0.1" in text and "Augmentation ada" in text
    assert "frozen: 4 tensors (mapping)" in text
    second = []
    state = train(cfg_for(tmp_path, kimg=0.064, g_lr=0.0001, gamma=5.0), MemDataset(), log=second.append)
    text = "\n".join(second)
    assert "G lr 0.0001" in text and "γ 5" in text and "frozen: none" in text
    assert (
        "Changed since the last start: kimg 0.032 -> 0.064, g_lr 0.002 -> 0.0001, d_lr 0.002 -> 0.0001, "
        "gamma 0.1 -> 5, freeze mapping -> " in text
    )

    doc = json.loads((state.run_dir / "config.json").read_text())
    assert doc["config"]["g_lr"] == 0.0001 and doc["config"]["gamma"] == 5.0 and doc["config"]["freeze"] == ""
    assert doc["history"][0]["started"] and doc["history"][1]["kimg"] == 0.032
    assert doc["history"][1]["changed"]["gamma"] == [0.1, 5.0]
    assert TrainConfig.from_dict(doc["config"]).resolved().g_lr == 0.0001  # config.json is a valid --config.

    stats = read_stats(state.run_dir / "stats.jsonl")
    lr = [(s["kimg"], s["Schedule/g_lr"]) for s in stats]
    assert [v for k, v in lr if k <= 0.032] == [0.002, 0.002] and [v for k, v in lr if k > 0.032] == [0.0001, 0.0001]
    assert {s["Schedule/gamma"] for s in stats if s["kimg"] > 0.032} == {5.0}
    assert [s["Schedule/frozen_tensors"] for s in stats] == [4, 4, 0, 0]
    events = [json.loads(x) for x in (state.run_dir / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "resume" and events[-1]["changed"]["g_lr"] == [0.002, 0.0001]


def test_schedules_are_logged_with_their_value_at_each_tick(tmp_path):
    state = train(
        cfg_for(tmp_path, kimg=0.064, g_lr="0.002,0.001@0.03", style_mixing="linear:0.9,0.1@0.064", resume=None),
        MemDataset(),
        log=lambda *a: None,
    )
    stats = read_stats(state.run_dir / "stats.jsonl")
    assert [s["Schedule/g_lr"] for s in stats] == [0.002, 0.001, 0.001, 0.001]
    mixing = [s["Schedule/style_mixing"] for s in stats]
    # Linear from 0.9 to 0.1 over 0.064 kimg, read at 0.016, 0.032, 0.048 and 0.064 kimg.
    assert mixing == pytest.approx([0.7, 0.5, 0.3, 0.1])
