"""A yes/no classifier: is the review positive? Sarcasm is where models slip."""

import pytest

from pytest_rigging.model import YesNoAnswer

REVIEWS = [
    ("I absolutely loved it, would buy again.", True),
    ("It broke after a day.", False),
    ("Great, another charger that charges nothing.", False),
]


@pytest.fixture
def rig_pipeline(rig_generator, review):
    return rig_generator.chat(
        f"Is this review positive? Answer {YesNoAnswer.xml_example()}.\n\nReview: {review}"
    ).until_parsed_as(YesNoAnswer, max_rounds=2)


@pytest.mark.parametrize(("review", "positive"), REVIEWS, ids=["loved", "broke", "sarcastic"])
@pytest.mark.rig(runs=5, min_pass=4)
def test_sentiment(rig_chat, positive):
    assert rig_chat.last.parse(YesNoAnswer).boolean is positive
