"""The seed's joke flow: a map step asks a follow-up on jokes about certain animals."""

import pytest

import pytest_rigging as rg

ANIMALS = ["cat", "dog", "cow", "mouse"]


async def check_animal(chats: list[rg.Chat]) -> list[rg.Chat]:
    return [
        await chat.continue_("Why did you pick that animal?").meta(questioned=True).run()
        if any(a in chat.last.content.lower() for a in ANIMALS)
        else chat
        for chat in chats
    ]


@pytest.fixture
def rig_pipeline(rig_generator):
    return rig_generator.chat("Tell me a joke about an animal.").map(check_animal)


@pytest.mark.rig(runs=3)
def test_follow_up_only_where_an_animal_is_named(rig_chats):
    for chat in rig_chats:
        joke = chat.all[1].content.lower()
        named = any(a in joke for a in ANIMALS)
        assert chat.metadata.get("questioned", False) is named
        assert len(chat) == (4 if named else 2)
