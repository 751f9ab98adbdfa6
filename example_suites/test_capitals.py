"""Capital cities: one-word answers in <answer> tags, 5 samples, 4 must be right."""

import pytest

from pytest_rigging.model import Answer

CASES = [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima")]


@pytest.fixture
def rig_pipeline(rig_generator, country):
    return rig_generator.chat(
        [
            {"role": "system", "content": f"Answer in one word between {Answer.xml_tags()} tags."},
            {"role": "user", "content": f"What is the capital of {country}?"},
        ]
    ).until_parsed_as(Answer, max_rounds=3)


@pytest.mark.parametrize(("country", "capital"), CASES)
@pytest.mark.rig(runs=5, min_pass=4)
def test_capital(rig_chat, capital):
    assert rig_chat.last.parse(Answer).content.lower() == capital.lower()
