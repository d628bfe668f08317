"""The host shell's settings that must not steer a test: one list for every test module."""

from __future__ import annotations

#: Database, model, OpenAI SDK and proxy settings a developer's shell may carry.
HOST_SETTINGS = (
    "STORY_FSM_DATABASE_URL",
    "STORY_FSM_MODEL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ADMIN_KEY",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_CUSTOM_HEADERS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
