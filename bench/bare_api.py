"""The reference `bench/serving.py` measures the API against: a bare endpoint on the same stack.

FastAPI on one uvicorn worker with uvloop and httptools, access log off, as `python -m alphapulse_serving` runs;
`POST /predict` reads the body and answers a small JSON with orjson, and nothing else: no auth, no rate limit, no
model, no audit, no metrics. What it serves is the most this stack serves on this machine.

    python bench/bare_api.py PORT
"""

import sys

import orjson
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response

app = FastAPI()


@app.post("/predict")
async def predict(request: Request) -> Response:
    body = await request.body()
    return Response(orjson.dumps({"ok": True, "bytes": len(body)}), media_type="application/json")


@app.get("/ready")
async def ready() -> Response:
    return Response(b'{"ready": true}', media_type="application/json")


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
    )
