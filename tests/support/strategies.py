"""Hypothesis strategies for hostile text, shared by the property-based tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: characters that mean something somewhere on the way: header syntax, address syntax,
#: line breaks and controls, quoting, Jinja, bidirectional marks
SPECIAL = "\r\n\x00\t\x0b\x1b\x7f\x85\u2028\u202e:;,<>\"'\\()@[]. {}%#"
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(SPECIAL),
        st.characters(codec=None, categories=None),  # any code point, surrogates too
        st.sampled_from("abcxyz@example.com"),
    ),
    max_size=40,
)
