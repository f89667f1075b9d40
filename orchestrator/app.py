"""The FastAPI app: ``/v1/voice`` WebSocket, documents and chat REST, health, metrics, the webapp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, UploadFile, WebSocket, WebSocketDisconnect, status
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from rag_index import DocumentIndex, UnsupportedDocument
from rag_index.embedders import TritonEmbedder

from .metrics import Metrics
from .services import TritonServices
from .session import Services, TurnRunner, VoiceSession, sse_audio
from .settings import Settings

log = logging.getLogger("voicebot.app")

WS_UNAUTHORIZED = 4401
WS_FORBIDDEN_ORIGIN = 4403
WS_TRY_AGAIN_LATER = 1013

PLACEHOLDER = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>voicebot</title></head>
<body><h1>voicebot</h1><p>The orchestrator is running. The web app is not built yet; the API is at
<code>/v1/voice</code> (WebSocket), <code>/v1/documents</code> and <code>/v1/chat</code>.</p></body></html>"""


class ChatRequest(BaseModel):
    text: str = Field(min_length=1)
    speak: bool = False
    history: list[str] = Field(default_factory=list, max_length=10)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The app; ``services`` replaces the Triton-backed ones (tests of session logic only)."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        embedder = TritonEmbedder(settings.triton_http_url)
        index = await asyncio.to_thread(DocumentIndex, settings.index_dir, embedder)
        triton = TritonServices(
            settings.triton_grpc_url,
            index,
            settings.language,
            stall_timeout_s=settings.stall_timeout_s,
            first_response_timeout_s=settings.first_response_timeout_s,
        )
        app.state.index = index
        app.state.triton = triton
        app.state.runner = TurnRunner(services or Services(triton, triton, triton), settings, metrics)
        app.state.sessions = 0
        app.state.ingest_lock = asyncio.Lock()
        log.info("orchestrator ready", extra={"event": "startup"})
        try:
            yield
        finally:
            await triton.close()
            index.close()
            embedder.close()

    app = FastAPI(title="voicebot", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob:; img-src 'self' data:; "
            "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        )
        return response

    def token_ok(presented: str | None) -> bool:
        expected = settings.api_token
        return expected is None or (presented is not None and secrets.compare_digest(presented, expected))

    def require_token(request: Request) -> None:
        header = request.headers.get("authorization", "")
        presented = header[7:].strip() if header.lower().startswith("bearer ") else None
        if not token_ok(presented):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    auth = [Depends(require_token)]

    @app.get("/healthz", dependencies=auth)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", dependencies=auth)
    async def readyz(request: Request) -> JSONResponse:
        models = await request.app.state.triton.ready()
        metrics.set_model_readiness(models)
        ready = all(models.values())
        body = {
            "ready": ready,
            "models": models,
            "index": {"open": True, "documents": request.app.state.index.document_count()},
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", dependencies=auth)
    async def prometheus(request: Request) -> Response:
        index: DocumentIndex = request.app.state.index
        metrics.set_model_readiness(await request.app.state.triton.ready())
        metrics.index_documents.set(index.document_count())
        metrics.index_chunks.set(index.chunk_count())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/documents", dependencies=auth)
    async def list_documents(request: Request) -> dict[str, Any]:
        index: DocumentIndex = request.app.state.index
        docs = await asyncio.to_thread(index.documents)
        return {
            "documents": [d.__dict__ for d in docs],
            "chunks": index.chunk_count(),
            "search": index.index_kind(),
            "limit": settings.max_documents,
        }

    @app.post("/v1/documents", dependencies=auth, status_code=status.HTTP_201_CREATED)
    async def upload_document(request: Request, file: UploadFile, response: Response) -> dict[str, Any]:
        index: DocumentIndex = request.app.state.index
        data = await file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"uploads are limited to {settings.max_upload_mb:g} MB"
            )
        if not data:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "the uploaded file is empty")
        async with request.app.state.ingest_lock:  # one ingest at a time: embedding is CPU-bound
            if index.document_count() >= settings.max_documents:
                raise HTTPException(
                    status.HTTP_409_CONFLICT, f"the index holds the maximum of {settings.max_documents} documents"
                )
            try:
                info, created = await asyncio.to_thread(index.add, file.filename or "document.txt", data)
            except UnsupportedDocument as exc:
                raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from None
            except Exception as exc:  # Triton's embedder down, for one
                log.exception("ingest failed")
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE, f"could not index the document: {exc}"
                ) from None
        if not created:
            response.status_code = status.HTTP_200_OK
        log.info("document %s", "added" if created else "already indexed", extra={"document": info.id})
        return {"document": info.__dict__, "created": created}

    @app.delete("/v1/documents/{doc_id}", dependencies=auth, status_code=status.HTTP_204_NO_CONTENT)
    async def delete_document(request: Request, doc_id: str) -> Response:
        index: DocumentIndex = request.app.state.index
        if len(doc_id) > 64 or not await asyncio.to_thread(index.delete, doc_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no document with id {doc_id[:64]!r}")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @app.post("/v1/chat", dependencies=auth)
    async def chat(request: Request, body: ChatRequest) -> StreamingResponse:
        if len(body.text) > settings.max_text_chars:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY, f"text is limited to {settings.max_text_chars} characters"
            )
        runner: TurnRunner = request.app.state.runner
        events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=1024)
        history: deque[str] = deque((h[: settings.max_text_chars] for h in body.history), maxlen=settings.history_turns)

        async def send_event(payload: dict[str, Any]) -> None:
            await events.put(payload)

        async def send_audio(header: dict[str, Any], pcm: bytes) -> None:
            await events.put(sse_audio(header, pcm))

        async def produce() -> None:
            try:
                await runner.run(send_event, send_audio, history, text=body.text.strip(), speak=body.speak)
            finally:
                await events.put(None)

        async def stream() -> AsyncIterator[str]:
            task = asyncio.create_task(produce())
            try:
                while (item := await events.get()) is not None:
                    yield f"event: {item['type']}\ndata: {json.dumps(item)}\n\n"
            finally:
                if not task.done():  # the client went away: stop the turn and its Triton streams
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    def origin_ok(ws: WebSocket) -> bool:
        # Browsers send Origin on WebSockets and no CORS applies to them: without this check any
        # web page the user visits could open a session on this (localhost) server.
        origin = ws.headers.get("origin")
        if origin is None:
            return True  # not a browser
        host = ws.headers.get("host", "")
        return origin.split("://", 1)[-1] == host or origin in settings.cors_origins

    @app.websocket("/v1/voice")
    async def voice(ws: WebSocket) -> None:
        if not origin_ok(ws):
            await ws.accept()
            await ws.close(WS_FORBIDDEN_ORIGIN, "cross-origin WebSocket refused")
            return
        if not token_ok(ws.query_params.get("token")):
            await ws.accept()
            await ws.close(WS_UNAUTHORIZED, "missing or wrong token")
            return
        if ws.app.state.sessions >= settings.max_sessions:
            await ws.accept()
            await ws.close(WS_TRY_AGAIN_LATER, "too many sessions")
            return
        await ws.accept()
        ws.app.state.sessions += 1
        metrics.active_sessions.inc()
        try:
            await _serve_voice(ws, ws.app.state.runner, settings, metrics)
        finally:
            ws.app.state.sessions -= 1
            metrics.active_sessions.dec()

    index_html = settings.webapp_dir / "index.html"
    if index_html.is_file():
        app.mount("/", StaticFiles(directory=settings.webapp_dir, html=True), name="webapp")
    else:

        @app.get("/", include_in_schema=False)
        async def placeholder() -> HTMLResponse:
            return HTMLResponse(PLACEHOLDER)

    return app


async def _serve_voice(ws: WebSocket, runner: TurnRunner, settings: Settings, metrics: Metrics) -> None:
    closed = False

    async def send_text(text: str) -> None:
        if not closed:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.send_text(text)

    async def send_bytes(data: bytes) -> None:
        if not closed:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.send_bytes(data)

    session = VoiceSession(runner, settings, metrics, send_text, send_bytes, session_id=uuid.uuid4().hex[:12])
    inbox: asyncio.Queue[str | bytes] = asyncio.Queue(maxsize=settings.max_queued_frames)

    async def process() -> None:
        while True:
            item = await inbox.get()
            try:
                if isinstance(item, str):
                    await session.on_text(item)
                else:
                    await session.on_bytes(item)
            except Exception:
                log.exception("session error")
                await session.error("internal", "internal error; the session goes on")

    processor = asyncio.create_task(process())
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            item = message.get("text")
            if item is None:
                item = message.get("bytes") or b""
            try:
                inbox.put_nowait(item)
            except asyncio.QueueFull:
                await session.queue_full()
    except WebSocketDisconnect:
        pass
    finally:
        closed = True
        processor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await processor
        await session.close()
