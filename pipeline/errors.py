"""The exception tree.  Every error is either *permanent* (retrying the same
input will fail the same way) or *transient* (a retry later may succeed)::

    MediamonError
    ├── ConfigError                  invalid settings or config file (names file, entry, field)
    ├── StoreError                   the store could not be opened / written
    │   ├── StoreUnavailable         (transient) locked, disk full, cluster down
    │   └── StoreMissing             a read-only command found no store (never creates one)
    ├── FeedError                    one feed could not be polled; the cycle goes on
    │   ├── PermanentFeedError       404/410, refused address, not a feed, body too large
    │   │   ├── BlockedAddressError  URL resolves to a loopback/private/link-local address
    │   │   └── FeedParseError       bytes are not a usable feed (entity bomb, no items, garbage)
    │   └── TransientFeedError       timeouts, connection errors, 5xx, 429
    ├── TranslationError
    │   ├── ModelUnavailable         model cannot be loaded (no network, bad path)
    │   └── TranslationFailed        one text failed to translate
    ├── QuerySyntaxError             (defined in pipeline.query) position + hint
    ├── Locked                       (transient) another cycle holds the store's lock: exit 75
    └── MailError
        ├── TransientMailError       4xx, connection drops: retried next cycle
        └── PermanentMailError       5xx: recorded and reported, not retried

A ``FeedError`` carries ``retry_after`` (seconds) when the server asked for it.
"""

from __future__ import annotations


class MediamonError(Exception):
    """Base class of all mediamon errors."""

    transient: bool = False


class ConfigError(MediamonError):
    pass


class StoreError(MediamonError):
    pass


class StoreUnavailable(StoreError):
    transient = True


class StoreMissing(StoreError):
    """A read-only command found no store (it never creates one): run ``mediamon run`` first."""


class FeedError(MediamonError):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class PermanentFeedError(FeedError):
    pass


class BlockedAddressError(PermanentFeedError):
    pass


class FeedParseError(PermanentFeedError):
    pass


class TransientFeedError(FeedError):
    transient = True


class TranslationError(MediamonError):
    pass


class ModelUnavailable(TranslationError):
    pass


class TranslationFailed(TranslationError):
    pass


class MailError(MediamonError):
    pass


class TransientMailError(MailError):
    transient = True


class PermanentMailError(MailError):
    pass


class Locked(MediamonError):
    """Another cycle holds this store's lock (transient: try again later; ``mediamon run`` exits 75).
    Raised by :mod:`pipeline.lock`; defined here so that the stores can raise it too."""

    transient = True

    def __init__(self, message: str, *, holder: str | None = None):
        super().__init__(message)
        self.holder = holder
