"""A stand-in for the seeds' speech-recognition app: a page at / and a
WebSocket at /ws/asr that answers each binary audio chunk with a JSON text
message. It records the X-Forwarded-* headers it saw so tests can check
what the proxy sent. Run: python3 asr_app.py PORT
"""

import sys

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse

app = FastAPI()
SEEN: dict[str, dict[str, str]] = {}


def forwarded(headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("x-forwarded-") or k == "x-real-ip"}


@app.get("/")
async def page(request: Request):
    SEEN["page"] = forwarded(request.headers)
    return HTMLResponse("<!doctype html><title>ASR demo</title><p>speak into the microphone</p>")


@app.get("/seen")
async def seen():
    return JSONResponse(SEEN)


@app.websocket("/ws/asr")
async def asr(ws: WebSocket):
    SEEN["ws"] = forwarded(ws.headers)
    await ws.accept(subprotocol=ws.scope.get("subprotocols", [None])[0] if ws.scope.get("subprotocols") else None)
    total = 0
    chunks = 0
    try:
        while True:
            chunk = await ws.receive_bytes()
            chunks += 1
            total += len(chunk)
            await ws.send_json({"partial": f"chunk {chunks}", "bytes": len(chunk), "total": total})
    except Exception:
        return


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", ws_ping_interval=None)
