"""Job events over NATS in cc-backend 1.5's format (core NATS or JetStream).

* :mod:`.message`: the line-protocol message and the JetStream message id (pure);
* :mod:`.options`: config → server URL, TLS context and auth options;
* :mod:`.publisher`: :class:`NatsPublisher`, the connection and publishing.
"""

from .message import KINDS, Kind, event_message, message_id
from .publisher import NatsPublisher, PublishResult, subject_matches

__all__ = ["KINDS", "Kind", "NatsPublisher", "PublishResult", "event_message", "message_id",
           "subject_matches"]
