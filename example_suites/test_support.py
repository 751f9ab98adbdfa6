"""Support replies judged by a model: a reply passes when the judge finds that it tells
the customer the concrete next step, politely and briefly. The judge (ini `rig_judge`)
is a simulated one too; its agreement with people is measured on the labelled examples
in judge-labels.jsonl (ini `rig_judge_labels`) and shown beside its verdicts."""

import pytest


@pytest.fixture
def rig_pipeline(rig_generator, question):
    return rig_generator.chat(
        [
            {"role": "system", "content": "You answer customers of an online shop."},
            {"role": "user", "content": question},
        ]
    )


@pytest.mark.rig_cases("cases/support.jsonl", id="topic")
@pytest.mark.rig(runs=3, min_pass=2)
@pytest.mark.rig_judge(
    "Tells the customer {must}, politely, in at most two sentences", judge_runs=3
)
def test_support_reply(rig_chat, rig_verdict):
    assert rig_verdict.passed, rig_verdict.reasoning
