"""The slim FastAPI orchestrator: WebSocket voice sessions, REST documents and chat, over Triton."""

import voicebot  # noqa: F401  (before torch: keeps the checkout's triton/ folder off sys.path)
