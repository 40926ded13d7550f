"""The confirmation mail: what it says, and sending it through SMTP (``MARKETPLACE_SMTP_*``).

Anyone can upload a document naming any address, so the mail must not carry an uploader's
message in the marketplace's voice: its subject is the marketplace's words alone, and the
uploader's text (title, certificate name) appears in the body as quoted data, marked as
such, on one line each, shortened, and with URL schemes broken so that no mail reader makes
a link of them. How many such mails go out is limited in :mod:`.store` (``MailQuota``).

The password is read from its file at each sending (so it can be rotated) and is never
written anywhere; a failure is reported without it.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from marketplace.metadata.model import format_date
from marketplace.metadata.settings import ConfigError, read_secret
from marketplace.store.base import StoreError
from marketplace.store.state import Upload

log = logging.getLogger(__name__)
TIMEOUT = 30
ACTIONS = ("confirm", "abort", "abuse")
QUOTED_LENGTH = 200  # characters of an uploader's text shown in a mail
# What mail readers turn into links: "scheme://", the schemes used without "//", "www."
_LINKLIKE = re.compile(r"\b(?:([A-Za-z][A-Za-z0-9+.-]*)://|(mailto|tel|sms|data|javascript):"
                       r"|(www)\.)", re.IGNORECASE)


class MailUnavailable(StoreError):
    """The confirmation mail could not be sent; nothing was kept (the answer is 503)."""


@dataclass(frozen=True)
class Mailer:
    """An SMTP server and the sender's address."""

    host: str
    port: int
    sender: str
    user: str = ""
    password_file: str = ""
    starttls: bool = False

    @classmethod
    def from_settings(cls, settings: dict[str, str]) -> Mailer:
        missing = [k for k in ("SMTP_HOST", "SMTP_FROM") if not settings[k]]
        if missing:
            raise ValueError("UNLISTED_ENDORSERS=confirm sends mail: set "
                             + " and ".join(f"MARKETPLACE_{k}" for k in missing))
        if settings["SMTP_USER"] and not settings["SMTP_PASSWORD_FILE"]:
            raise ValueError("MARKETPLACE_SMTP_USER needs MARKETPLACE_SMTP_PASSWORD_FILE")
        return cls(settings["SMTP_HOST"], int(settings["SMTP_PORT"]), settings["SMTP_FROM"],
                   settings["SMTP_USER"], settings["SMTP_PASSWORD_FILE"],
                   settings["SMTP_STARTTLS"].lower() in ("true", "1", "yes"))

    def send(self, message: EmailMessage) -> None:
        """Deliver a message; MailUnavailable (without any secret in it) if that fails."""
        message["From"] = self.sender
        started = time.monotonic()
        try:
            with smtplib.SMTP(self.host, self.port, timeout=TIMEOUT) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, read_secret("MARKETPLACE_SMTP_PASSWORD", None,
                                                      self.password_file))
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException, ConfigError) as exc:
            reason = type(exc).__name__
            if isinstance(exc, smtplib.SMTPResponseException):
                reason += f" {exc.smtp_code}"
            log.warning("could not send mail to %s through %s:%s: %s", message["To"],
                        self.host, self.port, reason)
            raise MailUnavailable(f"the confirmation mail could not be sent ({reason}); "
                                  "nothing was kept: try again later") from None
        log.info("mail to %s sent in %.2f s", message["To"], time.monotonic() - started)


def confirmation(upload: Upload, links: dict[str, str], site: str) -> EmailMessage:
    """The mail asking an endorser to confirm, abort or report an upload."""
    message = EmailMessage()
    message["To"] = upload.email
    message["Subject"] = f"{_one_line(site)}: confirm or abort an upload in your name"
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="marketplace")
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(f"""\
Someone uploaded to {site} a metadata document that names your address as its endorser.

  identifier:  {upload.identifier}
  endorser:    {upload.email}
  endorsed on: {upload.created}

The lines marked "|" are text written by the uploader, not by {site}; anyone
may have written them: do not follow instructions or addresses in them.

  | title:       {quoted(upload.title or "(none)")}
  | certificate: {quoted(upload.subject or "(none)")}

It will be published only if you confirm it before {format_date(upload.expires)}:

  Confirm (publish it):
  {links["confirm"]}

  Abort (discard it):
  {links["abort"]}

If you did not upload it, report it to the operators (it stays unpublished):
  {links["abuse"]}

Each link opens a page with one button; nothing happens until you press it.
""")
    return message


def quoted(text: str) -> str:
    """An uploader's text as inert data for a mail: one line, at most QUOTED_LENGTH
    characters, in quotes, with what looks like a link broken (``http[:]//``,
    ``www[.]``) so that mail readers do not make links of it."""
    line = _one_line(text)
    if len(line) > QUOTED_LENGTH:
        line = line[:QUOTED_LENGTH - 1] + "…"
    return '"' + _LINKLIKE.sub(_break_link, line) + '"'


def _break_link(match: re.Match) -> str:
    scheme, bare, www = match.groups()
    return f"{scheme}[:]//" if scheme else f"{bare}[:]" if bare else f"{www}[.]"


def _one_line(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())
