"""The DICOM gateway: a C-STORE SCP, C-FIND/C-MOVE pulls, pushes; every object de-identified on arrival.

Public API::

    Receiver(ws, deidentify=True, workers=1)   # files received objects (the SCP and STOW-RS use it)
    OK_STATUSES                                # DICOM statuses that mean "stored"
    GatewayConfig.from_workspace(ws)           # the [gateway] settings, parsed
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.collect.net.config import GatewayConfig, Peer
    from curata.collect.net.receive import OK_STATUSES, Receiver

__getattr__ = lazy_exports(
    __name__,
    {
        "GatewayConfig": "config",
        "Peer": "config",
        "OK_STATUSES": "receive",
        "Receiver": "receive",
    },
)

__all__ = ["OK_STATUSES", "GatewayConfig", "Peer", "Receiver"]
