"""A list task: three names in one comma-delimited element, with parse recovery."""

import pytest

from pytest_rigging.model import CommaDelimitedAnswer


@pytest.fixture
def rig_pipeline(rig_generator, thing):
    return (
        rig_generator.chat(
            {
                "role": "system",
                "content": f"Always respond with {CommaDelimitedAnswer.xml_tags()} tags.",
            }
        )
        .add(f"Give me 3 famous {thing}")
        .until_parsed_as(CommaDelimitedAnswer, attempt_recovery=True, max_rounds=3)
    )


@pytest.mark.parametrize("thing", ["painters", "authors"])
@pytest.mark.rig(runs=3)
async def test_three_names(rig_chat):
    items = rig_chat.last.parse(CommaDelimitedAnswer).items
    assert len(items) == 3, items
