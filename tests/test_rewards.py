"""Built-in rewards against hand-written cases (including the hard ones), the registry, guard, scoring, dry run."""
from __future__ import annotations

import doctest
import math
import pickle
import threading
import time

import pytest

import rewards
from rewards import (
    GuardedReward,
    MissingColumnError,
    RewardFailureThresholdExceeded,
    RewardNotFound,
    check_failure_threshold,
    guard,
)

REGISTRY_NAMES = [
    "numeric_answer", "exact_answer", "gsm8k_answer", "math_equivalence", "format_tags", "regex", "length",
    "cosine_length", "repetition", "json_valid", "json_schema", "python_tests", "similarity",
]


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# --- numeric_answer -------------------------------------------------------------------------------------------------


class TestNumericAnswer:
    reward = rewards.get("numeric_answer")

    def score(self, completion, answer="42", **params):
        fn = rewards.get("numeric_answer", **params) if params else self.reward
        return fn([completion], answer=[answer])[0]

    def test_project_task(self):
        # the engine's built-in task: "What is 17 + 25? Reply with only the number."
        out = self.reward(["42", "17 + 25 = 42", "43", ""], answer=["42", 42, "42", "42"])
        assert out == [1.0, 1.0, 0.0, 0.0]

    @pytest.mark.parametrize("completion", [
        "42", " 42\n", "42.", "42.0", "$42", "The answer is 42.", "Answer: 42", "**42**", "\\boxed{42}",
        "<answer>42</answer>", "I think 41 or 43... no: 17 + 25 = 42",
        "The answer is 42. I checked it 3 times.",  # marker: the first number after it
        "<answer>42</answer>\nNote: not 43.",  # the tag wins over later numbers
        "forty-two", "The answer is forty two.",  # words, when there are no digits
        "4.2e1",
    ])
    def test_correct(self, completion):
        assert self.score(completion) == 1.0

    @pytest.mark.parametrize("completion", [
        "43", "", "   ", "I don't know", "42 apples and 3 pears", "4 2", "420", "-42", "<answer>41</answer> 42",
        "x42",
    ])
    def test_wrong(self, completion):
        assert self.score(completion) == 0.0

    @pytest.mark.parametrize("completion,answer", [
        ("\u22127", "-7"), ("-7", "\u22127"), ("(\u22127)", -7), ("17 \u2212 24 = \u22127", "-7"), ("\uff14\uff12", "42"),
        ("1,234", "1234"), ("1234", "1,234"), ("1,234,567.5", 1234567.5), ("0.50", "0.5"), ("1/2", "0.5"),
        ("50%", "50"), ("17 - 25 = -8", "-8"), ("1e3", 1000),
    ])
    def test_number_forms(self, completion, answer):
        assert self.score(completion, answer) == 1.0

    def test_tolerance(self):
        assert self.score("3.14159", "3.1416") == 0.0
        assert self.score("3.14159", "3.1416", tolerance=1e-3) == 1.0
        assert self.score("99", "100", rel_tolerance=0.02) == 1.0
        assert self.score("97", "100", rel_tolerance=0.02) == 0.0

    def test_big_integers_are_exact(self):
        assert self.score("12345678901234567890", "12345678901234567891") == 0.0

    def test_words_can_be_switched_off(self):
        assert self.score("forty-two", words=False) == 0.0

    def test_reference_without_number_is_not_applicable(self):
        assert self.reward(["42", "42", "42"], answer=[None, "n/a", ""]) == [None, None, None]

    def test_gsm8k_style_reference(self):
        assert self.score("72", "48 + 24 = 72 clips.\n#### 72") == 1.0

    def test_chat_form_and_custom_scores_and_column(self):
        fn = rewards.get("numeric_answer", answer_column="solution", correct=2.0, wrong=-1.0)
        assert fn([chat("42"), chat("41")], solution=["42", "42"]) == [2.0, -1.0]

    def test_missing_column_names_it(self):
        with pytest.raises(MissingColumnError, match="'answer'.*answer_column"):
            self.reward(["42"], prompts=["q"], solution=["42"])

    def test_scalar_column_is_broadcast(self):
        assert self.reward(["42", "41"], answer="42") == [1.0, 0.0]

    def test_bad_params(self):
        with pytest.raises(ValueError, match="'tolerance'"):
            rewards.get("numeric_answer", tolerance=-1)
        with pytest.raises(ValueError, match="'correct'"):
            rewards.get("numeric_answer", correct="yes")


# --- exact_answer -----------------------------------------------------------------------------------------------------


class TestExactAnswer:
    reward = rewards.get("exact_answer")

    @pytest.mark.parametrize("completion,answer", [
        ("Paris", "paris"), ("  PARIS. ", "Paris"), ("The answer is Paris.", "Paris"),
        ("The answer is Paris. It is the capital of France.", "Paris"), ("<answer>The Eiffel Tower</answer>", "eiffel tower"),
        ("\\boxed{Paris}", "Paris"), ("\uff30\uff41\uff52\uff49\uff53", "Paris"), ("Lyon", ["Paris", "Lyon"]), ("3.5", "3.5"),
        ("\u22123", "-3"),
    ])
    def test_match(self, completion, answer):
        assert self.reward([completion], answer=[answer]) == [1.0]

    @pytest.mark.parametrize("completion,answer", [
        ("London", "Paris"), ("", "Paris"), ("I think it is Paris", "Paris"), ("35", "3.5"), ("Paris Texas", "Paris"),
    ])
    def test_mismatch(self, completion, answer):
        assert self.reward([completion], answer=[answer]) == [0.0]

    def test_options(self):
        assert rewards.get("exact_answer", normalize=False)(["paris", "Paris"], answer=["Paris", "Paris"]) == [0.0, 1.0]
        assert rewards.get("exact_answer", contains=True)(["I think it is Paris!"], answer=["paris"]) == [1.0]
        assert rewards.get("exact_answer", contains=True)(["Parisian"], answer=["paris"]) == [0.0]
        assert rewards.get("exact_answer", extract=False)(["<answer>Paris</answer>"], answer=["Paris"]) == [0.0]

    def test_empty_reference_not_applicable(self):
        assert self.reward(["x", "x"], answer=["", None]) == [None, None]


# --- gsm8k_answer -----------------------------------------------------------------------------------------------------


class TestGsm8kAnswer:
    gold = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"

    def test_cases(self):
        fn = rewards.get("gsm8k_answer")
        completions = ["She sold 72.\n#### 72", "#### 72 clips", "#### 70", "So 72 in total.", "#### 7 2", "", "#### 24\n#### 72"]
        assert fn(completions, answer=[self.gold] * len(completions)) == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]

    def test_thousands_compared_as_numbers(self):
        assert rewards.get("gsm8k_answer")(["#### 1000"], answer=["... #### 1,000"]) == [1.0]

    def test_strict_needs_marker(self):
        fn = rewards.get("gsm8k_answer", strict=True, correct=2.0)
        assert fn(["So 72 in total.", "#### 72"], answer=[self.gold] * 2) == [0.0, 2.0]


# --- math_equivalence --------------------------------------------------------------------------------------------------


class TestMathEquivalence:
    reward = rewards.get("math_equivalence")

    @pytest.mark.parametrize("completion,answer", [
        ("\\frac{1}{2}", "0.5"), ("0.5", "\\frac{1}{2}"), ("$\\frac12$", "0.5"), ("1/2", "$0.5$"),
        ("The answer is $\\boxed{\\frac{1}{2}}$.", "1/2"), ("<answer>\\frac{2}{4}</answer>", "0.5"),
        ("So $x = \\frac{\\sqrt{2}}{2}$", "\\frac{\\sqrt{2}}{2}"), ("\u22123", "-3"), ("\\boxed{-3}", "\u22123"),
        ("We get \\boxed{42}", "42"), ("\\boxed{42}", 42), ("#### 72", "#### 72"),
    ])
    def test_equivalent(self, completion, answer):
        assert self.reward([completion], answer=[answer]) == [1.0]

    @pytest.mark.parametrize("completion,answer", [
        ("\\frac{1}{3}", "0.5"), ("", "0.5"), ("I cannot solve it", "0.5"), ("\\boxed{3}", "-3"), ("forty-two", "42"),
    ])
    def test_not_equivalent(self, completion, answer):
        assert self.reward([completion], answer=[answer]) == [0.0]

    def test_unparseable_reference_is_not_applicable(self):
        # open-r1 gives such samples 1.0 (rewarding every completion); TRL gives None, as here
        assert self.reward(["x = 3", "3"], answer=["no idea", None]) == [None, None]

    def test_off_the_main_thread_a_runaway_answer_cannot_freeze_the_process(self):
        """math-verify's own timeouts need the main thread; off it (the app's event threads) the batch is scored in a
        sandboxed worker, so a power tower that sympy would evaluate for minutes costs its score, not the app."""
        reward = rewards.get("math_equivalence", timeout_s=1)
        out, ticks = [], []
        thread = threading.Thread(target=lambda: out.append(
            reward(["\\boxed{10^{10^{10}}}", "\\boxed{\\frac{1}{2}}"], answer=["5", "0.5"])))
        start = time.perf_counter()
        thread.start()
        while thread.is_alive() and time.perf_counter() - start < 120:
            ticks.append(time.perf_counter())
            time.sleep(0.05)
        thread.join(1)
        assert out == [[0.0, 1.0]]
        assert len(ticks) > 5 and max(b - a for a, b in zip(ticks, ticks[1:])) < 1.0  # this thread kept running

    def test_works_off_the_main_thread(self):
        out = []
        thread = threading.Thread(target=lambda: out.append(self.reward(["\\frac{1}{2}", "1/3"], answer=["0.5"] * 2)))
        thread.start()
        thread.join()
        assert out == [[1.0, 0.0]]


# --- format_tags and regex ------------------------------------------------------------------------------------------

GOOD = "<reasoning>\nFirst, 17 + 25.\nThat is 42.\n</reasoning>\n<answer>\n42\n</answer>"


class TestFormatTags:
    strict = rewards.get("format_tags")
    soft = rewards.get("format_tags", mode="soft")
    partial = rewards.get("format_tags", mode="partial")

    def test_multiline_sections_match(self):
        # Unsloth's notebook regexes lack DOTALL and score this 0
        assert self.strict([GOOD]) == [1.0]
        assert self.soft([GOOD]) == [1.0]
        assert self.partial([GOOD]) == [1.0]

    def test_whitespace_around_is_fine_text_is_not_for_strict(self):
        assert self.strict(["\n  " + GOOD + "\n\n"]) == [1.0]
        assert self.strict(["Sure! " + GOOD]) == [0.0]
        assert self.strict([GOOD + " Hope that helps"]) == [0.0]
        assert self.strict([GOOD.replace("</reasoning>\n", "</reasoning> so ")]) == [0.0]
        assert self.soft(["Sure! " + GOOD + " Bye"]) == [1.0]

    @pytest.mark.parametrize("text", [
        "<reasoning>a <answer>42</answer> b</reasoning>",  # nested
        "<reasoning>a</reasoning><answer>42</answer><answer>43</answer>",  # repeated
        "<reasoning>a</reasoning><answer><answer>42</answer></answer>",  # nested in itself
        "<answer>42</answer><reasoning>a</reasoning>",  # wrong order
        "<reasoning>a</reasoning><answer>42",  # unclosed
        "<reasoning>a</reasoning><answer>  </answer>",  # empty section
        "</reasoning>a<reasoning><answer>42</answer>",  # closed before opened
        "",
        "42",
    ])
    def test_malformed(self, text):
        assert self.strict([text]) == [0.0]
        assert self.soft([text]) == [0.0]
        assert self.partial([text])[0] < 1.0

    def test_partial_credit_is_ordered(self):
        scores = self.partial(["42", "<reasoning>a</reasoning> 42", "<reasoning>a</reasoning><answer>42", GOOD])
        assert scores == sorted(scores) and scores[0] == 0.0 and scores[-1] == 1.0

    def test_allow_empty_and_custom_tags(self):
        assert rewards.get("format_tags", allow_empty=True)(["<reasoning></reasoning><answer>42</answer>"]) == [1.0]
        think = rewards.get("format_tags", tags="think, answer")
        assert think(["<think>\nhm\n</think>\n<answer>42</answer>", GOOD]) == [1.0, 0.0]
        assert rewards.get("format_tags", tags=["<think>"])(["<think>x</think>"]) == [1.0]

    def test_chat_form(self):
        assert self.strict([chat(GOOD)]) == [1.0]

    def test_bad_params(self):
        with pytest.raises(ValueError, match="'tags'"):
            rewards.get("format_tags", tags=["ok", "no spaces"])
        with pytest.raises(ValueError, match="'tags'"):
            rewards.get("format_tags", tags=[])
        with pytest.raises(ValueError, match="'mode'"):
            rewards.get("format_tags", mode="lenient")


class TestRegex:
    def test_dotall_by_default(self):
        fn = rewards.get("regex", pattern=r"^<think>.*?</think>\s*\S+$", mode="match")
        assert fn(["<think>\na\nb\n</think>\n42", "42"]) == [1.0, 0.0]

    def test_modes_flags_and_scores(self):
        assert rewards.get("regex", pattern="answer", flags="i")(["ANSWER: 1"]) == [1.0]
        assert rewards.get("regex", pattern="answer", flags="")(["ANSWER: 1"]) == [0.0]
        assert rewards.get("regex", pattern=r"\d+", mode="fullmatch")([" 42 ", "42a"]) == [1.0, 0.0]
        assert rewards.get("regex", pattern=r"\d+", mode="fullmatch", strip=False)([" 42 "]) == [0.0]
        fn = rewards.get("regex", pattern=r"Step \d", mode="count", match_score=0.5, miss_score=-1.0)
        assert fn(["Step 1 Step 2 Step 3", "none"]) == [1.5, -1.0]

    def test_default_pattern_wants_a_nonempty_answer_tag(self):
        assert rewards.get("regex")(["<answer>\n42\n</answer>", "<answer> </answer>"]) == [1.0, 0.0]

    def test_bad_params(self):
        with pytest.raises(ValueError, match="'pattern'.*position"):
            rewards.get("regex", pattern="(")
        with pytest.raises(ValueError, match="'flags'"):
            rewards.get("regex", pattern="a", flags="q")
        with pytest.raises(ValueError, match="'mode'"):
            rewards.get("regex", pattern="a", mode="find")


# --- length, cosine_length, repetition ------------------------------------------------------------------------------


class TestLength:
    def test_overlong(self):
        fn = rewards.get("length", max_length=100, buffer=20)
        assert fn(["", "x" * 80, "x" * 90, "x" * 100, "x" * 101]) == [0.0, 0.0, -0.5, -1.0, -1.0]

    def test_hard_limit(self):
        assert rewards.get("length", max_length=10, buffer=0)(["x" * 10, "x" * 11]) == [0.0, -1.0]

    def test_target(self):
        fn = rewards.get("length", mode="target", target=10)
        assert fn(["x" * 10, "x" * 5, "x" * 15, "", "x" * 30]) == [1.0, 0.5, 0.5, 0.0, 0.0]

    def test_units(self):
        assert rewards.get("length", mode="target", target=2, unit="words")(["a b", "a b c d"]) == [1.0, 0.0]
        tokens = rewards.get("length", mode="target", target=4, unit="tokens")
        assert tokens(["whatever", "x"], completion_ids=[[1, 2, 3, 4], [1, 2]]) == [1.0, 0.5]
        assert tokens(["no ids"]) == [None]  # not applicable outside training

    def test_bad_params(self):
        with pytest.raises(ValueError, match="'buffer'"):
            rewards.get("length", max_length=10, buffer=20)
        with pytest.raises(ValueError, match="'unit'"):
            rewards.get("length", unit="bytes")
        with pytest.raises(ValueError, match="'max_length'"):
            rewards.get("length", max_length=0)


class TestCosineLength:
    def test_schedule(self):
        fn = rewards.get("cosine_length", max_len=100, correctness="numeric_answer")
        pad = lambda n, tail: "x" * (n - len(tail)) + tail  # noqa: E731
        completions = [pad(50, " 42"), pad(100, " 42"), pad(400, " 42"), pad(50, " 41"), pad(400, " 41")]
        assert fn(completions, answer=["42"] * 5) == [0.75, 0.5, 0.5, -0.75, -0.5]

    def test_short_beats_long_and_correct_beats_wrong(self):
        fn = rewards.get("cosine_length", max_len=1000)
        short_ok, long_ok, short_bad, long_bad = fn(
            ["\\boxed{\\frac{1}{2}}", "x" * 900 + "\\boxed{0.5}", "\\boxed{3}", "x" * 900 + "\\boxed{3}"], answer=["1/2"] * 4)
        assert short_ok > long_ok > long_bad > short_bad

    def test_tokens_and_not_applicable(self):
        fn = rewards.get("cosine_length", max_len=10, unit="tokens", correctness="numeric_answer")
        assert fn(["42", "42", "42"], answer=["42", "42", None], completion_ids=[[1] * 10, [1] * 20, [1]]) == [0.5, 0.5, None]

    def test_open_r1_config_mixup_is_refused(self):
        # open-r1's configs.py: cosine_min_value_wrong=0.0 with max_value_wrong=-0.5 flips the wrong-answer schedule
        with pytest.raises(ValueError, match="'min_value_wrong'"):
            rewards.get("cosine_length", min_value_wrong=0.0)
        with pytest.raises(ValueError, match="'max_value_wrong'"):
            rewards.get("cosine_length", max_value_wrong=0.8)
        with pytest.raises(ValueError, match="'correctness'"):
            rewards.get("cosine_length", correctness="similarity")


class TestRepetition:
    def test_values(self):
        fn = rewards.get("repetition", ngram_size=2)
        assert fn(["the cat sat on the mat", "go go go go go", "", "one"]) == [0.0, -0.75, 0.0, 0.0]

    def test_case_insensitive_words_and_chars_and_tokens(self):
        assert rewards.get("repetition", ngram_size=1)(["Yes yes YES"]) == [pytest.approx(-2 / 3)]
        assert rewards.get("repetition", ngram_size=2, unit="chars")(["abab"]) == [pytest.approx(-1 / 3)]
        tokens = rewards.get("repetition", ngram_size=2, unit="tokens", max_penalty=-0.5)
        assert tokens(["a", "b"], completion_ids=[[1, 2, 3, 4], [5, 5, 5, 5, 5]]) == [0.0, -0.375]
        assert tokens(["a"]) == [None]

    def test_bad_params(self):
        with pytest.raises(ValueError, match="'max_penalty'"):
            rewards.get("repetition", max_penalty=1.0)
        with pytest.raises(ValueError, match="'ngram_size'"):
            rewards.get("repetition", ngram_size=0)


# --- JSON ---------------------------------------------------------------------------------------------------------------

PERSON = {"type": "object", "required": ["name", "age"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}}


class TestJson:
    def test_valid(self):
        fn = rewards.get("json_valid")
        completions = ['{"a": 1}', "```json\n[1, 2]\n```", 'Sure:\n{"a": {"b": [1]}}\nDone.', "42", "{a: 1}",
                       '{"a": NaN}', '{"a": 1', "", "```json\n{oops}\n```"]
        assert fn(completions) == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]

    def test_options(self):
        assert rewards.get("json_valid", require_object=True)(["[1]", '{"a": 1}']) == [0.0, 1.0]
        assert rewards.get("json_valid", extract=False)(['x {"a": 1}', ' {"a": 1} ']) == [0.0, 1.0]

    def test_schema(self):
        fn = rewards.get("json_schema", schema=PERSON)
        completions = ['{"name": "Ada", "age": 36}', '```json\n{"name": "Ada", "age": 36}\n```', '{"name": "Ada", "age": -1}',
                       '{"name": "Ada", "age": "36"}', '{"name": "Ada"}', "not json", ""]
        assert fn(completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]

    def test_schema_as_string_and_per_row_column(self):
        import json

        assert rewards.get("json_schema", schema=json.dumps(PERSON))(['{"name": "A", "age": 1}']) == [1.0]
        per_row = rewards.get("json_schema")
        out = per_row(["[1]", "[1]", '"x"'], schema=[{"type": "array"}, json.dumps({"type": "object"}), None])
        assert out == [1.0, 0.0, None]
        with pytest.raises(MissingColumnError, match="'schema'"):
            per_row(["{}"])

    def test_bad_schema_names_parameter(self):
        with pytest.raises(ValueError, match="'schema'"):
            rewards.get("json_schema", schema={"type": 12})
        with pytest.raises(ValueError, match="'schema'"):
            rewards.get("json_schema", schema="{not json")


# --- python_tests ------------------------------------------------------------------------------------------------------

ADD = "```python\ndef add(a, b):\n    return a + b\n```"
TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2, 2) == 4\nassert add(0, 0) == 0"


class TestPythonTests:
    reward = rewards.get("python_tests", test_timeout_s=1.0, timeout_s=5.0)

    def test_pass_rate(self):
        half = "```python\ndef add(a, b):\n    return 3 if a == 1 else 0\n```"
        out = self.reward([ADD, half, "no code here", "```python\ndef add(a, b) return\n```", ""], tests=[TESTS] * 5)
        assert out == [1.0, 0.75, 0.0, 0.0, 0.0]  # add(2, 2) fails

    def test_formats(self):
        prog = "```python\nimport sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n```"
        io_tests = [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5", "output": "10"}]
        apps = {"inputs": ["1 2\n", "2 2\n"], "outputs": ["3\n", "5\n"]}
        open_r1 = {"language": "python", "test_cases": [{"input": "1 1", "output": "2", "type": "stdin_stdout"}]}
        import json

        out = self.reward([prog, prog, prog, prog, ADD],
                          tests=[io_tests, apps, open_r1, json.dumps(io_tests), ["assert add(1, 2) == 3", "assert add(1, 1) == 3"]])
        assert out == [1.0, 0.5, 1.0, 1.0, 0.5]

    def test_bare_code_last_block_binary_and_no_tests(self):
        bare = "def add(a, b):\n    return a + b"
        two_blocks = "```python\ndef add(a, b): return 0\n```\nFixed:\n```python\ndef add(a, b): return a + b\n```"
        assert self.reward([bare, two_blocks, ADD], tests=[TESTS, TESTS, None]) == [1.0, 1.0, None]
        assert rewards.get("python_tests", require_fence=True)([bare], tests=[TESTS]) == [0.0]
        half = "```python\ndef add(a, b):\n    return 3\n```"
        assert rewards.get("python_tests", binary=True)([half, ADD], tests=[TESTS] * 2) == [0.0, 1.0]

    def test_hostile_programs_cost_only_their_score(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        loop = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
        swallow = "```python\ndef add(a, b):\n    try:\n        while True: pass\n    except Exception:\n        return a + b\n```"
        bomb = "```python\nx = bytearray(10 ** 11)\ndef add(a, b): return a + b\n```"
        exits = "```python\nimport os\nos._exit(3)\n```"
        files = "```python\nopen('leak.txt', 'w').write('x')\ndef add(a, b): return a + b\n```"
        fn = rewards.get("python_tests", test_timeout_s=0.3, timeout_s=8.0, memory_mb=256)
        out = fn([loop, swallow, bomb, exits, files, ADD], tests=[TESTS] * 6)
        assert out == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
        assert not (tmp_path / "leak.txt").exists()  # it ran in its own temporary folder

    def test_a_program_cannot_forge_its_own_results(self):
        """Reward hacking through the runner's state: writing pass lines into the results file (directly, through
        its open descriptor, or by copying a genuine line) passes nothing the program failed."""
        forge = ("```python\nimport os\nopen('results.txt', 'a').write('P 0\\nP 1\\nP 2\\nP 3\\n')\n"
                 "for fd in range(3, 20):\n    try:\n        os.write(fd, b'P 0\\nP 1\\nP 2\\nP 3\\n')\n"
                 "    except OSError:\n        pass\ndef add(a, b):\n    return 99\n```")
        replay = ("```python\ndef add(a, b):\n    lines = open('results.txt').read().splitlines()\n"
                  "    if lines:\n        mac, _, text = lines[0].partition(' ')\n"
                  "        with open('results.txt', 'a') as f:\n"
                  "            f.write(mac + ' P 1\\n' + mac + ' P 2\\n' + mac + ' P 3\\n')\n"
                  "    return 3 if (a, b) == (1, 2) else 99\n```")
        assert self.reward([forge, replay], tests=[TESTS] * 2) == [0.0, 0.25]

    def test_wall_time_limit_keeps_finished_tests(self):
        # each test sleeps; the wall limit cuts the run, the tests already reported still count
        prog = "```python\nimport time\ndef add(a, b):\n    time.sleep(0.5)\n    return a + b\n```"
        fn = rewards.get("python_tests", test_timeout_s=2.0, timeout_s=2.0)
        score = fn([prog], tests=["\n".join(["assert add(1, 2) == 3"] * 8)])[0]
        assert 0.0 < score < 1.0
        assert "timed out" in fn.last_details[0]

    def test_bad_tests_raise_clearly(self):
        with pytest.raises(ValueError, match="not valid Python"):
            self.reward([ADD], tests=["assert add(1, 2) =="])


# --- similarity and weighted ----------------------------------------------------------------------------------------


class TestSimilarity:
    def test_methods(self):
        ref = ["The Eiffel Tower"] * 4
        completions = ["the eiffel tower!", "Eiffel", "London Bridge", ""]
        assert rewards.get("similarity")(completions, answer=ref) == [1.0, 0.666667, 0.0, 0.0]
        jac = rewards.get("similarity", method="jaccard")(completions, answer=ref)
        assert jac == [1.0, 0.5, 0.0, 0.0]
        ratio = rewards.get("similarity", method="ratio")(completions, answer=ref)
        assert ratio[0] == 1.0 and 0 < ratio[1] < 1 and ratio[3] == 0.0

    def test_reference_column_and_none(self):
        fn = rewards.get("similarity", reference_column="reference", extract=True)
        assert fn(["<answer>blue sky</answer> and more", "x"], reference=["blue sky", None]) == [1.0, None]

    def test_bad_method(self):
        with pytest.raises(ValueError, match="'method'"):
            rewards.get("similarity", method="bleu")


class TestWeighted:
    def test_sum_skips_none_like_trl(self):
        fn = rewards.get("weighted", rewards=[("numeric_answer", 1.0), ("format_tags", 0.5)])
        out = fn(["<reasoning>r</reasoning><answer>42</answer>", "42", "x"], answer=["42", "42", None])
        assert out == [1.5, 1.0, 0.0]  # the third: numeric None, format 0 -> 0.0
        none = rewards.get("weighted", rewards=[("numeric_answer", 1.0)])
        assert none(["42"], answer=[None]) == [None]

    def test_dict_form_callables_and_normalize(self):
        fn = rewards.make_weighted([{"name": "numeric_answer", "weight": 3.0},
                                    (rewards.get("format_tags", mode="soft"), 1.0)], normalize=True)
        assert fn(["42", "<reasoning>r</reasoning><answer>42</answer>"], answer=["42", "42"]) == [0.75, 1.0]

    def test_bad_parts(self):
        with pytest.raises(ValueError, match="'rewards'"):
            rewards.get("weighted")
        with pytest.raises(RewardNotFound):
            rewards.get("weighted", rewards=[("numeric_answr", 1.0)])


# --- registry, names, pickling, TRL's calling convention --------------------------------------------------------------


def test_registry_names_and_infos():
    names = [info.name for info in rewards.available()]
    for name in REGISTRY_NAMES:
        assert name in names and rewards.exists(name)
    assert not rewards.exists("nope") and not rewards.exists(None)
    for info in rewards.available():
        assert info.description and info.example.startswith(">>>")
        assert "name" not in info.params
        assert set(info.param_help) <= set(info.params)
    assert rewards.info("numeric_answer").params["answer_column"] == "answer"
    assert rewards.info("format_tags").params["tags"] == ["reasoning", "answer"]


@pytest.mark.parametrize("info", rewards.available(), ids=lambda i: i.name)
def test_registry_examples_run(info):
    """Each RewardInfo.example is a doctest; it must hold (the UI shows them)."""
    test = doctest.DocTestParser().get_doctest(info.example, {"rewards": rewards}, info.name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, info.example


def test_unknown_reward_lists_close_names():
    with pytest.raises(RewardNotFound) as err:
        rewards.get("numeric_answr")
    assert "numeric_answer" in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, KeyError)
    with pytest.raises(RewardNotFound, match="math_equivalence"):
        rewards.get("accuracy")  # TRL/open-r1 name


def test_unknown_param_names_it_and_suggests():
    with pytest.raises(ValueError, match="'tolerence'.*'tolerance'"):
        rewards.get("numeric_answer", tolerence=0.1)


def build_all():
    return {
        "numeric_answer": rewards.get("numeric_answer"),
        "exact_answer": rewards.get("exact_answer"),
        "gsm8k_answer": rewards.get("gsm8k_answer"),
        "math_equivalence": rewards.get("math_equivalence"),
        "format_tags": rewards.get("format_tags"),
        "regex": rewards.get("regex", pattern=r"\d"),
        "length": rewards.get("length"),
        "cosine_length": rewards.get("cosine_length"),
        "repetition": rewards.get("repetition"),
        "json_valid": rewards.get("json_valid"),
        "json_schema": rewards.get("json_schema", schema={"type": "object"}),
        "python_tests": rewards.get("python_tests"),
        "similarity": rewards.get("similarity"),
        "weighted": rewards.get("weighted", rewards=[("numeric_answer", 1.0), ("regex", 0.5)]),
    }


TRL_KWARGS = dict(
    prompts=[[{"role": "user", "content": "What is 17 + 25?"}]] * 2,
    completions=[chat("<reasoning>17+25</reasoning><answer>42</answer>"), chat("```python\ndef f(): return 1\n```")],
    completion_ids=[[1, 2, 3], [4, 5]],
    answer=["42", "42"],
    tests=[["assert f() == 1"]] * 2,
    trainer_state=object(),
    log_extra=lambda *a: None,
    log_metric=lambda *a: None,
)


def test_every_builtin_takes_trls_call_and_keeps_its_name_through_pickling():
    for name, fn in build_all().items():
        assert fn.__name__ == name
        out = fn(**TRL_KWARGS)
        assert len(out) == 2 and all(v is None or isinstance(v, float) for v in out), name
        again = pickle.loads(pickle.dumps(fn))
        assert again.__name__ == name
        assert again(**TRL_KWARGS) == out, name


def test_ready_made_instances_and_custom_names():
    assert rewards.numeric_answer(["42"], answer=["42"]) == [1.0]
    assert rewards.get("numeric_answer", name="accuracy").__name__ == "accuracy"
    with pytest.raises(ValueError, match="'name'"):
        rewards.get("numeric_answer", name="")
    assert "tolerance=" in repr(rewards.get("numeric_answer"))


def test_builtins_are_thread_safe():
    fns = build_all()
    fns.pop("python_tests")
    results: dict[str, list] = {}

    def run(name, fn):
        results[name] = [fn(**TRL_KWARGS) for _ in range(3)]

    threads = [threading.Thread(target=run, args=item) for item in fns.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, fn in fns.items():
        assert results[name] == [fn(**TRL_KWARGS)] * 3, name


def test_completion_text_forms():
    assert rewards.completion_text("x") == "x"
    assert rewards.completion_text(chat("x")) == "x"
    assert rewards.completion_text([{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]) == "x"
    multi = [{"role": "assistant", "content": "call"}, {"role": "tool", "content": "out"},
             {"role": "assistant", "content": "final 42"}]
    assert rewards.completion_text(multi) == "call\nfinal 42"
    assert rewards.numeric_answer([multi], answer=["42"]) == [1.0]


# --- guard ------------------------------------------------------------------------------------------------------------


def test_guard_turns_failures_into_none_and_counts_them():
    def flaky(completions, **kwargs):
        if completions[0] == "boom":
            raise RuntimeError("boom")
        if completions[0] == "exit":
            raise SystemExit(1)
        if completions[0] == "short":
            return [1.0]
        return [float("nan"), 1, None, "x"][: len(completions)]

    g = guard(flaky)
    assert g.__name__ == "flaky"
    assert g(["boom", "b"]) == [None, None]
    assert g.last_error.startswith("RuntimeError: boom")
    assert g(["exit"]) == [None]
    assert g(["short", "b"]) == [None, None]
    assert g(["ok", "b", "c", "d"]) == [None, 1.0, None, None]
    assert g.calls == 4 and g.failed_calls == 4
    assert g.pop_error_count() == 2 + 1 + 2 + 2
    assert g.pop_error_count() == 0
    assert g.recent_failure_rate() == 1.0


def test_guard_pickles_and_keeps_counters():
    g = guard(rewards.get("numeric_answer"), name="acc", error_score=0.0)
    g(["42"], answer=["42"])
    assert g(["42"]) == [0.0]  # missing column -> error -> error_score
    assert g.last_errors[0].startswith("MissingColumnError: numeric_answer needs the column 'answer'")
    again = pickle.loads(pickle.dumps(g))
    assert isinstance(again, GuardedReward) and again.__name__ == "acc" and again.calls == 2
    assert again(["41"]) == [0.0]
    assert guard(g) is g


def test_guard_runs_async_rewards():
    async def slow(completions, **kwargs):
        return [1.0 for _ in completions]

    assert guard(slow)(["a", "b"]) == [1.0, 1.0]


def test_failure_threshold():
    calls = {"n": 0}

    def sometimes(completions, **kwargs):
        calls["n"] += 1
        if calls["n"] % 4 == 0:
            raise ValueError("every fourth call fails")
        return [1.0] * len(completions)

    g = guard(sometimes)
    for _ in range(9):
        g(["x"])
    check_failure_threshold([g])  # 9 calls < min_calls: not judged yet
    for _ in range(11):
        g(["x"])
    assert g.recent_failure_rate() == pytest.approx(5 / 20)
    with pytest.raises(RewardFailureThresholdExceeded) as err:
        check_failure_threshold([g], max_rate=0.2)
    assert "'sometimes'" in str(err.value) and "every fourth call fails" in str(err.value)
    check_failure_threshold([g], max_rate=0.3)
    check_failure_threshold([g], max_rate=0.4, window_calls=3)  # calls 18-20: only 20 failed, 33% <= 40%
    # a window of the last 2 calls holds call 20 (failed) and 19 (fine): 50% > 20%
    with pytest.raises(RewardFailureThresholdExceeded):
        check_failure_threshold([g], max_rate=0.2, window_calls=2, min_calls=1)


# --- scoring and dry run ------------------------------------------------------------------------------------------


def test_score_table():
    rows = [{"prompt": "What is 17 + 25?", "completion": c, "answer": "42"}
            for c in ["<reasoning>r</reasoning><answer>42</answer>", "42", "41", ""]]
    rows.append({"prompt": "?", "completion": "7", "answer": None})

    def broken(completions, **kwargs):
        raise KeyError("oops")

    table = rewards.score(rows, [("numeric_answer", 1.0), (rewards.get("format_tags"), 0.5), (broken, 2.0),
                                 ("numeric_answer", 0.0)])
    assert table.names == ["numeric_answer", "format_tags", "broken", "numeric_answer_2"]
    assert [r["total"] for r in table.rows] == [1.5, 1.0, 0.0, 0.0, 0.0]
    assert table.rows[4]["scores"]["numeric_answer"] is None
    assert table.rows[0]["errors"]["broken"].startswith("KeyError")
    stats = table.per_reward["numeric_answer"]
    assert stats["mean"] == 0.5 and stats["n_none"] == 1 and stats["n_errors"] == 0 and stats["seconds"] >= 0
    assert stats["std"] == pytest.approx(math.sqrt(1 / 3))
    assert table.per_reward["broken"]["n_errors"] == 5
    records = table.to_records()
    assert records[0]["completion"].startswith("<reasoning>") and records[0]["error/broken"].startswith("KeyError")
    assert "numeric_answer" in table.summary()


def test_score_all_none_row_total_is_none_and_guarded_counters_untouched():
    g = guard(rewards.get("numeric_answer"))
    table = rewards.score([{"completion": "1", "answer": None}], [(g, 1.0)])
    assert table.rows[0]["total"] is None
    assert g.calls == 0  # scoring does not count into training error counters


def test_group_advantages_match_trl():
    torch = pytest.importorskip("torch")
    from trl.trainer.utils import nanstd

    totals = [1.0, 0.0, 0.5, None]
    adv, zero = rewards.group_advantages(totals)
    t = torch.tensor([1.0, 0.0, 0.5, float("nan")])
    expected = torch.nan_to_num((t - torch.nanmean(t)) / (nanstd(t) + 1e-4), nan=0.0)
    assert adv == pytest.approx(expected.tolist(), abs=1e-3) and not zero
    assert rewards.group_advantages([2.0, 2.0, 2.0]) == ([0.0, 0.0, 0.0], True)
    assert rewards.group_advantages([None, None]) == ([0.0, 0.0], True)
    assert rewards.group_advantages([3.0, 1.0], scale=False) == ([1.0, -1.0], False)


def test_dry_run_reports_each_problem():
    def nan_reward(completions, **kwargs):
        return [float("nan")] * len(completions)

    def short(completions, **kwargs):
        return [1.0]

    def wrong_column(completions, **kwargs):
        return [None] * len(completions)

    rows = [{"prompt": "q", "completion": chat(str(i)), "answer": str(i)} for i in range(10)]
    results = rewards.dry_run([guard(rewards.get("numeric_answer")), nan_reward, short, wrong_column,
                               rewards.get("numeric_answer", answer_column="solution")], rows)
    by = {r.name: r for r in results[:4]}
    assert by["numeric_answer"].ok and by["numeric_answer"].scores == [1.0] * 8  # n=8 rows
    assert not by["nan_reward"].ok and "row 0: returned nan" in by["nan_reward"].problem
    assert not by["short"].ok and "returned 1 scores for 8 completions" in by["short"].problem
    assert by["wrong_column"].ok and by["wrong_column"].warnings
    assert "column 'solution'" in results[4].problem
    with pytest.raises(rewards.DryRunError) as err:
        rewards.check_dry_run(results)
    message = str(err.value)
    assert "nan_reward" in message and "short" in message and "numeric_answer: raised MissingColumnError" in message
    rewards.check_dry_run([by["numeric_answer"]])


def test_user_guide_covers_every_builtin_and_parameter():
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[1] / "docs" / "rewards.md").read_text()
    assert "isolates mistakes, not attackers" in guide
    for info in rewards.available():
        row = next((line for line in guide.splitlines() if line.startswith(f"| `{info.name}` |")), None)
        assert row is not None, f"docs/rewards.md has no table row for {info.name}"
        for param in info.params:
            assert param in row, f"docs/rewards.md: {info.name} row does not mention {param}"
