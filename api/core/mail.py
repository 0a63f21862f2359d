"""The one way the platform sends mail: SMTP when `AETL_SMTP_URL` is set, else the outbox folder.

The outbox (`$AETL_DATA_DIR/outbox`, one `.eml` file per message) is the development mailer:
nothing leaves the machine, and tests read the messages from there.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from api.core.config import Settings, get_settings
from api.core.security import utcnow

logger = logging.getLogger("api.mail")


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: bool


def parse_smtp_url(url: str) -> SmtpTarget:
    """`smtp://user:pass@host:587?starttls=true` or `smtps://user:pass@host:465`."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("AETL_SMTP_URL must look like smtp://user:pass@host:port or smtps://...")
    implicit_tls = parts.scheme == "smtps"
    query = parse_qs(parts.query)
    starttls = not implicit_tls and query.get("starttls", ["false"])[0].lower() in ("1", "true", "yes")
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or (465 if implicit_tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=implicit_tls,
        starttls=starttls,
    )


def build_message(settings: Settings, *, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = utcnow().strftime("%a, %d %b %Y %H:%M:%S +0000")
    message.set_content(body)
    return message


def _send_smtp(target: SmtpTarget, message: EmailMessage, timeout: float) -> None:
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if target.implicit_tls:
        smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(target.host, target.port, timeout=timeout)
    with smtp:
        if target.starttls:
            smtp.starttls(context=context)
        if target.username:
            smtp.login(target.username, target.password or "")
        smtp.send_message(message)


def _write_outbox(folder: Path, message: EmailMessage) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
    # write then rename: a reader never sees half a message
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(message.as_bytes())
    final = folder / f"{stamp}_{Path(tmp).stem.lstrip('.')}.eml"
    os.replace(tmp, final)
    return final


def send_mail(*, to: str, subject: str, body: str, settings: Settings | None = None) -> None:
    """Sends one plain-text mail. SMTP failures are logged (without the message body, which may
    hold a token) and swallowed: the caller's answer must not depend on the mail server."""
    settings = settings or get_settings()
    message = build_message(settings, to=to, subject=subject, body=body)
    if settings.smtp_url is None:
        path = _write_outbox(settings.mail_outbox_dir, message)
        logger.info("mail to outbox: %s (%s)", path.name, subject)
        return
    target = parse_smtp_url(settings.smtp_url.get_secret_value())
    try:
        _send_smtp(target, message, settings.smtp_timeout_seconds)
        logger.info("mail sent via %s:%s (%s)", target.host, target.port, subject)
    except (OSError, smtplib.SMTPException) as exc:
        logger.error("mail to %s:%s failed: %s", target.host, target.port, type(exc).__name__)


def read_outbox(folder: Path) -> list[EmailMessage]:
    """Every message in an outbox folder, oldest first (for development tools and tests)."""
    if not folder.is_dir():
        return []
    parser = BytesParser(policy=default_policy)
    out: list[EmailMessage] = []
    for path in sorted(folder.glob("*.eml")):
        with path.open("rb") as f:
            msg = parser.parse(f)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out
