"""Encryption at rest for destinations' credentials (Fernet: AES-128-CBC + HMAC-SHA256): webhook
signing secrets and Slack incoming-webhook URLs.

The keys are channels.webhook.secret_key (typically `${NOTIFY_SECRET_KEY}` or a secrets_file
entry): one key, or several (a YAML list, or comma-separated) so a key can be rotated. The first
encrypts, every one decrypts (cryptography's MultiFernet); `notifyctl destinations rekey`
re-encrypts what is stored under the first. A database dump alone never reveals a credential, and
nothing prints one back: the only reader is the channel, at send time.

On the embedded default with no key configured, a key is generated on first use into a file
(mode 0600) beside the data directory, so `destinations add --secret` works with the shipped
config.yaml.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from engine.errors import BadInput, NotifyError

log = logging.getLogger(__name__)

KEY_SETTING = "channels.webhook.secret_key"
KeySetting = Union[str, Sequence[str], None]


class SecretUnavailable(NotifyError):
    """A stored credential cannot be decrypted with the configured keys (missing or wrong key)."""


def parse_keys(value: KeySetting) -> list[str]:
    """The keys of channels.webhook.secret_key: a string (keys separated by commas, which a Fernet
    key never contains, so one environment variable can hold several) or a list of strings."""
    if not value:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [key.strip() for item in items for key in str(item).split(",") if key.strip()]


def generated_key_path(embedded: Any) -> Path:
    """Where the embedded default keeps its generated key: beside the data directory, not in it
    (the data directory belongs to the cluster's user)."""
    data_dir = Path(embedded.data_dir).absolute()
    return data_dir.parent / (data_dir.name + ".secret-key")


def _read_or_create_key(path: Path, *, create: bool) -> Optional[str]:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        if not create:
            return None
    except OSError as exc:
        raise NotifyError(f"{KEY_SETTING}: cannot read the generated key {path}: {exc.strerror}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under a temporary name, then linked into place: two first uses at once end
    # with one key, and nobody reads a half-written file.
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(Fernet.generate_key().decode() + "\n")
        try:
            os.link(temporary, path)
            log.warning("generated %s for the embedded default in %s (mode 0600); back it up with the data "
                        "directory: without it, stored destination secrets cannot be decrypted", KEY_SETTING, path)
        except FileExistsError:
            pass  # another process won the race: use its key
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_text().strip() or None


class SecretBox:
    def __init__(self, key: KeySetting, *, where: str = KEY_SETTING):
        keys = parse_keys(key)
        fernets = []
        for index, one in enumerate(keys):
            try:
                fernets.append(Fernet(one.encode()))
            except (ValueError, TypeError):
                # Never echo the key: say where it comes from and what shape it needs.
                named = where if len(keys) == 1 else f"{where}[{index}]"
                raise BadInput(f"{named}: expected a Fernet key "
                               "(urlsafe base64 of 32 bytes; `python -c 'from cryptography.fernet import "
                               "Fernet; print(Fernet.generate_key().decode())'`)") from None
        self._fernets = fernets
        self._fernet: Optional[MultiFernet] = MultiFernet(fernets) if fernets else None

    @classmethod
    def for_config(cls, config: Any, *, create: bool = False) -> "SecretBox":
        """The configured keys; on the embedded default with none configured, the generated key
        (created when `create`, i.e. when something is about to be encrypted)."""
        configured = parse_keys(config.channels.webhook.secret_key)
        if configured or config.databases is not None:
            return cls(configured)
        path = generated_key_path(config.embedded)
        key = _read_or_create_key(path, create=create)
        if key:
            from engine.logging import REDACTOR

            REDACTOR.add_secrets([key])
        return cls(key, where=str(path))

    @property
    def available(self) -> bool:
        return self._fernet is not None

    @property
    def key_count(self) -> int:
        return len(self._fernets)

    def encrypt(self, secret: str, *, option: str = "--secret") -> str:
        if self._fernet is None:
            raise BadInput(f"{option} needs {KEY_SETTING} (e.g. ${{NOTIFY_SECRET_KEY}}) "
                           "to encrypt it at rest")
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        if self._fernet is None:
            raise SecretUnavailable(f"destination secret is encrypted but {KEY_SETTING} is not set")
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretUnavailable(f"destination secret cannot be decrypted with {KEY_SETTING} "
                                    "(missing or rotated key?)") from None

    def under_first_key(self, ciphertext: str) -> bool:
        """Whether the first (encrypting) key already decrypts it: rekey leaves such rows alone."""
        if not self._fernets:
            return False
        try:
            self._fernets[0].decrypt(ciphertext.encode())
            return True
        except InvalidToken:
            return False
