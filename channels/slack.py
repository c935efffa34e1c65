"""Slack: chat.postMessage through slack-sdk's AsyncWebClient (Block Kit from templates), or an
incoming-webhook URL as the target.

slack-sdk's own retry handlers are turned off: the dispatcher owns retries, with backoff and
Retry-After, and records every attempt. An incoming-webhook URL is tenant input, so it is posted
through the same SSRF-guarded session and code as webhooks (`post_guarded_answer`: canonical host,
guard, no redirects, no environment proxies, a bounded read, channels.slack.timeout as the one
deadline), not through slack-sdk's webhook client, which follows redirects, reads HTTP(S)_PROXY,
reads whole bodies and retries. base_url (ops config) is not guarded: docs/SECURITY.md says why.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from channels.base import Channel, DeliveryResult, Message, answer_excerpt, parse_retry_after
from channels.ssrf import Resolve
from channels.webhook import NotAnswered, encode_payload, guarded_session, post_guarded_answer
from engine.action_links import message_action_links, offers_actions, slack_buttons
from engine.config import SlackChannelConfig
from engine.messages import Composer, Recipient
from engine.templating import render, render_json

# Errors that do not heal by retrying (Slack Web API docs; PITFALLS.md).
PERMANENT_ERRORS = frozenset({
    "channel_not_found", "not_in_channel", "invalid_auth", "account_inactive", "token_revoked",
    "token_expired", "not_authed", "is_archived", "channel_is_archived", "msg_too_long", "no_text",
    "invalid_blocks", "invalid_blocks_format", "missing_scope", "restricted_action",
    "team_access_not_granted", "ekm_access_denied", "invalid_arguments", "no_permission",
    "cannot_reply_to_message", "duplicate_channel_not_found", "access_denied",
})


class SlackChannel(Channel):
    name = "slack"

    def __init__(self, config: SlackChannelConfig, *, allow_private_networks: bool = False,
                 resolve: Optional[Resolve] = None, templates_root: Optional[Path] = None,
                 composer: Optional[Composer] = None):
        self.config = config
        self.composer = composer or Composer()
        self.allow_private_networks = allow_private_networks
        self.templates_root = templates_root
        self._resolve = resolve
        self._api_session: Optional[aiohttp.ClientSession] = None
        self._hook_session: Optional[aiohttp.ClientSession] = None
        self._client: Optional[AsyncWebClient] = None

    async def open(self) -> None:
        await self.composer.prepare()
        if self._api_session is None:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout)
            self._api_session = aiohttp.ClientSession(timeout=timeout, trust_env=False)
            self._hook_session = guarded_session(self.allow_private_networks, self._resolve, timeout, 16)
            base_url = self.config.base_url if self.config.base_url.endswith("/") else self.config.base_url + "/"
            self._client = AsyncWebClient(token=self.config.token or None, base_url=base_url,
                                          timeout=int(self.config.timeout) or 1, session=self._api_session,
                                          retry_handlers=[])

    async def close(self) -> None:
        for session in (self._api_session, self._hook_session):
            if session is not None:
                await session.close()
        self._api_session = self._hook_session = None
        self._client = None

    def build(self, message: Message) -> tuple[str, list]:
        """The notification's fallback text and its Block Kit blocks. An ops route's message about
        an open alert carries Ack/Resolve: interactive buttons when it goes through the Web API
        and channels.slack.signing_secret can verify their callbacks, else link buttons to the
        confirmation pages (engine.action_links). A group message (issue 15) lists its members,
        each by its own kind's words, and carries no buttons."""
        recipient = Recipient(message.destination_id, message.timezone, message.locale, None)
        if message.group is not None:
            context = self.composer.group_context(
                message.group, message.severity, recipient,
                lambda kind, member: render("slack", kind, "text", member, root=self.templates_root),
                message_id=message.notification_id)
            kind = "group"
        else:
            links, buttons = None, None
            if self.config.signing_secret and not message.recipient.startswith(("https://", "http://")):
                if offers_actions(alert_id=message.alert_id, transition=message.transition,
                                  status=message.alert.get("status"), ops_route=message.destination_id is None):
                    buttons = slack_buttons(message.alert_id, message.alert.get("status"))
            else:
                links = message_action_links(self.composer.config, message)
            context = self.composer.context(
                message.alert, message.transition, message.severity, message.reminder_no, recipient,
                action_links=links, slack_buttons=buttons)
            kind = message.alert.get("kind", "default")
        text = render("slack", kind, "text", context, root=self.templates_root)
        return text, render_json("slack", kind, "blocks", context, root=self.templates_root)

    async def send(self, message: Message) -> DeliveryResult:
        await self.open()
        text, blocks = self.build(message)
        if message.recipient.startswith(("https://", "http://")):
            return await self._send_incoming_webhook(message, text, blocks)
        if not self.config.token:
            return DeliveryResult.permanent("channels.slack.token is not set")
        assert self._client is not None
        try:
            await self._client.chat_postMessage(channel=message.recipient, text=text, blocks=blocks)
            return DeliveryResult.sent(code="ok")
        except SlackApiError as exc:
            response = exc.response
            code = response.get("error") if isinstance(response.data, dict) else None
            # The ledger's code: Slack's error name, else the HTTP status.
            answered = dict(code=str(code or response.status_code),
                            excerpt=answer_excerpt(str(response.data).encode()) if response.data else None)
            if response.status_code == 429 or code == "ratelimited":
                return DeliveryResult.transient("Slack rate limited (429)",
                                                parse_retry_after(response.headers.get("Retry-After")
                                                                  or response.headers.get("retry-after"), message.now),
                                                **answered)
            if code in PERMANENT_ERRORS:
                return DeliveryResult.permanent(f"Slack error {code}", **answered)
            if code is None and 400 <= response.status_code < 500:
                return DeliveryResult.permanent(f"Slack HTTP {response.status_code}", **answered)
            # internal_error, fatal_error, 5xx: may heal (and may have posted: at-least-once).
            return DeliveryResult.transient(f"Slack error {code or 'HTTP ' + str(response.status_code)}",
                                            **answered)
        except (SlackClientError, aiohttp.ClientError, OSError) as exc:
            return DeliveryResult.transient(f"Slack connection failed: {type(exc).__name__}")
        except asyncio.TimeoutError:
            return DeliveryResult.transient("Slack request timed out")

    async def update_message(self, channel: str, ts: str, text: str, blocks: list) -> None:
        """chat.update of a message this app posted (the Ack/Resolve callback shows who acted).
        Raises SlackApiError or a connection error; the caller decides what that means."""
        await self.open()
        assert self._client is not None
        await self._client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    async def _send_incoming_webhook(self, message: Message, text: str, blocks) -> DeliveryResult:
        assert self._hook_session is not None
        payload = {"text": text}
        if blocks:
            payload["blocks"] = blocks
        try:
            answer = await post_guarded_answer(
                self._hook_session, message.recipient, encode_payload(payload),
                {"content-type": "application/json;charset=utf-8", "user-agent": "notify-engine/slack"},
                self.allow_private_networks)
        except NotAnswered as exc:
            result = exc.result
            if result.kind == "transient":
                return DeliveryResult.transient(f"Slack webhook {result.error}", result.retry_after)
            return result
        status = answer.status
        if 200 <= status < 300:
            return DeliveryResult.sent(code=str(status), address=answer.peer)
        body = answer.body_start[:40].decode("utf-8", "replace").strip()
        return self._hook_failure(answer, status, body, message).answered(
            str(status), answer_excerpt(answer.body_start), answer.peer)

    @staticmethod
    def _hook_failure(answer, status: int, body: str, message: Message) -> DeliveryResult:
        if status == 429 or status >= 500:
            return DeliveryResult.transient(f"Slack webhook HTTP {status}",
                                            parse_retry_after(answer.retry_after, message.now))
        if 300 <= status < 400:
            return DeliveryResult.permanent(f"Slack webhook HTTP {status}: redirects are not followed")
        if status == 410 or body in ("no_service", "channel_is_archived"):
            return DeliveryResult.permanent(f"Slack webhook HTTP {status} {body}".strip(), disable_destination=True)
        return DeliveryResult.permanent(f"Slack webhook HTTP {status}")
