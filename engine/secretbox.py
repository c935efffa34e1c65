"""Encryption at rest for destination signing secrets (Fernet: AES-128-CBC + HMAC-SHA256).

The key is channels.webhook.secret_key (typically `${NOTIFY_SECRET_KEY}` or a secrets_file entry),
so a database dump alone never reveals a signing secret, and nothing prints one back: the only
reader is the webhook channel, at send time.
"""

from __future__ import annotations

from typing import Optional

from cryptography.fernet import Fernet, InvalidToken

from engine.errors import BadInput, NotifyError


class SecretBox:
    def __init__(self, key: Optional[str]):
        self._fernet: Optional[Fernet] = None
        if key:
            try:
                self._fernet = Fernet(key.encode())
            except (ValueError, TypeError):
                # Never echo the key: say where it comes from and what shape it needs.
                raise BadInput("channels.webhook.secret_key: expected a Fernet key "
                               "(urlsafe base64 of 32 bytes; `python -c 'from cryptography.fernet import "
                               "Fernet; print(Fernet.generate_key().decode())'`)") from None

    @property
    def available(self) -> bool:
        return self._fernet is not None

    def encrypt(self, secret: str) -> str:
        if self._fernet is None:
            raise BadInput("--secret needs channels.webhook.secret_key (e.g. ${NOTIFY_SECRET_KEY}) "
                           "to encrypt signing secrets at rest")
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        if self._fernet is None:
            raise NotifyError("destination has a signing secret but channels.webhook.secret_key is not set")
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise NotifyError("signing secret cannot be decrypted with channels.webhook.secret_key "
                              "(was the key rotated?)") from None
