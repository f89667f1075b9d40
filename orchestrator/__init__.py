"""The slim FastAPI orchestrator: WebSocket voice sessions, REST documents and chat, over Triton."""
