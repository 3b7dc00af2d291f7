from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import errors, types
from tether.context.counting import Calibration, EstimateCounter, TokenizerCounter
from tether.models.scripted import estimate_tokens

FIXTURES = Path(__file__).parents[2] / "fixtures" / "tokenizer"
TINY = FIXTURES / "tiny-bpe.json"

texts = st.text(max_size=300)
calls = st.builds(types.ToolCall, id=st.text(min_size=1, max_size=8), name=texts, arguments=texts)
messages = st.one_of(
    st.builds(types.Message, role=st.sampled_from(["system", "user"]), content=texts),
    st.builds(
        types.Message,
        role=st.just("assistant"),
        content=st.none() | texts,
        tool_calls=st.lists(calls, max_size=3).map(tuple),
    ),
    st.builds(
        types.Message, role=st.just("tool"), content=texts, tool_call_id=st.just("c"), name=texts
    ),
)
tools = st.builds(
    types.ToolSpec,
    name=texts,
    description=texts,
    parameters=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(messages, max_size=12), st.lists(tools, max_size=3))
def test_default_counter_never_undercounts_the_servers_rule(
    msgs: list[types.Message], specs: list[types.ToolSpec]
) -> None:
    exact = estimate_tokens(msgs, specs)
    counted = EstimateCounter().count(msgs, specs)
    # the stated bound: exact ≤ counted ≤ 1.1 × exact + 1
    assert exact <= counted <= exact * 1.1 + 1
    assert EstimateCounter(margin=0).count(msgs, specs) == exact


def test_margin_is_validated() -> None:
    with pytest.raises(errors.InvalidInput):
        EstimateCounter(margin=-0.1)


def test_tokenizer_counter_counts_with_the_local_tokenizer(tmp_path: Path) -> None:
    sys.path.insert(0, str(FIXTURES))
    try:
        import make_tiny_bpe
    finally:
        sys.path.remove(str(FIXTURES))
    trained = make_tiny_bpe.train(make_tiny_bpe.corpus())
    path = tmp_path / "tokenizer.json"
    trained.save(str(path))
    counter = TokenizerCounter(path)
    text = "A worker claims a task and renews its lease."
    assert counter.text_tokens(text) == len(trained.encode(text, add_special_tokens=False).ids)
    msgs = [types.Message(role="user", content=text)]
    # 3 for the reply, 4 for the message, then the text's tokens
    assert counter.count(msgs) == 3 + 4 + counter.text_tokens(text)
    assert counter.count([]) == 3


def test_shipped_fixture_loads_and_counts_words_it_was_trained_on_compactly() -> None:
    counter = TokenizerCounter(TINY)
    assert counter.name == "tokenizer(tiny-bpe.json)"
    trained = counter.text_tokens("the journal of a task")
    unseen = counter.text_tokens("zyxwq vbnmk qwpoi")
    assert 0 < trained < unseen


def test_tokenizer_counter_refuses_missing_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidInput, match="does not exist"):
        TokenizerCounter(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(errors.InvalidInput, match="could not be loaded"):
        TokenizerCounter(bad)


def test_calibration_only_ever_counts_higher() -> None:
    c = Calibration()
    assert c.apply(100) == 100
    c = c.observe(estimated=100, reported=90)
    assert (c.ratio, c.samples, c.last_reported) == (1.0, 1, 90)
    c = c.observe(estimated=100, reported=130)
    assert c.ratio == 1.3 and c.apply(100) == 130
    c = c.observe(estimated=100, reported=110)
    assert c.ratio == 1.3
    assert Calibration.from_dict(c.to_dict()) == c
    assert c.bumped(1.25).ratio == pytest.approx(1.625)
