"""`@pytest.mark.rig_cases`: a test's cases from a data file, as `parametrize` would give
them: every format loads exactly, ids last, selection is deterministic, and every bad
input is one collection error naming the file, the line and the field."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from tests.conftest import collection_error, ini

pytestmark = pytest.mark.plugin

CAPITALS = [
    {"country": "France", "capital": "Paris"},
    {"country": "Japan", "capital": "Tokyo"},
    {"country": "Peru", "capital": "Lima"},
]


def jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    """The node ids pytest collects (in its order)."""
    result = pytester.runpytest("--collect-only", "-q", *args)
    return [line for line in result.outlines if "::" in line]


def dumping(marker: str, path: str = "seen.jsonl") -> str:
    """A test module whose test writes each case's fields as the test received them."""
    return textwrap.dedent(
        f"""
        import json
        import pytest

        @pytest.mark.rig_cases({marker})
        def test_case(rig_case):
            with open({path!r}, "a") as out:
                fields = {{k: v for k, v in rig_case.fields.items()}}
                out.write(json.dumps({{"id": rig_case.id, "line": rig_case.line,
                                       "fields": fields}}) + "\\n")
        """
    )


def seen(pytester: pytest.Pytester, path: str = "seen.jsonl") -> list[dict[str, object]]:
    return [json.loads(line) for line in (pytester.path / path).read_text().splitlines()]


def test_a_jsonl_file_parametrizes_the_test_with_its_fields_by_name(
    pytester: pytest.Pytester,
) -> None:
    """Fields the test asks for arrive by name (a field it doesn't ask for is no error);
    ids come from the id field; the whole case is `rig_case`."""
    ini(pytester)
    pytester.makefile(".jsonl", capitals=jsonl(CAPITALS))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rig_cases("capitals.jsonl", id="country")
        def test_capital(capital, rig_case):
            assert rig_case["capital"] == capital
            assert rig_case.data == {"country": rig_case.id, "capital": capital}
            assert capital != "Lima", rig_case.line
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_capital[[]France] PASSED*",
            "*test_capital[[]Japan] PASSED*",
            "*test_capital[[]Peru] FAILED*",
            "E*AssertionError: 3",
        ]
    )


def test_a_csv_loads_exactly_quoted_commas_newlines_and_json_in_cells(
    pytester: pytest.Pytester,
) -> None:
    """RFC 4180 as written by a spreadsheet: every field of every row, as it was (JSON in
    a cell stays text without a case model)."""
    ini(pytester)
    (pytester.path / "cases.csv").write_bytes(
        b"\xef\xbb\xbfid,prompt,expected\r\n"
        b'a1,"Hello, world","line one\r\nline two"\r\n'
        b'a2,"say ""hi""","{""k"": [1, 2], ""s"": ""x,y""}"\r\n'
        b"a3,,plain\r\n"
    )
    pytester.makepyfile(dumping('"cases.csv", id="id"'))
    pytester.runpytest().assert_outcomes(passed=3)
    assert seen(pytester) == [
        {
            "id": "a1",
            "line": 2,
            "fields": {"id": "a1", "prompt": "Hello, world", "expected": "line one\r\nline two"},
        },
        {
            "id": "a2",
            "line": 4,
            "fields": {"id": "a2", "prompt": 'say "hi"', "expected": '{"k": [1, 2], "s": "x,y"}'},
        },
        {"id": "a3", "line": 5, "fields": {"id": "a3", "prompt": "", "expected": "plain"}},
    ]


def test_a_ragged_csv_row_names_its_line(pytester: pytest.Pytester) -> None:
    """The line is the row's first, counted past the newlines inside earlier cells."""
    ini(pytester)
    rows = ["q,a,b\n", '"multi\nline",1,2\n'] + [f"r{n},1,2\n" for n in range(10)]
    rows.append("ragged,1,2,3\n")
    (pytester.path / "cases.csv").write_text("".join(rows))
    pytester.makepyfile(dumping('"cases.csv"'))
    message = collection_error(pytester)
    assert message == (
        "test_a_ragged_csv_row_names_its_line.py::test_case: @pytest.mark.rig_cases: "
        "cases.csv:14: expected 3 fields, got 4"
    )


def test_an_unterminated_csv_quote_names_the_row_it_opens_in(pytester: pytest.Pytester) -> None:
    ini(pytester)
    (pytester.path / "cases.csv").write_text('q,a\nok,1\n"never closed,2\nmore,3\n')
    pytester.makepyfile(dumping('"cases.csv"'))
    assert collection_error(pytester).endswith(
        "cases.csv:3: unterminated quoted field (a quote opened in this row is never closed)"
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"id": "a"}\n{"id": "b",}\n', "cases.jsonl:2: not JSON: Expecting property name"),
        ('{"id": "a"}\n\n["id", "b"]\n', "cases.jsonl:3: expected an object of fields, got list"),
        ('{"id": "a"}\n{"name": "b"}\n', "cases.jsonl:2: no id field 'id' (the row has: name)"),
        ('{"id": "a"}\n{"id": ""}\n', "cases.jsonl:2: the id field 'id' is empty"),
        (
            '{"id": "a"}\n{"id": "b"}\n{"id": "a"}\n',
            "cases.jsonl:3: case id 'a' is also the id of the case on line 1: ids must be unique",
        ),
        ("\n\n", "cases.jsonl: no cases (the dataset is empty)"),
    ],
    ids=["not-json", "not-an-object", "no-id", "empty-id", "duplicate", "empty"],
)
def test_a_bad_jsonl_row_is_one_collection_error_naming_file_and_line(
    pytester: pytest.Pytester, text: str, error: str
) -> None:
    ini(pytester)
    (pytester.path / "cases.jsonl").write_text(text)
    pytester.makepyfile(dumping('"cases.jsonl", id="id"'))
    assert error in collection_error(pytester)


def test_a_file_that_is_not_utf8_names_the_line_where_it_stops_being_text(
    pytester: pytest.Pytester,
) -> None:
    """A spreadsheet exported as Windows-1252 is not read as garbage: one error, its line."""
    ini(pytester)
    (pytester.path / "latin.csv").write_bytes(b"q,a\r\nplain,1\r\ncaf\xe9,2\r\n")
    pytester.makepyfile(dumping('"latin.csv"'))
    assert collection_error(pytester).endswith(
        "latin.csv:3: not UTF-8 text (byte 0xe9): save it as UTF-8"
    )


def test_ids_keep_letters_of_any_script(pytester: pytest.Pytester) -> None:
    """Ids of other scripts stay apart (pytest escapes them, as it does parametrize ids)."""
    ini(pytester)
    rows = [{"id": "東京"}, {"id": "大阪"}, {"id": "café"}, {"id": "cafe"}]
    (pytester.path / "cases.jsonl").write_text(jsonl(rows), encoding="utf-8")
    pytester.makepyfile(dumping('"cases.jsonl", id="id"'))
    pytester.runpytest().assert_outcomes(passed=4)
    assert [case["id"] for case in seen(pytester)] == ["東京", "大阪", "café", "cafe"]


def test_rows_of_the_same_content_without_an_id_field_are_duplicates(
    pytester: pytest.Pytester,
) -> None:
    """An id made of the content: the same row twice is the same case twice."""
    ini(pytester)
    (pytester.path / "cases.jsonl").write_text(jsonl([{"q": "a"}, {"q": "b"}, {"q": "a"}]))
    pytester.makepyfile(dumping('"cases.jsonl"'))
    assert collection_error(pytester).endswith(
        "is also the id of the case on line 1: ids must be unique (two rows with the same content)"
    )


def test_a_json_array_names_the_line_each_object_starts_on(pytester: pytest.Pytester) -> None:
    ini(pytester)
    text = '[\n  {"id": "a", "q": 1},\n\n  {"id": "b",\n   "q": 2},\n  {"id": "c", "q": }\n]'
    (pytester.path / "cases.json").write_text(text)
    pytester.makepyfile(dumping('"cases.json", id="id"'))
    assert collection_error(pytester).endswith(
        "cases.json:6: not JSON: Expecting value (column 20)"
    )
    (pytester.path / "cases.json").write_text(text.replace('"q": }', '"q": 3}'))
    pytester.runpytest().assert_outcomes(passed=3)
    assert [(c["id"], c["line"]) for c in seen(pytester)] == [("a", 2), ("b", 4), ("c", 6)]
    (pytester.path / "cases.json").write_text('{"id": "a"}')
    assert collection_error(pytester).endswith("cases.json:1: expected a JSON array of objects")
    (pytester.path / "cases.json").write_text('[{"id": "a"}]\n[{"id": "b"}]\n')
    assert collection_error(pytester).endswith(
        "cases.json:2: not JSON: text after the array's closing ']'"
    )


@pytest.mark.parametrize(
    ("marker", "error"),
    [
        ('"missing.jsonl"', "missing.jsonl: no such file"),
        ('"cases.txt"', "cases.txt: cannot tell the format from the suffix '.txt'"),
        ('"cases.jsonl", idd="id"', "got an unexpected keyword argument 'idd'"),
        ('"cases.jsonl", limit=0', "limit= must be a whole number >= 1, got 0"),
        ('"cases.jsonl", sample=5', "cases.jsonl: sample=5 is more than the 2 cases read"),
        ('"cases.jsonl", fields="q"', "fields= must be a list of field names or a dict"),
        ('"cases.jsonl", fields=["q", "nope"]', "cases.jsonl:1: no field 'nope' (the row has"),
        ('"cases.jsonl", model=dict', "model= must be a pydantic model class, got <class"),
        ('"cases.jsonl", format="xml"', "format= must be one of jsonl, json, csv, hf"),
        ("", "@pytest.mark.rig_cases: missing 1 required positional argument: 'source'"),
    ],
    ids=[
        "missing",
        "suffix",
        "keyword",
        "limit",
        "sample",
        "fields-text",
        "fields-missing",
        "model",
        "format",
        "no-source",
    ],
)
def test_a_bad_marker_or_source_is_a_collection_error_naming_it(
    pytester: pytest.Pytester, marker: str, error: str
) -> None:
    ini(pytester)
    (pytester.path / "cases.jsonl").write_text(jsonl([{"q": "a"}, {"q": "b"}]))
    (pytester.path / "cases.txt").write_text("q\n")
    pytester.makepyfile(dumping(marker))
    message = collection_error(pytester)
    assert message.startswith(
        "test_a_bad_marker_or_source_is_a_collection_error_naming_it.py::test_case: "
        "@pytest.mark.rig_cases: "
    )
    assert error in message


def test_a_case_model_types_every_row_and_names_the_row_and_field_that_fail(
    pytester: pytest.Pytester,
) -> None:
    """CSV cells are text: a text field takes the cell as it is (empty too); any other
    reads it as JSON (a list, a number), or takes its default when the cell is empty; a
    row the model refuses names its line and field."""
    ini(pytester)
    (pytester.path / "cases.csv").write_text(
        'id,question,tags,score,note,weight\nq1,"What, exactly?","[""a"", ""b""]",3,,\n'
        'q2,Why?,[],0.5,"[1, 2]",2\n'
    )
    pytester.makepyfile(
        """
        import pytest
        from pydantic import BaseModel

        class Case(BaseModel):
            id: str
            question: str
            tags: list[str]
            score: float
            note: str = "none"
            weight: int = 1

        @pytest.mark.rig_cases("cases.csv", id="id", model=Case)
        def test_case(rig_case, tags, score, note, weight):
            assert isinstance(rig_case.data, Case)
            assert (tags, score, note, weight) == {
                "q1": (["a", "b"], 3.0, "", 1),
                "q2": ([], 0.5, "[1, 2]", 2),
            }[rig_case.id]
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)
    (pytester.path / "cases.csv").write_text("id,question,tags,score\nq1,x,[],3\nq2,y,[],lots\n")
    assert collection_error(pytester).endswith(
        "cases.csv:3: does not fit Case: field 'score': Input should be a valid number, "
        "unable to parse string as a number (got 'lots')"
    )


def test_fields_select_and_rename_before_the_model_and_the_test_see_them(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    (pytester.path / "cases.jsonl").write_text(
        jsonl([{"ticket_id": 7, "body": "refund?", "internal": "x"}])
    )
    pytester.makepyfile(dumping('"cases.jsonl", id="ticket_id", fields={"body": "prompt"}'))
    pytester.runpytest().assert_outcomes(passed=1)
    assert seen(pytester) == [{"id": "7", "line": 1, "fields": {"prompt": "refund?"}}]


def test_a_field_the_test_asks_for_must_be_in_every_case(pytester: pytest.Pytester) -> None:
    ini(pytester)
    (pytester.path / "cases.jsonl").write_text(jsonl([{"q": "a", "context": "c"}, {"q": "b"}]))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rig_cases("cases.jsonl", id="q")
        def test_case(context):
            pass
        """
    )
    assert collection_error(pytester).endswith(
        "cases.jsonl:2: no field 'context', which the test asks for (the row has: q)"
    )


def test_a_field_parametrize_sets_too_is_an_error_and_request_stays_pytests(
    pytester: pytest.Pytester,
) -> None:
    """A field named as a parametrize argument is refused; one named `request` (pytest's
    reserved name) is read through `rig_case`, and the test's `request` is pytest's."""
    ini(pytester)
    (pytester.path / "cases.jsonl").write_text(jsonl([{"q": "a", "request": "refund"}]))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rig_cases("cases.jsonl")
        def test_case(request, rig_case):
            assert isinstance(request, pytest.FixtureRequest)
            assert rig_case["request"] == "refund"
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("q", ["x"])
        @pytest.mark.rig_cases("cases.jsonl")
        def test_case(q):
            pass
        """
    )
    assert collection_error(pytester).endswith(
        "field 'q' is also set by @pytest.mark.parametrize: rename the field with "
        "fields={...} or the parameter"
    )


def test_rig_case_without_the_marker_is_a_collection_error(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile("def test_case(rig_case):\n    pass\n")
    assert collection_error(pytester) == (
        "test_rig_case_without_the_marker_is_a_collection_error.py::test_case: rig_case gives "
        "the case of a @pytest.mark.rig_cases test; this test has no rig_cases marker"
    )


def test_ids_are_k_friendly_and_combine_with_parametrize_and_class_marks(
    pytester: pytest.Pytester,
) -> None:
    """An id field's value keeps letters, digits, `_`, `.` and `-`; the rest become `_`.
    The marker works on a class, and with parametrize as stacked parametrize marks do."""
    ini(pytester)
    (pytester.path / "cases.jsonl").write_text(
        jsonl([{"name": "refund / EU", "n": 1}, {"name": "v2.1-beta", "n": 2}])
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rig_cases("cases.jsonl", id="name")
        class TestCases:
            @pytest.mark.parametrize("style", ["short", "long"])
            def test_case(self, style, n):
                pass
        """
    )
    ids = [i.split("::")[-1] for i in collected(pytester)]
    assert ids == [
        "test_case[short-refund_EU]",
        "test_case[short-v2.1-beta]",
        "test_case[long-refund_EU]",
        "test_case[long-v2.1-beta]",
    ]
    assert len(collected(pytester, "-k", "refund_EU and long")) == 1
    (pytester.path / "cases.jsonl").write_text(
        jsonl([{"name": "refund / EU", "n": 1}, {"name": "refund_EU", "n": 2}])
    )
    assert collection_error(pytester).endswith(
        "cases.jsonl:2: case id 'refund_EU' is also the id of the case on line 1: ids must be "
        "unique"
    )
    (pytester.path / "cases.jsonl").write_text(
        jsonl([{"name": "refund_EU", "n": 1}, {"name": "refund / EU", "n": 2}])
    )
    assert collection_error(pytester).endswith(
        "cases.jsonl:2: case id 'refund_EU' (made of 'refund / EU') is also the id of the "
        "case on line 1: ids must be unique"
    )


def test_an_inherited_test_has_cases_only_where_the_marker_is(pytester: pytest.Pytester) -> None:
    """A method is one function object in every class that inherits it: the marker of one
    class gives the others no cases, in any order of collection, and the user's function
    is left as it was."""
    ini(pytester)
    (pytester.path / "cases.jsonl").write_text(jsonl(CAPITALS[:2]))
    pytester.makepyfile(
        test_base="""
        class Base:
            def test_x(self, request):
                assert ("rig_case" in request.fixturenames) == ("Cases" in request.node.nodeid)

        class TestBaseItself(Base):
            pass

        def test_the_function_is_as_it_was():
            assert "pytestmark" not in vars(Base.test_x)
        """,
        test_cases="""
        import pytest
        from test_base import Base

        @pytest.mark.rig_cases("cases.jsonl", id="country")
        class TestCases(Base):
            pass

        class TestSmoke(Base):
            pass
        """,
    )
    ids = collected(pytester, "test_cases.py", "test_base.py")
    assert [i for i in ids if "test_x" in i] == [
        "test_cases.py::TestCases::test_x[France]",
        "test_cases.py::TestCases::test_x[Japan]",
        "test_cases.py::TestSmoke::test_x",
        "test_base.py::TestBaseItself::test_x",
    ]
    pytester.runpytest("test_cases.py", "test_base.py").assert_outcomes(passed=5)


def test_a_relative_path_is_read_from_the_test_file_wherever_pytest_runs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    ini(pytester)
    suite = pytester.mkpydir("suite")
    (suite / "data").mkdir()
    (suite / "data" / "cases.jsonl").write_text(jsonl(CAPITALS))
    (suite / "test_in_suite.py").write_text(dumping('"data/cases.jsonl", id="country"'))
    monkeypatch.chdir(pytester.mkdir("elsewhere"))
    result = pytester.runpytest(str(pytester.path), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_limit_and_a_seeded_sample_select_the_same_cases_in_every_process(
    pytester: pytest.Pytester,
) -> None:
    """`limit=` reads the first rows; `sample=` draws by a seeded hash of each case's id, so
    a run, an xdist run and a file with rows added around the drawn cases agree."""
    ini(pytester)
    rows = [{"n": f"case{i}"} for i in range(40)]
    (pytester.path / "cases.jsonl").write_text(jsonl(rows))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rig_cases("cases.jsonl", id="n", limit=3)
        def test_first(n):
            pass

        @pytest.mark.rig_cases("cases.jsonl", id="n", sample=5, seed=7)
        def test_sampled(n):
            pass

        @pytest.mark.rig_cases("cases.jsonl", id="n", sample=5, seed=8)
        def test_other_seed(n):
            pass
        """
    )
    ids = collected(pytester)
    first = [i.split("[")[1] for i in ids if "test_first" in i]
    sampled = [i.split("[")[1] for i in ids if "test_sampled" in i]
    other = [i.split("[")[1] for i in ids if "test_other_seed" in i]
    assert first == ["case0]", "case1]", "case2]"]
    assert len(sampled) == 5 and sampled != other
    assert sampled == sorted(sampled, key=lambda n: int(n[4:-1]))  # in the file's order
    result = pytester.runpytest("-n", "2", "-v")
    result.assert_outcomes(passed=13)
    ran = set(re.findall(r"PASSED \S+::(\S+)", result.stdout.str()))
    assert ran == {i.split("::")[-1] for i in ids}
    (pytester.path / "cases.jsonl").write_text(jsonl([{"n": "new"}, *rows, {"n": "newer"}]))
    again = [i.split("[")[1] for i in collected(pytester) if "test_sampled" in i]
    assert set(again) - {"new]", "newer]"} <= set(sampled)


def test_rig_pipelines_built_from_fields_and_rig_case_run_each_case_on_each_model(
    pytester: pytest.Pytester,
) -> None:
    """Cases x cells, as parametrize x cells: the result fixtures build every item's
    pipeline from its own case (a field and `rig_case`), in one process and under xdist."""
    ini(pytester, "rig_models = echo!one\n    echo!two\n")
    pytester.makefile(".jsonl", capitals=jsonl(CAPITALS))
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def question(rig_case):
            return f"capital of {rig_case['country']}?"

        @pytest.fixture
        def rig_pipeline(rig_generator, question, capital):
            return rig_generator.chat(f"{question} ({capital})")

        @pytest.mark.rig_cases("capitals.jsonl", id="country")
        def test_capital(rig_chat, country, capital):
            assert rig_chat.last.content == f"capital of {country}? ({capital})"
        """
    )
    ids = [i.split("::")[-1] for i in collected(pytester)]
    assert ids == [f"test_capital[{c['country']}-{m}]" for c in CAPITALS for m in ("one", "two")]
    pytester.runpytest().assert_outcomes(passed=6)
    pytester.runpytest("-n", "2").assert_outcomes(passed=6)
