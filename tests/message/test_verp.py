"""VERP return paths: an address names its job and nothing else can be made to; it
survives case folding, fits the 64-octet local part, rotates its secrets, and a base
that leaves no room for the token is refused."""

from __future__ import annotations

import pickle
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailspool.errors import ConfigError
from mailspool.message.addresses import normalize
from mailspool.message.unsubscribe import Secrets, make_token, read_token
from mailspool.message.verp import (
    ENV_SECRET,
    ENV_SECRET_FILE,
    MAX_BASE_LOCAL,
    TOKEN_CHARS,
    ReturnPath,
    check_return_path,
    make_return_path,
    read_return_path,
    secrets_from_environment,
)
from mailspool.models import job_id
from tests.support.strategies import TEXT

LEAN = settings(max_examples=200, deadline=None)
OLD = "old-secret-" + "o" * 30
NEW = "new-secret-" + "n" * 30
OTHER = "another-one-" + "x" * 30
SECRETS = Secrets([NEW, OLD])
BASE = "bounces@bounce.example.com"
JOB = job_id("spring", "ann@example.com")
LONGEST = "b" * MAX_BASE_LOCAL + "@bounce.example.com"

JOB_IDS = st.binary(min_size=16, max_size=16).map(bytes.hex)


def test_round_trip_names_the_job_and_keeps_the_base() -> None:
    address = make_return_path(SECRETS, BASE, JOB)
    local, _, domain = address.rpartition("@")
    assert domain == "bounce.example.com"
    assert local.startswith("bounces+")
    token = local.removeprefix("bounces+")
    assert len(token) == TOKEN_CHARS == 40
    assert set(token) <= set(string.ascii_lowercase + "234567")
    assert normalize(address) == address  # a valid address as it is
    assert read_return_path(SECRETS, address, BASE) == JOB
    assert read_return_path(SECRETS, f"<{address}>", BASE) == JOB
    # the same job, the same address: a retry's bounce names the same job
    assert make_return_path(SECRETS, BASE, JOB) == address


def test_case_folded_addresses_still_read() -> None:
    address = make_return_path(SECRETS, BASE, JOB)
    assert read_return_path(SECRETS, address.upper(), BASE) == JOB
    assert read_return_path(SECRETS, address.lower(), BASE) == JOB
    assert read_return_path(SECRETS, address.swapcase(), "Bounces@Bounce.Example.COM") == JOB


@pytest.mark.parametrize("base", [BASE, LONGEST, "a.b-c_d+e@xn--bcher-kva.example"])
def test_the_local_part_stays_within_64_octets(base: str) -> None:
    address = make_return_path(SECRETS, base, JOB)
    assert len(address.rpartition("@")[0].encode()) <= 64
    assert read_return_path(SECRETS, address, base) == JOB


def test_a_base_with_no_room_for_the_token_is_refused() -> None:
    too_long = "b" * (MAX_BASE_LOCAL + 1) + "@bounce.example.com"
    with pytest.raises(ConfigError, match=r"--return-path.*at most 23"):
        check_return_path(too_long)
    with pytest.raises(ValueError, match="at most 23"):
        make_return_path(SECRETS, too_long, JOB)
    for bad in ("", "bounces", "@example.com", "bounces@", "a b@example.com", '"x"@example.com'):
        with pytest.raises(ConfigError, match="--return-path"):
            check_return_path(bad)
    assert check_return_path("Bounces@Bounce.EXAMPLE.com") == "Bounces@bounce.example.com"


def every_change(address: str) -> list[str]:
    """``address`` with each character of its token replaced by every other base32 one
    (not only by another case of itself, which reads the same), truncated, extended."""
    local, _, domain = address.rpartition("@")
    start = local.index("+") + 1
    out = []
    for i in range(start, len(local)):
        for c in string.ascii_lowercase + "234567":
            if c != local[i].lower():
                out.append(f"{local[:i]}{c}{local[i + 1 :]}@{domain}")
    out += [f"{local[:-1]}@{domain}", f"{local}a@{domain}", f"{local}@{domain}x"]
    out += [f"{local[:-n]}@{domain}" for n in range(2, TOKEN_CHARS + 1)]
    out += [f"x{local}@{domain}", f"{local}@other.example.com", local, f"{local}@"]
    return out


def test_any_change_to_the_address_reads_as_none() -> None:
    address = make_return_path(SECRETS, BASE, JOB)
    changed = every_change(address)
    assert len(changed) > TOKEN_CHARS * 31
    for other in changed:
        assert read_return_path(SECRETS, other, BASE) is None, other


def test_another_secret_or_another_base_reads_as_none() -> None:
    address = make_return_path(SECRETS, BASE, JOB)
    assert read_return_path(Secrets([OTHER]), address, BASE) is None
    assert read_return_path(SECRETS, address, "bounces@other.example.com") is None
    assert read_return_path(SECRETS, address, "returns@bounce.example.com") is None


def test_rotation_first_signs_every_one_verifies() -> None:
    old = make_return_path(Secrets([OLD]), BASE, JOB)
    new = make_return_path(Secrets([NEW, OLD]), BASE, JOB)
    assert old != new
    assert new == make_return_path(Secrets([NEW]), BASE, JOB)
    assert read_return_path(Secrets([NEW, OLD]), old, BASE) == JOB
    assert read_return_path(Secrets([NEW, OLD]), new, BASE) == JOB
    assert read_return_path(Secrets([NEW]), old, BASE) is None  # the old one removed


def test_labels_keep_return_paths_and_unsubscribe_links_apart() -> None:
    """The same secret for both: neither kind of value is the other's."""
    address = make_return_path(SECRETS, BASE, JOB)
    token = make_token(SECRETS, "ann@example.com", "default", "spring")
    assert read_return_path(SECRETS, address, BASE) == JOB
    assert read_token(SECRETS, token).address == "ann@example.com"
    assert token not in address


def test_bad_job_ids_are_refused() -> None:
    for bad in ("", "0" * 31, "0" * 33, "g" * 32, JOB.upper()):
        with pytest.raises(ValueError, match="not a job id"):
            make_return_path(SECRETS, BASE, bad)


def test_return_path_pickles_and_never_shows_its_secrets() -> None:
    rp = ReturnPath("Bounces@Bounce.Example.com", SECRETS)
    assert rp.base == "Bounces@bounce.example.com"
    again = pickle.loads(pickle.dumps(rp))
    assert again.read(rp.address(JOB)) == JOB
    assert NEW not in repr(rp) + str(rp) and OLD not in repr(rp)


def test_secrets_from_the_environment(tmp_path: Path) -> None:
    address = make_return_path(SECRETS, BASE, JOB)
    assert read_return_path(secrets_from_environment({ENV_SECRET: f"{NEW},{OLD}"}), address, BASE)
    path = tmp_path / "secret"
    path.write_text(f"{NEW}\n")
    found = secrets_from_environment({ENV_SECRET_FILE: str(path)})
    assert read_return_path(found, address, BASE) == JOB
    with pytest.raises(ConfigError, match=f"--return-path.*{ENV_SECRET}.*{ENV_SECRET_FILE}"):
        secrets_from_environment({})
    with pytest.raises(ConfigError, match="not both"):
        secrets_from_environment({ENV_SECRET: NEW, ENV_SECRET_FILE: str(path)})
    with pytest.raises(ConfigError, match="at least 32") as info:
        secrets_from_environment({ENV_SECRET: "short-secret"})
    assert ENV_SECRET in str(info.value) and "short-secret" not in str(info.value)
    with pytest.raises(ConfigError, match=f"{ENV_SECRET_FILE}: cannot read"):
        secrets_from_environment({ENV_SECRET_FILE: str(tmp_path / "missing")})


@LEAN
@given(JOB_IDS)
def test_every_job_id_round_trips(jid: str) -> None:
    address = make_return_path(SECRETS, BASE, jid)
    assert read_return_path(SECRETS, address, BASE) == jid
    assert read_return_path(SECRETS, address.upper(), BASE) == jid


@LEAN
@given(
    st.one_of(
        TEXT,
        st.text(max_size=120),
        st.builds(
            lambda t: f"bounces+{t}@bounce.example.com",
            st.text(alphabet=string.ascii_letters + "0123456789", min_size=40, max_size=40),
        ),
    )
)
def test_arbitrary_text_never_raises_nor_reads_as_a_job(text: str) -> None:
    assert read_return_path(SECRETS, text, BASE) is None


@LEAN
@given(JOB_IDS, st.integers(min_value=0), st.sampled_from(string.ascii_lowercase + "234567"))
def test_a_made_address_changed_anywhere_in_its_token_reads_as_none(
    jid: str, at: int, c: str
) -> None:
    address = make_return_path(SECRETS, BASE, jid)
    i = len("bounces+") + at % TOKEN_CHARS
    if address[i].lower() != c:
        changed = address[:i] + c + address[i + 1 :]
        assert read_return_path(SECRETS, changed, BASE) is None
