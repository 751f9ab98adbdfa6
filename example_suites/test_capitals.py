"""Capital cities: one-word answers in <answer> tags, 5 samples, 4 must be right. The
cases live in cases/capitals.jsonl, one per line, named by their country."""

import pytest

from pytest_rigging.model import Answer


@pytest.fixture
def rig_pipeline(rig_generator, country):
    return rig_generator.chat(
        [
            {"role": "system", "content": f"Answer in one word between {Answer.xml_tags()} tags."},
            {"role": "user", "content": f"What is the capital of {country}?"},
        ]
    ).until_parsed_as(Answer, max_rounds=3)


@pytest.mark.rig_cases("cases/capitals.jsonl", id="country")
@pytest.mark.rig(runs=5, min_pass=4)
def test_capital(rig_chat, capital):
    assert rig_chat.last.parse(Answer).content.lower() == capital.lower()
