"""Email over SMTP (aiosmtplib): multipart text + HTML from templates.

Connections are pooled and reused across sends for as long as the dispatcher runs. Security is
explicit (none | starttls | tls): aiosmtplib's default would upgrade only when the server offers
STARTTLS, which a man in the middle can strip. RFC 5321: 4xx transient, 5xx permanent. The
Message-ID is derived from the notification's idempotency key, identical on every attempt; every
email of one alert names the same thread root in References (and In-Reply-To after the first), so
its reminders and resolution thread under the first. `Auto-Submitted: auto-generated` (RFC 3834)
keeps vacation responders quiet; a tenant destination's email carries List-Unsubscribe with
one-click POST (RFC 8058) when messages.public_url is set.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Optional

import aiosmtplib

from channels.base import Channel, DeliveryResult, Message, answer_excerpt, peer_address
from engine.config import EmailChannelConfig
from engine.errors import NotifyError
from engine.messages import Composer, Recipient
from engine.templating import render
from engine.action_links import message_action_links
from engine.unsubscribe import make_unsubscribe_token, unsubscribe_url

log = logging.getLogger(__name__)


class EmailChannel(Channel):
    name = "email"

    def __init__(self, config: EmailChannelConfig, *, templates_root: Optional[Path] = None,
                 composer: Optional[Composer] = None):
        self.config = config
        self.composer = composer or Composer()
        self._warned_unsigned = False
        self.templates_root = templates_root
        self._idle: list[aiosmtplib.SMTP] = []

    def _unsubscribe_link(self, message: Message) -> Optional[str]:
        full = self.composer.config
        if not message.destination_id or not full.messages.public_url:
            return None  # ops routes cannot unsubscribe; without a public URL there is nothing to click
        try:
            token = make_unsubscribe_token(full, uuid.UUID(message.destination_id),
                                           str(message.alert.get("kind")), message.now)
        except NotifyError as exc:
            if not self._warned_unsigned:
                self._warned_unsigned = True
                log.warning("email: no List-Unsubscribe header: %s", exc)
            return None
        return unsubscribe_url(full, token)

    def build(self, message: Message) -> EmailMessage:
        recipient = Recipient(message.destination_id, message.timezone, message.locale, message.recipient)
        if message.group is not None:
            # A group message (issue 15): its members listed, each by its own kind's subject.
            link = None
            context = self.composer.group_context(
                message.group, message.severity, recipient,
                lambda kind, member: render("email", kind, "subject", member, root=self.templates_root),
                message_id=message.notification_id)
            kind = "group"
        else:
            link = self._unsubscribe_link(message)
            context = self.composer.context(
                message.alert, message.transition, message.severity, message.reminder_no, recipient,
                unsubscribe_url=link, action_links=message_action_links(self.composer.config, message))
            kind = message.alert.get("kind", "default")
        subject = render("email", kind, "subject", context, root=self.templates_root)
        text = render("email", kind, "text", context, root=self.templates_root)
        html = render("email", kind, "html", context, root=self.templates_root)
        email = EmailMessage()
        email["From"] = self.config.sender
        email["To"] = message.recipient
        email["Subject"] = " ".join(subject.split())  # a header is one line
        email["Date"] = format_datetime(message.now)
        domain = self.config.sender.rpartition("@")[2] or "notify-engine"
        email["Message-ID"] = f"<{message.idempotency_key}@{domain}>"
        email["Auto-Submitted"] = "auto-generated"
        if message.alert_id:   # a group message is about several alerts: no thread of its own
            email["X-Notify-Alert-Id"] = message.alert_id
            thread_root = f"<alert-{message.alert_id}@{domain}>"
            email["References"] = thread_root
            if message.transition != "opened":
                email["In-Reply-To"] = thread_root
        if link:
            email["List-Unsubscribe"] = f"<{link}>"
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email.set_content(text + "\n")
        email.add_alternative(html, subtype="html")
        return email

    async def open(self) -> None:
        await self.composer.prepare()

    async def _connect(self) -> aiosmtplib.SMTP:
        cfg = self.config
        client = aiosmtplib.SMTP(hostname=cfg.host, port=cfg.port, timeout=cfg.timeout,
                                 use_tls=cfg.security == "tls", start_tls=cfg.security == "starttls",
                                 cert_bundle=cfg.ca_file)
        try:
            await client.connect()
            if cfg.username:
                await client.login(cfg.username, cfg.password or "")
        except BaseException:
            client.close()  # a refused STARTTLS or AUTH must not leave a half-open connection behind
            raise
        return client

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()

    async def send(self, message: Message) -> DeliveryResult:
        email = self.build(message)  # a TemplateFailure propagates: the dispatcher records it
        recipients = [a.strip() for a in message.recipient.split(",") if a.strip()]
        for attempt in (1, 2):
            client = self._idle.pop() if self._idle else None
            reused = client is not None
            try:
                if client is None:
                    client = await self._connect()
                refused, _ = await client.send_message(email, recipients=recipients)
                self._idle.append(client)
            except aiosmtplib.SMTPServerDisconnected:
                if reused and attempt == 1:
                    continue  # the server dropped an idle pooled connection: one fresh try
                return DeliveryResult.transient("SMTP server disconnected")
            except aiosmtplib.SMTPRecipientsRefused as exc:
                address = _peer(client)
                self._release(client)
                return _refused_result([e.code for e in exc.recipients], len(recipients)).answered(
                    str(max(e.code for e in exc.recipients)) if exc.recipients else None,
                    answer_excerpt("; ".join(e.message for e in exc.recipients).encode()), address)
            except aiosmtplib.SMTPResponseException as exc:
                address = _peer(client)
                self._release(client)
                return _reply_result(exc.code, exc.message).answered(
                    str(exc.code), answer_excerpt((exc.message or "").encode()), address)
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
                if client is not None:
                    client.close()
                return DeliveryResult.transient(f"SMTP connection failed: {type(exc).__name__}")
            if refused:
                # Accepted for some recipients: the message is out; retrying would repeat it to them.
                codes = sorted({code for code, _ in refused.values()})
                return DeliveryResult.sent(f"{len(refused)} of {len(recipients)} recipients refused "
                                           f"({', '.join(map(str, codes))})", code="250", address=_peer(client))
            return DeliveryResult.sent(code="250", address=_peer(client))
        return DeliveryResult.transient("SMTP server disconnected")  # pragma: no cover

    def _release(self, client: Optional[aiosmtplib.SMTP]) -> None:
        if client is not None and client.is_connected:
            self._idle.append(client)


def _peer(client: Optional[aiosmtplib.SMTP]) -> Optional[str]:
    """The SMTP server's address this client is connected to, for the attempt ledger."""
    transport = getattr(client, "transport", None)
    return peer_address(transport.get_extra_info("peername")) if transport is not None else None


def _reply_result(code: int, text: str) -> DeliveryResult:
    # The server's text can quote addresses; keep only the code and a short first line.
    first = (text or "").splitlines()[0][:80] if text else ""
    if "@" in first:
        first = ""
    error = f"SMTP {code}" + (f" {first}" if first else "")
    return DeliveryResult.transient(error) if 400 <= code < 500 else DeliveryResult.permanent(error)


def _refused_result(codes: list[int], total: int) -> DeliveryResult:
    shown = ", ".join(map(str, sorted(set(codes))))
    error = f"SMTP all {total} recipients refused ({shown})"
    # Only a permanent refusal of every recipient is final; any 4xx among them may heal.
    if all(500 <= c < 600 for c in codes):
        return DeliveryResult.permanent(error)
    return DeliveryResult.transient(error)
