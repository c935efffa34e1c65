"""Delivery channels: one module per channel behind channels.base.Channel.

A new channel is one module and one line in `build_channels`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from channels.base import Channel, DeliveryResult, Message
from channels.ssrf import Resolve
from engine.config import Config


def build_channels(config: Config, *, resolve: Optional[Resolve] = None,
                   templates_root: Optional[Path] = None, app=None) -> dict[str, Channel]:
    from channels.email import EmailChannel
    from channels.slack import SlackChannel
    from channels.webhook import WebhookChannel

    from engine.messages import Composer

    webhook = config.channels.webhook
    composer = Composer(config, app)   # the app lets it load messages.names_sql
    return {
        "email": EmailChannel(config.channels.email, templates_root=templates_root, composer=composer),
        "slack": SlackChannel(config.channels.slack, allow_private_networks=webhook.allow_private_networks,
                              resolve=resolve, templates_root=templates_root, composer=composer),
        "webhook": WebhookChannel(allow_private_networks=webhook.allow_private_networks,
                                  connect_timeout=webhook.connect_timeout, read_timeout=webhook.read_timeout,
                                  resolve=resolve, connection_limit=config.delivery.concurrency.get("webhook", 128),
                                  client=webhook.client, timeout=webhook.timeout, composer=composer,
                                  templates_root=templates_root, summary=webhook.summary),
    }


__all__ = ["Channel", "DeliveryResult", "Message", "build_channels"]
