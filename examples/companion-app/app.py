"""The companion app: a FastAPI app (uvicorn) behind wssd.

GET /        what the app sees of the request: the X-Forwarded-* headers
             wssd sets, and the client address and scheme uvicorn derives
             from them (--proxy-headers, --forwarded-allow-ips 127.0.0.1)
GET /stats   {"open": N}: WebSockets open right now
WS  /ws      first a {"hello": ...} message with the same facts for the
             upgrade request, then every text message comes back unchanged

Run: uvicorn app:app --host 127.0.0.1 --port 8000 --proxy-headers --forwarded-allow-ips 127.0.0.1
"""

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from starlette.datastructures import Address, Headers

app = FastAPI()
open_sockets = 0


def seen(headers: Headers, client: Address | None, scheme: str) -> dict:
    facts = {name: headers.get(name) for name in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip")}
    facts["client"] = client.host if client else None
    facts["scheme"] = scheme
    return facts


@app.get("/")
async def index(request: Request) -> dict:
    return seen(request.headers, request.client, request.url.scheme)


@app.get("/stats")
async def stats() -> dict:
    return {"open": open_sockets}


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    global open_sockets
    await websocket.accept()
    open_sockets += 1
    try:
        await websocket.send_json({"hello": seen(websocket.headers, websocket.client, websocket.url.scheme)})
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
    finally:
        open_sockets -= 1
