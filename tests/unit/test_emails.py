"""One canonical form per address, and no two different addresses folded into one account."""

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.emails import compatibility_fold, is_folded, lookup_form, normalize_email


@pytest.mark.parametrize(
    ("given_address", "canonical"),
    [
        ("Mario.Rossi@Example.COM", "mario.rossi@example.com"),
        ("kate@example.com", "kate@example.com"),
        ("ä.müller@example.de", "ä.müller@example.de"),
        ("дмитрий@пример.рф", "дмитрий@пример.рф"),
        ("用户@例子.广告", "用户@例子.广告"),
        # One DNS name, two spellings (IDNA's ASCII form): one mailbox.
        ("KATE@XN--BCHER-KVA.DE", "kate@bücher.de"),
    ],
)
def test_ascii_case_is_the_only_case_folded(given_address, canonical):
    assert normalize_email(given_address) == canonical


@pytest.mark.parametrize(
    ("look_alike", "names"),
    [
        ("\u212aate@example.com", "KELVIN SIGN"),
        ("\u017fam@example.com", "LONG S"),
        ("k\u0131te@example.com", "DOTLESS I"),
        ("\u0130ne@example.com", "WITH DOT ABOVE"),
        ("\uff4bate@example.com", "FULLWIDTH LATIN SMALL LETTER K"),
        ("\uff2bATE@example.com", "FULLWIDTH LATIN CAPITAL LETTER K"),
        ("kate@\uff45xample.com", "FULLWIDTH LATIN SMALL LETTER E"),
        ("stra\u00dfe@example.com", "SHARP S"),
        ("kate@xn--strae-oqa.de", "SHARP S"),  # straße.de, which folds into strasse.de
        ("\u00b5@example.com", "MICRO SIGN"),
        ("\ufb01le@example.com", "LIGATURE FI"),
        ("M\u00dcLLER@example.de", "CAPITAL LETTER U WITH DIAERESIS"),
        ("\u03c2@example.com", "FINAL SIGMA"),
    ],
)
def test_an_address_unicode_would_fold_into_another_is_refused(look_alike, names):
    with pytest.raises(ValueError, match=names):
        normalize_email(look_alike)


def test_spellings_that_unicode_maps_without_a_named_letter_are_refused():
    with pytest.raises(ValueError, match=r"another spelling of 'kate@example\.com\.org'"):
        normalize_email("kate@example.com\u3002org")  # an ideographic full stop
    with pytest.raises(ValueError, match="plain lower-case form"):
        normalize_email("a\u0301@example.com")  # decomposed: the same text as "á"


def test_peers_look_up_an_address_these_rules_refuse_exactly_as_stored():
    assert lookup_form("Kate@Example.com") == "kate@example.com"
    assert lookup_form("\u017fam@example.com") == "\u017fam@example.com"


ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# Letters and the others Unicode folds into them (case, compatibility, upper-casing).
LOOK_ALIKES = {
    "k": "kK\u212a\uff4b\uff2b",
    "s": "sS\u017f\uff53",
    "i": "iI\u0131\u0130\uff49",
    "a": "aA\uff41\u00aa",
    "u": "uU\u00fc\u00dc",
    "m": "mM\u00b5\u03bc\u039c",
}


@given(
    base=st.lists(st.sampled_from(sorted(LOOK_ALIKES)), min_size=1, max_size=8),
    data=st.data(),
)
def test_two_different_addresses_never_reach_one_account(base, data):
    """Spellings that differ beyond ASCII case never share a canonical form, nor fold together."""
    account_of = {}
    for _ in range(6):
        spelled = "".join(data.draw(st.sampled_from(LOOK_ALIKES[letter])) for letter in base)
        address = spelled + "@example.com"
        try:
            canonical = normalize_email(address)
        except ValueError:
            continue
        assert is_folded(canonical) and normalize_email(canonical) == canonical
        account_of[address.translate(ASCII_LOWER)] = canonical
    assert len(set(account_of.values())) == len(account_of), account_of
    folds = {compatibility_fold(canonical) for canonical in account_of.values()}
    assert len(folds) == len(account_of), account_of


def test_an_encoded_word_is_refused_since_mail_software_decodes_it_into_another_address():
    with pytest.raises(ValueError, match="must not contain '=\\?'"):
        normalize_email("=?utf-8?q?stranger=40example.org?=@example.com")
