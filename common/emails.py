"""Email addresses, the identity of a user in both services: one rule for what is valid.

An address names an account, so two different addresses must never reach
one account. :func:`normalize_email` is the only comparison form: requests'
bodies, paths and query strings, gRPC requests and the emails credentials
are bound to all go through it before they are stored, looked up or compared.

It folds ASCII letters to lower case (``Mario.Rossi@X.com`` and
``mario.rossi@x.com`` are one user, as every mail provider has them) and
nothing else. Unicode's case folding and compatibility normalization would
fold far more: U+212A KELVIN SIGN into ``k``, U+017F LATIN SMALL LETTER LONG S
into ``s``, full-width letters into ASCII ones, and upper-casing takes U+0131
LATIN SMALL LETTER DOTLESS I to ``I`` as it does ``i``. An identity provider
may well hold "kate@example.com" spelled with a KELVIN SIGN and with a ``k``
as two people, so an address that any of these foldings would change is
refused rather than folded. Every address accepted is its own compatibility
case fold (Unicode's compatibility caseless match, D146), and so is its
upper-case form: two accepted addresses that differ never fold into one,
whichever of these rules another system applies. Letters that only look
alike (a Cyrillic and a Latin ``a``) are different letters that no folding
merges: they stay different addresses of different accounts.

The one folding beyond ASCII case is the domain's spelling in IDNA: an
internationalized domain written as its ASCII ``xn--`` form is stored in its
Unicode form, since both spell one DNS name (one mailbox, not two).
"""

import string
import unicodedata

from email_validator import EmailNotValidError, validate_email

EMAIL_MAX_LENGTH = 254
# How an RFC 2047 encoded word opens: "=?utf-8?q?...?=" in a header is decoded by mail software.
ENCODED_WORD = "=?"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def normalize_email(value: str) -> str:
    """Return the canonical form of an email address, or raise ``ValueError`` saying why.

    Syntax is checked by email-validator (no DNS lookups: a request must not
    wait on the network). ASCII letters are lower-cased; an address holding
    anything Unicode would fold further is refused (see the module's doc).
    """
    if len(value) > EMAIL_MAX_LENGTH:
        raise ValueError(f"must be at most {EMAIL_MAX_LENGTH} characters")
    if ENCODED_WORD in value:
        # Valid in a local part, but mail software decodes it in headers: into another address.
        raise ValueError(f"must not contain {ENCODED_WORD!r}")
    simple = value.translate(_ASCII_LOWER)
    if not is_folded(simple):
        raise ValueError(_folding_complaint(simple))
    try:
        result = validate_email(simple, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None
    normalized = result.normalized
    local_part, _, domain = simple.rpartition("@")
    if result.local_part != local_part or domain not in (result.domain, result.ascii_domain):
        # IDNA maps more than case in a domain (an ideographic full stop to a dot, say).
        raise ValueError(f"is another spelling of {normalized!r}: write that instead")
    if not is_folded(normalized):
        # An xn-- domain that decodes to letters Unicode folds (ß: strasse and straße).
        raise ValueError(_folding_complaint(normalized))
    if len(normalized) > EMAIL_MAX_LENGTH:
        # Normalization can lengthen an address (an xn-- domain decoded).
        raise ValueError(f"must be at most {EMAIL_MAX_LENGTH} characters")
    return normalized


def ascii_domain_form(address: str) -> str:
    """Return ``address`` with its domain in IDNA's ASCII form (``xn--bcher-kva.de``).

    One mailbox either way, and a mail server without SMTPUTF8 takes only
    ASCII; only a local part beyond ASCII needs a server with it.
    """
    if address.rpartition("@")[2].isascii():
        return address
    result = validate_email(address, check_deliverability=False)
    return f"{result.local_part}@{result.ascii_domain}"


def lookup_form(value: str) -> str:
    """Return the form to look a stored address up by: canonical, else exactly as given.

    For peers asking about addresses that are already stored (the other
    service's rows, which earlier rules may have accepted): an address these
    rules refuse is matched exactly, which can never fold two addresses into
    one, so such a user stays reachable instead of looking deleted.
    """
    try:
        return normalize_email(value)
    except ValueError:
        return value


def compatibility_fold(text: str) -> str:
    """Return Unicode's compatibility caseless form of ``text`` (D146), composed (NFC)."""
    once = unicodedata.normalize("NFKD", unicodedata.normalize("NFD", text).casefold())
    return unicodedata.normalize("NFC", unicodedata.normalize("NFKD", once.casefold()))


def is_folded(text: str) -> bool:
    """Tell whether no case folding, compatibility mapping or upper-casing changes ``text``."""
    return compatibility_fold(text) == text and compatibility_fold(text.upper()) == text


def _folding_complaint(text: str) -> str:
    for char in text:
        if not is_folded(char):
            name = unicodedata.name(char, "unnamed")
            return (
                f"contains {char!r} (U+{ord(char):04X} {name}), which Unicode folds into "
                f"{compatibility_fold(char.upper())!r}: write the address with plain "
                "lower-case letters"
            )
    return "is not in its plain lower-case form (Unicode would fold it into another address)"
