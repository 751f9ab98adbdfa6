"""The library's `Judge`: grading against a rubric (majority, scores, unscored replies),
its templates, pairwise comparison in both orders, and its calls over real HTTP."""

from __future__ import annotations

import pytest

import pytest_rigging as rg
from pytest_rigging.generator.offline import Rule, Script, ScriptedGenerator
from pytest_rigging.judge import TEMPLATES
from tests.conftest import on
from tests.llm_server import LLMServer

PASS = "<reasoning>It names Paris.</reasoning><verdict>pass</verdict>"
FAIL = "<reasoning>It names Lyon.</reasoning><verdict>fail</verdict>"
NO_VERDICT = "I cannot decide."


def judged_by(*rules: tuple[str, list[str]], default: str | None = None) -> ScriptedGenerator:
    """A scripted judge: each rule (a regex on the whole conversation, its replies in turn)."""
    script = Script(
        rules=[Rule(match=match, on="conversation", replies=replies) for match, replies in rules],
        default=default,
    )
    return ScriptedGenerator(model="judge", script=script)


def always(*replies: str) -> ScriptedGenerator:
    """A scripted judge that answers every prompt with `replies` in turn."""
    return judged_by((".", list(replies)))


def refusal(verdict: object, attribute: str) -> str:
    """What reading `attribute` of an unscored verdict raises (`rg.Unscored`), as text."""
    with pytest.raises(rg.Unscored) as caught:
        getattr(verdict, attribute)
    return str(caught.value)


def scored(score: float, verdict: str = "pass") -> str:
    return f"<reasoning>score {score}</reasoning><verdict>{verdict}</verdict><score>{score}</score>"


# grading


async def test_a_pass_and_a_fail_by_what_the_response_says() -> None:
    judge = rg.Judge(
        judged_by((r"\[Response\]\s+Paris", [PASS]), (r"\[Response\]\s+Lyon", [FAIL])),
        "Names the capital of France",
    )
    good = await judge.grade("Paris", input="Capital of France?")
    assert (good.passed, good.unscored, good.score) == (True, False, None)
    assert good.reasoning == "It names Paris."
    assert (good.agreement, good.unstable) == ((1, 1), False)
    bad = await judge.grade("Lyon", input="Capital of France?")
    assert (bad.passed, bad.reasoning, bad.agreement) == (False, "It names Lyon.", (1, 1))


async def test_the_grading_prompt_shows_question_response_rubric_and_format() -> None:
    generator = always(PASS)
    judge = rg.Judge(generator, "Names the capital")
    verdict = await judge.grade("Paris", input="Capital of France?")
    asked = verdict.chats[0].messages[0].content
    assert asked == TEMPLATES["rubric"].format(
        input="Capital of France?",
        output="Paris",
        rubric="Names the capital",
        reference="(not given)",
        format="Answer in exactly this format:\n<reasoning>why, in a few sentences</reasoning>\n"
        "<verdict>pass or fail</verdict>",
    )
    without = await judge.grade("Paris")
    assert "[Question]\n(not given)\n" in without.chats[0].messages[0].content


async def test_a_score_on_the_scale_is_the_median_of_the_runs() -> None:
    judge = rg.Judge(always(scored(4), scored(2), scored(5)), "Rate it", scale=(1, 5), runs=3)
    verdict = await judge.grade("Paris")
    assert (verdict.passed, verdict.score, verdict.agreement) == (True, 4, (3, 3))
    assert "<score>a number from 1 to 5</score>" in verdict.chats[0].messages[0].content


async def test_a_score_outside_the_scale_is_an_unscored_vote() -> None:
    judge = rg.Judge(always(scored(9)), "Rate it", scale=(1, 5))
    verdict = await judge.grade("Paris")
    assert verdict.unscored
    assert verdict.reasoning == "score 9 is outside the scale 1-5"
    assert [v.passed for v in verdict.votes] == [None]
    assert refusal(verdict, "score") == "score 9 is outside the scale 1-5"
    # among other votes, it is left out of the majority and of the median
    mixed = rg.Judge(always(scored(9), scored(2), scored(3)), "Rate it", scale=(1, 5), runs=3)
    verdict = await mixed.grade("Paris")
    assert (verdict.passed, verdict.score, verdict.agreement) == (True, 2.5, (2, 3))
    assert not verdict.unstable


async def test_the_majority_of_three_runs_with_its_agreement() -> None:
    split = await rg.Judge(always(PASS, FAIL, PASS), "r", runs=3).grade("Paris")
    assert (split.passed, split.agreement, split.unstable) == (True, (2, 3), True)
    assert split.reasoning == "It names Paris."  # the majority's reasoning
    assert sorted(str(v.passed) for v in split.votes) == ["False", "True", "True"]
    failing = await rg.Judge(always(FAIL, PASS, FAIL), "r", runs=3).grade("Paris")
    assert (failing.passed, failing.agreement, failing.unstable) == (False, (2, 3), True)
    unanimous = await rg.Judge(always(PASS), "r", runs=3).grade("Paris")
    assert (unanimous.passed, unanimous.agreement, unanimous.unstable) == (True, (3, 3), False)
    assert len(unanimous.chats) == 3
    assert "agreement=2/3, unstable=True" in repr(split)


async def test_an_even_split_is_unscored() -> None:
    verdict = await rg.Judge(always(PASS, FAIL), "r", runs=2).grade("Paris")
    assert verdict.unscored and verdict.unstable
    assert verdict.agreement == (1, 2)
    assert verdict.reasoning == "the judge's runs split evenly (1 pass, 1 fail)"
    assert refusal(verdict, "passed") == "the judge's runs split evenly (1 pass, 1 fail)"
    # an unreadable run leaves the other two to split
    verdict = await rg.Judge(always(PASS, NO_VERDICT, FAIL), "r", runs=3, max_rounds=1).grade("x")
    assert verdict.unscored
    assert verdict.reasoning == "the judge's runs split evenly (1 pass, 1 fail)"
    assert verdict.agreement == (1, 3)


async def test_no_verdict_after_recovery_is_unscored_with_the_reason() -> None:
    generator = always(NO_VERDICT)
    judge = rg.Judge(generator, "r", max_rounds=3)
    verdict = await judge.grade("Paris")
    assert verdict.unscored and not verdict.unstable
    reason = "no verdict in the judge's reply after 3 replies: I cannot decide."
    assert verdict.reasoning == reason
    assert verdict.agreement == (0, 1)
    assert refusal(verdict, "passed") == refusal(verdict, "score") == reason
    assert len(verdict.chats[0].all) == 6  # asked, then two more tries: 3 replies
    assert repr(verdict).startswith("JudgeVerdict(unscored, agreement=0/1, unstable=False")


async def test_a_verdict_read_after_recovery_counts() -> None:
    generator = judged_by(("Rewrite your whole message", [PASS]), (".", [NO_VERDICT]))
    verdict = await rg.Judge(generator, "r").grade("Paris")
    assert (verdict.unscored, verdict.passed) == (False, True)
    assert verdict.chats[0].recovery_rounds == 1


async def test_yes_and_no_read_as_pass_and_fail() -> None:
    yes = await rg.Judge(always("<verdict>Yes.</verdict>"), "r").grade("x")
    no = await rg.Judge(always("<verdict>incorrect</verdict>"), "r").grade("x")
    assert (yes.passed, no.passed) == (True, False)
    assert yes.reasoning == ""


@pytest.mark.parametrize(
    "said", ["pass or fail", "not sure", "None", "Not applicable", "failed to decide", "passable"]
)
async def test_anything_but_one_verdict_word_is_no_verdict(said: str) -> None:
    """An echoed format, a hedge or a sentence is no decision: asked again, then unscored,
    never read as a pass or a fail by its first letters."""
    verdict = await rg.Judge(always(f"<verdict>{said}</verdict>"), "r", max_rounds=2).grade("x")
    assert verdict.unscored
    assert refusal(verdict, "passed") == (
        f"no verdict in the judge's reply after 2 replies: <verdict>{said}</verdict>"
    )


async def test_an_infrastructure_failure_raises_judge_error(llm_server: LLMServer) -> None:
    llm_server.fail_next(10, status=500)
    judge = rg.Judge("openai!judge-model,max_retries=1,backoff=0", "r")
    with pytest.raises(rg.JudgeError) as caught:
        await judge.grade("Paris")
    assert isinstance(caught.value, rg.GenerationError)
    assert caught.value.reason == "server"
    assert str(caught.value).startswith(
        f"judge {judge.id}: server error from openai!judge-model after 2 attempts: "
    )
    assert len(llm_server.requests) == 2


# templates


async def test_the_reference_template_shows_the_reference() -> None:
    judge = rg.Judge(always(PASS), "Same capital as the reference", template="reference")
    prompt = judge.prompt("Paris", input="Capital of France?", reference="Paris, France")
    assert "[Reference answer]\nParis, France\n\n[Response]\nParis\n" in prompt
    assert judge.template_name == "reference"
    verdict = await judge.grade("Paris", reference="Paris, France")
    assert verdict.chats[0].messages[0].content.count("Paris, France") == 1


def test_the_reference_template_without_a_reference() -> None:
    judge = rg.Judge(always(PASS), "r", template="reference")
    with pytest.raises(ValueError) as caught:
        judge.prompt("Paris")
    assert str(caught.value) == "the 'reference' template compares with a reference: give one"


async def test_grading_with_the_reference_template_and_no_reference_raises() -> None:
    judge = rg.Judge(always(PASS), "r", template="reference")
    with pytest.raises(ValueError, match=r"^the 'reference' template compares with a reference"):
        await judge.grade("Paris")


def test_the_answer_first_template_asks_for_an_answer_before_the_response() -> None:
    prompt = rg.Judge(always(PASS), "r", template="answer_first").prompt("Paris", input="Q?")
    assert prompt.index("<answer></answer>") < prompt.index("[Response]\nParis")
    assert prompt.index("[Question]\nQ?") < prompt.index("<answer></answer>")


async def test_a_custom_template() -> None:
    judge = rg.Judge(always(PASS), "Be brief", template="Grade {output} on {rubric}.\n{format}")
    assert judge.template_name == "custom"
    verdict = await judge.grade("Paris")
    assert verdict.chats[0].messages[0].content.startswith("Grade Paris on Be brief.\nAnswer in")
    assert verdict.passed


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "Grade {rubric}. {format}",
            "the judge's template must name {output}: the response it grades",
        ),
        (
            "{output} {bogus} {also}",
            "the judge's template names {also}, {bogus}: it may name {format}, {input}, "
            "{output}, {reference}, {rubric}",
        ),
        (
            "rubrik",
            "unknown judge template 'rubrik': name one of rubric, reference, answer_first, "
            "or give a template that names {output}",
        ),
        ("{output", "the judge's template can't be read: expected '}' before end of string"),
    ],
)
def test_a_template_that_cannot_be_used(template: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        rg.Judge(always(PASS), "r", template=template)
    assert str(caught.value) == message


async def test_the_rubric_names_values() -> None:
    judge = rg.Judge(always(PASS), "Names {capital} and nothing else")
    verdict = await judge.grade("Paris", values={"capital": "Paris", "unused": 1})
    assert "[Rubric]\nNames Paris and nothing else\n" in verdict.chats[0].messages[0].content
    # without values the rubric is as written
    assert "[Rubric]\nNames {capital} and nothing else\n" in judge.prompt("Paris")


async def test_a_value_the_rubric_names_is_missing() -> None:
    judge = rg.Judge(always(PASS), "Names {capital}")
    with pytest.raises(ValueError) as caught:
        await judge.grade("Paris", values={"country": "France"})
    assert str(caught.value) == "the rubric names {capital}, which the values don't give"


# pairwise

FIRST = "<reasoning>The first reads better.</reasoning><better>A</better>"


async def test_a_judge_that_prefers_the_first_shown_gives_a_flipped_tie() -> None:
    judge = rg.Judge(always(FIRST), "Which is more direct?")
    verdict = await judge.compare("Paris", "It is Paris.", input="Capital of France?")
    assert (verdict.winner, verdict.flipped, verdict.unscored) == ("tie", True, False)
    assert verdict.orders == ("a", "b")
    assert verdict.passed  # a tie: a is not worse
    assert verdict.score is None
    assert verdict.agreement == (2, 2) and not verdict.unstable
    assert verdict.reasoning == "The first reads better."
    first, second = (chat.messages[0].content for chat in verdict.chats)
    assert "[Response A]\nParis\n\n[Response B]\nIt is Paris.\n" in first
    assert "[Response A]\nIt is Paris.\n\n[Response B]\nParis\n" in second


def better_is_paris() -> ScriptedGenerator:
    """A consistent judge: whichever response says just "Paris" is better."""
    return judged_by(
        (r"\[Response A\]\nParis\n", ["<better>A</better>"]),
        (r"\[Response B\]\nParis\n", ["<better>B</better>"]),
        default="<better>tie</better>",
    )


async def test_a_consistent_judge_gives_a_winner() -> None:
    judge = rg.Judge(better_is_paris(), "r")
    won = await judge.compare("Paris", "Lyon")
    assert (won.winner, won.flipped, won.orders, won.passed) == ("a", False, ("a", "a"), True)
    lost = await judge.compare("Lyon", "Paris")
    assert (lost.winner, lost.flipped, lost.orders, lost.passed) == ("b", False, ("b", "b"), False)
    even = await judge.compare("Lyon", "Rome")
    assert (even.winner, even.flipped, even.passed) == ("tie", False, True)
    assert repr(won).startswith("PairwiseVerdict(winner='a', flipped=False, agreement=2/2")


async def test_compare_shows_the_reference_with_the_rubric() -> None:
    verdict = await rg.Judge(always(FIRST), "Closer to {c}").compare(
        "a", "b", reference="Paris", values={"c": "the reference"}
    )
    assert "[Rubric]\nCloser to the reference\n\nReference answer: Paris\n" in (
        verdict.chats[0].messages[0].content
    )


async def test_no_preference_is_unscored() -> None:
    verdict = await rg.Judge(always(NO_VERDICT), "r", max_rounds=1).compare("Paris", "Lyon")
    assert verdict.unscored and not verdict.flipped
    assert verdict.reasoning == "the judge's reply named no better response"
    assert verdict.orders == (None, None)
    assert refusal(verdict, "winner") == "the judge's reply named no better response"
    assert refusal(verdict, "passed") == "the judge's reply named no better response"


async def test_compare_runs_each_order_runs_times() -> None:
    judge = rg.Judge(better_is_paris(), "r", runs=3)
    verdict = await judge.compare("Paris", "Lyon")
    assert len(verdict.chats) == 6
    assert (verdict.winner, verdict.agreement) == ("a", (6, 6))


# identity, metadata, arguments


def test_the_id_names_the_model_and_what_it_is_asked() -> None:
    judge = rg.Judge("echo!judge", "Names the capital")
    assert judge.id == f"echo!judge #{judge.hash[:8]}"
    assert rg.Judge("echo!judge", "Names the capital").id == judge.id
    others = [
        rg.Judge("echo!judge", "Names the capital and nothing else"),
        rg.Judge("echo!judge", "Names the capital", template="answer_first"),
        rg.Judge("echo!judge", "Names the capital", scale=(1, 5)),
        rg.Judge("echo!other", "Names the capital"),
    ]
    assert len({judge.id, *(other.id for other in others)}) == 5
    # runs, like what is graded, is not part of what the judge is asked
    assert rg.Judge("echo!judge", "Names the capital", runs=3).id == judge.id
    assert repr(judge) == f"Judge({judge.id!r}, template='rubric', runs=1)"


def test_the_id_hides_a_key() -> None:
    judge = rg.Judge("openai!m,api_key=sk-secret-0123456789abcdef", "r")
    assert "sk-secret" not in judge.id


async def test_the_id_does_not_depend_on_the_output() -> None:
    judge = rg.Judge(always(PASS), "r")
    before = judge.id
    first = await judge.grade("Paris")
    second = await judge.grade("Lyon, certainly not Paris")
    assert judge.id == before
    assert {c.metadata["judge"] for c in [*first.chats, *second.chats]} == {before}


async def test_every_judge_chat_carries_its_judge() -> None:
    judge = rg.Judge(always(FIRST), "r", runs=2)
    verdict = await judge.compare("a", "b")
    assert [c.metadata.get("judge") for c in verdict.chats] == [judge.id] * 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rubric": ""}, "a judge needs a rubric: the text it grades against"),
        ({"rubric": "  \n"}, "a judge needs a rubric: the text it grades against"),
        ({"runs": 0}, "runs must be a whole number of at least 1, got 0"),
        ({"runs": True}, "runs must be a whole number of at least 1, got True"),
        ({"runs": 1.5}, "runs must be a whole number of at least 1, got 1.5"),
        ({"max_rounds": 0}, "max_rounds must be at least 1, got 0"),
        ({"scale": (5, 1)}, "scale must be (low, high) with low < high, got (5, 1)"),
        ({"scale": (3, 3)}, "scale must be (low, high) with low < high, got (3, 3)"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"rubric": "r", **kwargs}
    with pytest.raises(ValueError) as caught:
        rg.Judge(always(PASS), **arguments)  # type: ignore[arg-type]
    assert str(caught.value) == message


# over real HTTP

VERDICTS = {"Paris": PASS, "Lyon": FAIL}


def graded_by_server(server: LLMServer) -> None:
    for answer, reply in VERDICTS.items():
        server.add_rule(rf"\[Response\]\s+{answer}\b", reply)


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-haiku-20240307"])
async def test_a_judge_over_http_gives_the_scripted_verdicts(
    llm_server: LLMServer, model: str
) -> None:
    graded_by_server(llm_server)
    scripted = rg.Judge(
        judged_by(*((rf"\[Response\]\s+{a}\b", [r]) for a, r in VERDICTS.items())), "r", runs=3
    )
    served = rg.Judge(on("native", f"{model},max_retries=0"), "r", runs=3)
    assert served.id.startswith(("openai!gpt-4o #", "anthropic!claude-3-haiku-20240307 #"))
    for answer in ("Paris", "Lyon"):
        over_http = await served.grade(answer, input="Capital of France?")
        offline = await scripted.grade(answer, input="Capital of France?")
        assert over_http == offline
        assert over_http.agreement == (3, 3)
    assert len(llm_server.requests) == 6
    asked = {served.prompt(a, input="Capital of France?") for a in VERDICTS}
    assert {r.last_user for r in llm_server.requests} == asked
