"""E-mail addresses: the one rule for what the service accepts, stores and hands to SMTP.

Syntax only (``email-validator``, no DNS): plain ``local@domain`` with a dotted domain,
no display name, no quoted local part, no domain literal and ASCII before the @ — the forms
every mail relay reads the same way we do. ``xss.probe+<b>@example.org`` or
``"><script>…@example.org`` are refused rather than handed to a mailer that may read them
differently. The address kept is the normalised one (domain lower-cased, IDNA for a
non-ASCII domain). Error messages never quote the address (it is personal data).
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

MAX_EMAIL_CHARS = 254  # RFC 5321 path limit, as the database column


class InvalidEmail(ValueError):
    """Not an address we accept; ``str()`` is safe to show and does not repeat the address."""


def normalise_email(text: str) -> str:
    """The normalised form of ``text`` (surrounding spaces ignored), or raise InvalidEmail."""
    candidate = text.strip()
    if not candidate or len(candidate) > MAX_EMAIL_CHARS:
        raise InvalidEmail("not an e-mail address")
    try:
        checked = validate_email(
            candidate,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
        )
    except EmailNotValidError:
        raise InvalidEmail("not an e-mail address") from None
    address = checked.ascii_email or checked.normalized
    if len(address) > MAX_EMAIL_CHARS:
        raise InvalidEmail("not an e-mail address")
    return address


def email_or_none(text: str) -> str | None:
    """The normalised address, or None when :func:`normalise_email` refuses ``text``."""
    try:
        return normalise_email(text)
    except InvalidEmail:
        return None


def is_valid_email(text: str) -> bool:
    """Whether :func:`normalise_email` accepts ``text``."""
    return email_or_none(text) is not None
