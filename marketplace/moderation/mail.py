"""The confirmation mail: what it says, and sending it through SMTP (``MARKETPLACE_SMTP_*``).

The password is read from its file at each sending (so it can be rotated) and is never
written anywhere; a failure is reported without it.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from marketplace.metadata.model import format_date
from marketplace.moderation.store import Upload
from marketplace.store.base import StoreError

log = logging.getLogger(__name__)
TIMEOUT = 30
ACTIONS = ("confirm", "abort", "abuse")


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
                    password = Path(self.password_file).read_text(encoding="utf-8").strip()
                    smtp.login(self.user, password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
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
    title = _one_line(upload.title or "an appliance")
    message = EmailMessage()
    message["To"] = upload.email
    message["Subject"] = f"Confirm the publication of {title[:80]} in {_one_line(site)}"
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="marketplace")
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(f"""\
Someone uploaded to {site} a metadata document endorsed with your name:

  title:       {title}
  identifier:  {upload.identifier}
  endorser:    {upload.email}
  certificate: {_one_line(upload.subject or "")}
  endorsed on: {upload.created}

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


def _one_line(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())
