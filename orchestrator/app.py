"""The FastAPI app: ``/v1/voice`` WebSocket, documents and chat REST, health, metrics, the webapp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect, status
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag_index import DocumentStore, UnsupportedDocument
from rag_index.embedders import TritonEmbedder
from rag_index.isolation import BoundedParser
from rag_index.store import Parser, open_store
from voicebot.contract import ErrorCode

from .drain import DRAIN_REASON, WS_SERVICE_RESTART, Drain
from .guard import ApiError, BodyLimits, EdgeGuard, HostPolicy, bearer, error_body, same_origin, token_matches
from .metrics import Metrics
from .openai_api import (
    CHAT_MODEL,
    COMPLETIONS_BODY_BYTES,
    EMBEDDINGS_BODY_BYTES,
    OpenAIError,
    is_openai_path,
    openai_error_json,
    openai_router,
)
from .protocol import ChatRequest, ProtocolError, parse_chat_request
from .realtime import RealtimeSession, realtime_model_error
from .services import TritonServices
from .session import Services, TurnRunner, VoiceSession, turn_stream
from .settings import Settings

log = logging.getLogger("voicebot.app")

WS_UNAUTHORIZED = 4401
WS_FORBIDDEN_ORIGIN = 4403
WS_TRY_AGAIN_LATER = 1013
DRAINING = "this server is shutting down; send the request again (another replica answers it)"
CHAT_BODY_BYTES = 256 * 1024  # text + 10 history items at the text limit, escaped
MULTIPART_OVERHEAD_BYTES = 64 * 1024
PARSE_SLOTS = 2  # documents parsed at once (each a child process with its own memory bound)
# Where a document's rejection comes from: the client's file, so a 4xx that says which.
DOCUMENT_STATUS = {
    ErrorCode.UNSUPPORTED_DOCUMENT: status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    ErrorCode.TOO_LARGE: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    ErrorCode.TOO_DEEP: status.HTTP_422_UNPROCESSABLE_ENTITY,
    ErrorCode.DOCUMENT_TOO_COMPLEX: status.HTTP_422_UNPROCESSABLE_ENTITY,
}
STATUS_CODES = {
    status.HTTP_401_UNAUTHORIZED: ErrorCode.UNAUTHORIZED,
    status.HTTP_404_NOT_FOUND: ErrorCode.NOT_FOUND,
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: ErrorCode.TOO_LARGE,
}

PLACEHOLDER = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>voicebot</title></head>
<body><h1>voicebot</h1><p>The orchestrator is running. The web app is not built yet; the API is at
<code>/v1/voice</code> (WebSocket), <code>/v1/documents</code> and <code>/v1/chat</code>.</p></body></html>"""


class SessionSlots:
    """Concurrent conversations (WebSockets and streaming chats), bounded together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def acquire(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        self.used -= 1


def once(release: Callable[[], None]) -> Callable[[], None]:
    """``release``, callable any number of times, acting on the first."""
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            release()

    return call


def _json_body(model: type[Any]) -> dict[str, Any]:
    """OpenAPI for a body the route parses itself (through the bounded parser)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def create_app(
    settings: Settings | None = None, services: Services | None = None, parser: Parser | None = None
) -> FastAPI:
    """The app; ``services`` and ``parser`` replace the Triton-backed services and the bounded
    document parser (tests of session and ingest logic only)."""
    settings = settings or Settings()
    metrics = Metrics()
    drain = Drain(settings.drain_timeout_s)
    if parser is None:
        parser = BoundedParser(timeout_s=settings.parse_timeout_s, memory_mb=settings.parse_memory_mb)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        embedder = TritonEmbedder(settings.triton_http_url, api_token=settings.api_token)
        index = await asyncio.to_thread(open_store, settings.store_location, embedder, settings.index_gpu)
        triton = TritonServices(
            settings.triton_grpc_url,
            index,
            settings.language,
            stall_timeout_s=settings.stall_timeout_s,
            first_response_timeout_s=settings.first_response_timeout_s,
            api_token=settings.api_token,
            prompt_with_titles=settings.stt_prompt_titles,
        )
        app.state.index = index
        app.state.triton = triton
        app.state.runner = TurnRunner(services or Services(triton, triton, triton), settings, metrics)
        app.state.slots = SessionSlots(settings.max_sessions)
        app.state.drain = drain
        app.state.ingest_lock = asyncio.Lock()
        app.state.parse_slots = asyncio.Semaphore(PARSE_SLOTS)
        log.info("orchestrator ready", extra={"event": "startup"})
        try:
            yield
        finally:
            await triton.close()
            index.close()
            embedder.close()

    # /docs and /redoc would load Swagger UI from a CDN (unreachable here, and refused by the
    # CSP below); the schema itself is served behind the same auth as the API.
    app = FastAPI(title="voicebot", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
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

    # Outermost: nothing runs for a foreign Host, a cross-site write or an oversize body.
    upload_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    app.add_middleware(
        EdgeGuard,
        hosts=HostPolicy(settings.host, settings.allowed_hosts),
        allowed_origins=settings.cors_origins,
        limits=BodyLimits(
            default=64 * 1024,
            per_route={
                ("POST", "/v1/documents"): upload_limit,
                ("POST", "/v1/chat"): CHAT_BODY_BYTES,
                ("POST", "/v1/audio/transcriptions"): upload_limit,
                ("POST", "/v1/chat/completions"): COMPLETIONS_BODY_BYTES,
                ("POST", "/v1/embeddings"): EMBEDDINGS_BODY_BYTES,
            },
            deadline_s=settings.body_timeout_s,
        ),
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if is_openai_path(request.url.path):  # OpenAI's clients read their own error shape
            code = getattr(exc, "code", None) or str(STATUS_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST))
            payload = openai_error_json(exc.status_code, str(exc.detail), code, getattr(exc, "param", None))
            return JSONResponse(payload, exc.status_code, headers=exc.headers)
        code = exc.code if isinstance(exc, ApiError) else STATUS_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
        return Response(error_body(code, exc.detail), exc.status_code, exc.headers, media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))
        if is_openai_path(request.url.path):
            return JSONResponse(openai_error_json(400, message, str(ErrorCode.BAD_REQUEST)), 400)
        return Response(error_body(ErrorCode.BAD_REQUEST, message), 422, media_type="application/json")

    def token_ok(presented: str | None) -> bool:
        return token_matches(presented, settings.api_token)

    def require_token(request: Request) -> None:
        if not token_ok(bearer(request.headers)):
            raise ApiError(
                status.HTTP_401_UNAUTHORIZED,
                ErrorCode.UNAUTHORIZED,
                "missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    auth = [Depends(require_token)]

    @app.get("/openapi.json", dependencies=auth, include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/healthz", dependencies=auth)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", dependencies=auth)
    async def readyz(request: Request) -> JSONResponse:
        models = await request.app.state.triton.ready()
        metrics.set_model_readiness(models)
        store: dict[str, Any] = {"open": True}
        try:
            store["documents"] = await asyncio.to_thread(request.app.state.index.document_count)
        except Exception as exc:  # a shared store that is down: this replica cannot answer from documents
            store = {"open": False, "error": str(exc)[:300]}
        ready = all(models.values()) and store["open"] and not drain.started
        body = {"ready": ready, "models": models, "index": store, "draining": drain.started}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", dependencies=auth)
    async def prometheus(request: Request) -> Response:
        index: DocumentStore = request.app.state.index
        metrics.set_model_readiness(await request.app.state.triton.ready())
        metrics.index_documents.set(index.document_count())
        metrics.index_chunks.set(index.chunk_count())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/documents", dependencies=auth)
    async def list_documents(request: Request) -> dict[str, Any]:
        index: DocumentStore = request.app.state.index
        docs = await asyncio.to_thread(index.documents)
        return {
            "documents": [d.__dict__ for d in docs],
            "chunks": index.chunk_count(),
            "search": index.index_kind(),
            "limit": settings.max_documents,
        }

    upload_schema = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                }
            },
        }
    }

    @app.post("/v1/documents", dependencies=auth, status_code=status.HTTP_201_CREATED, openapi_extra=upload_schema)
    async def upload_document(request: Request, response: Response) -> dict[str, Any]:
        index: DocumentStore = request.app.state.index
        filename, data = await _read_upload(request, settings)
        duplicate = await asyncio.to_thread(index.find_duplicate, data)
        if duplicate is not None:
            response.status_code = status.HTTP_200_OK
            return {"document": duplicate.__dict__, "created": False}
        # Parsing runs outside the ingest lock (in a bounded child process): a slow or hostile
        # file holds up only its own upload.
        async with request.app.state.parse_slots:
            try:
                parsed = await asyncio.to_thread(parser, filename, data)
            except UnsupportedDocument as exc:
                raise ApiError(DOCUMENT_STATUS.get(exc.code, 422), exc.code, str(exc)) from None
        if parsed.word_count > settings.max_document_words:
            raise ApiError(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                ErrorCode.TOO_LARGE,
                f"the document holds {parsed.word_count} words; the limit is {settings.max_document_words}",
            )
        async with request.app.state.ingest_lock:  # one ingest at a time: embedding is CPU-bound
            if index.document_count() >= settings.max_documents:
                raise ApiError(
                    status.HTTP_409_CONFLICT,
                    ErrorCode.INDEX_FULL,
                    f"the index holds the maximum of {settings.max_documents} documents",
                )
            try:
                info, created = await asyncio.to_thread(index.add, filename, data, None, parsed)
            except Exception:  # Triton's embedder down, for one
                log.exception("ingest failed")
                raise ApiError(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    ErrorCode.UPSTREAM_UNAVAILABLE,
                    "could not index the document: the embedder is unavailable; try again later",
                ) from None
        if created:
            request.app.state.triton.library_changed()
        else:
            response.status_code = status.HTTP_200_OK
        log.info("document %s", "added" if created else "already indexed", extra={"document": info.id})
        return {"document": info.__dict__, "created": created}

    @app.delete("/v1/documents/{doc_id}", dependencies=auth, status_code=status.HTTP_204_NO_CONTENT)
    async def delete_document(request: Request, doc_id: str) -> Response:
        index: DocumentStore = request.app.state.index
        if len(doc_id) > 64 or not await asyncio.to_thread(index.delete, doc_id):
            raise ApiError(status.HTTP_404_NOT_FOUND, ErrorCode.NOT_FOUND, f"no document with id {doc_id[:64]!r}")
        request.app.state.triton.library_changed()
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @app.post("/v1/chat", dependencies=auth, openapi_extra=_json_body(ChatRequest))
    async def chat(request: Request) -> StreamingResponse:
        try:
            body = parse_chat_request(await request.body(), settings.max_text_chars, CHAT_BODY_BYTES)
        except ProtocolError as exc:
            code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE if exc.code == ErrorCode.TOO_LARGE else 422
            raise ApiError(code, exc.code, str(exc)) from None
        if drain.started:
            raise ApiError(
                status.HTTP_503_SERVICE_UNAVAILABLE, ErrorCode.OVERLOADED, DRAINING, headers={"Retry-After": "1"}
            )
        slots: SessionSlots = request.app.state.slots
        if not slots.acquire():
            raise ApiError(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                ErrorCode.TOO_MANY_SESSIONS,
                f"{slots.limit} conversations are running; try again shortly",
                headers={"Retry-After": "5"},
            )
        runner: TurnRunner = request.app.state.runner
        history: deque[str] = deque(body.history, maxlen=settings.history_turns)
        release = once(slots.release)  # whether the stream ran, ended or never started

        async def stream() -> AsyncIterator[str]:
            try:
                async for item in turn_stream(runner, history, text=body.text, speak=body.speak):
                    yield f"event: {item['type']}\ndata: {json.dumps(item)}\n\n"
            finally:
                release()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
            background=BackgroundTask(release),
        )

    def acquire_slot() -> Callable[[], None]:
        if drain.started:
            raise OpenAIError(503, DRAINING, ErrorCode.OVERLOADED, headers={"Retry-After": "1"})
        slots: SessionSlots = app.state.slots
        if not slots.acquire():
            raise OpenAIError(
                429,
                f"{slots.limit} conversations are running; try again shortly",
                ErrorCode.TOO_MANY_SESSIONS,
                headers={"Retry-After": "5"},
            )
        return once(slots.release)

    app.include_router(openai_router(settings, metrics, auth, acquire_slot))

    async def guarded(ws: WebSocket, token_presented: bool, serve: Callable[[], Awaitable[None]]) -> None:
        """A WebSocket session: its origin, its token and a free slot, then ``serve`` once accepted."""
        # Browsers send Origin on WebSockets and no CORS applies to them: without this check any
        # web page the user visits could open a session on this (localhost) server.
        if not same_origin(ws.headers, settings.cors_origins):
            await ws.accept()
            await ws.close(WS_FORBIDDEN_ORIGIN, "cross-origin WebSocket refused")
            return
        if not token_presented:
            await ws.accept()
            await ws.close(WS_UNAUTHORIZED, "missing or wrong token")
            return
        if drain.started:  # a load balancer still routing here: go elsewhere
            await ws.accept()
            await ws.close(WS_SERVICE_RESTART, DRAIN_REASON)
            return
        slots: SessionSlots = ws.app.state.slots
        if not slots.acquire():
            await ws.accept()
            await ws.close(WS_TRY_AGAIN_LATER, "too many sessions")
            return
        metrics.active_sessions.inc()
        try:
            await ws.accept()
            await serve()
        finally:
            slots.release()
            metrics.active_sessions.dec()

    @app.websocket("/v1/voice")
    async def voice(ws: WebSocket) -> None:
        runner = ws.app.state.runner

        def make(text: Callable[[str], Any], data: Callable[[bytes], Any]) -> VoiceSession:
            return VoiceSession(runner, settings, metrics, text, data, session_id=uuid.uuid4().hex[:12])

        await guarded(ws, token_ok(ws.query_params.get("token")), lambda: _serve(ws, settings, make, drain))

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        runner = ws.app.state.runner
        model = ws.query_params.get("model")

        def make(text: Callable[[str], Any], _data: Callable[[bytes], Any]) -> RealtimeSession:
            return RealtimeSession(runner, settings, metrics, text, uuid.uuid4().hex[:12])

        async def serve() -> None:
            if model not in (None, CHAT_MODEL):
                await ws.send_text(json.dumps(realtime_model_error(model)))
                await ws.close(1008, "unknown model")
                return
            await _serve(ws, settings, make, drain)

        # The SDKs send the key as a bearer header; a browser cannot, so ?token= works too.
        presented = token_ok(bearer(ws.headers)) or token_ok(ws.query_params.get("token"))
        await guarded(ws, presented, serve)

    index_html = settings.webapp_dir / "index.html"
    if index_html.is_file():
        app.mount("/", StaticFiles(directory=settings.webapp_dir, html=True), name="webapp")
    else:

        @app.get("/", include_in_schema=False)
        async def placeholder() -> HTMLResponse:
            return HTMLResponse(PLACEHOLDER)

    return app


async def _read_upload(request: Request, settings: Settings) -> tuple[str, bytes]:
    """The one file of a multipart upload, within the size limit."""
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=64 * 1024)
    except StarletteHTTPException as exc:  # starlette's wrapping of a malformed body (too many files, parts)
        raise ApiError(422, ErrorCode.BAD_REQUEST, f"not a usable multipart upload: {exc.detail}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, ErrorCode.BAD_REQUEST, "send the document as multipart/form-data field 'file'")
        data = await upload.read(settings.max_upload_bytes + 1)
        filename = upload.filename or "document.txt"
    finally:
        await form.close()
    if len(data) > settings.max_upload_bytes:
        raise ApiError(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            ErrorCode.TOO_LARGE,
            f"uploads are limited to {settings.max_upload_mb:g} MB",
        )
    if not data:
        raise ApiError(422, ErrorCode.BAD_REQUEST, "the uploaded file is empty")
    return filename, data


class Conversation(Protocol):
    """What :func:`_serve` drives: a native or a Realtime session."""

    async def on_text(self, raw: str) -> None: ...
    async def on_bytes(self, data: bytes) -> None: ...
    async def reject_oversize(self, item: str | bytes) -> bool: ...
    def queue_full(self) -> Awaitable[None]: ...
    async def error(self, code: Any, message: str) -> None: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def busy(self) -> bool: ...


async def _serve(
    ws: WebSocket,
    settings: Settings,
    make: Callable[[Callable[[str], Any], Callable[[bytes], Any]], Conversation],
    drain: Drain,
) -> None:
    """One WebSocket: messages in through a bounded queue to the session, one at a time."""
    closed = False

    async def send_text(text: str) -> None:
        if not closed:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.send_text(text)

    async def send_bytes(data: bytes) -> None:
        if not closed:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.send_bytes(data)

    session = make(send_text, send_bytes)
    await session.start()
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
                await session.error(ErrorCode.INTERNAL, "internal error; the session goes on")

    processor = asyncio.create_task(process())
    with drain.track(ws, session.busy):  # the drain closes it once no answer of it runs
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                item = message.get("text")
                if item is None:
                    item = message.get("bytes") or b""
                if await session.reject_oversize(item):
                    continue
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
