"""The HTTP API of one emulated cluster: handlers.py (routes, discovery, verbs, watch streams,
auth, faults, Status errors), protobuf.py (protobuf request bodies), tables.py (Table output).
`make_app(cluster)` returns the aiohttp application the daemon serves over TLS."""
from .handlers import make_app

__all__ = ["make_app"]
