"""Requests that are not valid HTTP get the JSON error shape too.

uvicorn answers a request its HTTP parser cannot read (a malformed
Content-Length, a broken request line) with a plain-text 400 before any
ASGI code runs, so no middleware can reach it. ``install()`` replaces that
one method of uvicorn's protocol classes (h11's, and httptools' when it is
installed) with one that writes ``service.http.http_errors``' shape. uvicorn
builds each connection's protocol from these classes, so it must run at
import of the service module, before the server starts.
"""

from __future__ import annotations

from typing import Any

from service.http.http_errors import error_body


def invalid_http_body(msg: str) -> bytes:
    return error_body(f"the request is not valid HTTP: {msg}", ["request"], "invalid_http")


def h11_send_400(self: Any, msg: str) -> None:
    import h11

    body = invalid_http_body(msg)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body)):
        self.transport.write(self.conn.send(event))
    self.transport.write(self.conn.send(h11.EndOfMessage()))
    self.transport.close()


def httptools_send_400(self: Any, msg: str) -> None:
    body = invalid_http_body(msg)
    head = [b"HTTP/1.1 400 Bad Request\r\n"]
    head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
    head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n"]
    self.transport.write(b"".join(head) + body)
    self.transport.close()


def install() -> None:
    from uvicorn.protocols.http import h11_impl

    h11_impl.H11Protocol.send_400_response = h11_send_400
    try:
        from uvicorn.protocols.http import httptools_impl
    except ImportError:  # httptools is not installed
        return
    httptools_impl.HttpToolsProtocol.send_400_response = httptools_send_400
