"""Server settings, from MATHTUNE_* environment variables (one pydantic-settings class)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MATHTUNE_", extra="ignore")

    api_key: str | None = Field(None, description="When set, every route but /livez and /readyz needs 'Authorization: Bearer <key>' (the web UI asks for it once and keeps a signed session, not the key, in an HttpOnly cookie for 12 hours).")
    wrong_keys_per_minute: int = Field(10, ge=1, description="Wrong API keys a client (an address) may send in a minute, to the API or the UI's key page; past that its key attempts get 429 with Retry-After until the oldest is a minute old (a signed UI session keeps working).")
    metrics_key: str | None = Field(None, description="A separate token a Prometheus scraper may send for /metrics only (the API key works there too).")
    shutdown_grace_s: int = Field(30, ge=0, description="After SIGTERM, seconds the requests being answered may take to finish; those still running then end with a JSON 503 (or a stream's error event).")
    header_timeout_s: float = Field(10.0, gt=0, description="A request's line and headers must arrive within this time of the connection opening (or of the previous response on a kept-alive one), or the connection is closed.")
    max_connections_per_client: int = Field(128, gt=0, description="Open connections one client (an address) may hold; further ones are closed at once, so one client cannot take every place of limit_concurrency.")
    body_timeout_s: float = Field(10.0, gt=0, description="The whole request body must arrive within this time, or 408 and the connection is closed.")
    limit_concurrency: int = Field(1024, gt=0, description="Open connections and tasks before the server answers 503 (uvicorn limit_concurrency).")
    timeout_keep_alive: int = Field(5, gt=0, description="Seconds an idle keep-alive connection stays open.")
    max_body_bytes: int = Field(1_000_000, gt=0, description="Larger request bodies get 413.")
    max_upload_bytes: int = Field(20_000_000, gt=0, description="Largest file the web UI accepts (CSV batches); larger uploads get 413.")
    max_batch: int = Field(64, gt=0, description="More items in one request get 413.")
    max_text_chars: int = Field(20_000, gt=0, description="Longer texts get 422.")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS (JSON list in the env var).")
    batch_wait_ms: float = Field(0.0, ge=0, description="Micro-batching: extra wait for requests to share a batch; 0: batch only what queued while the model was busy (no added latency).")
    micro_batching: bool = Field(True, description="Run concurrent requests to one model as one batch.")
    batch_rows: int = Field(32, gt=0, description="Micro-batching: most rows in one model call.")
    tutor_backend: str = Field("auto", description="Tutor generation: auto (llama.cpp when the model has a GGUF file and xllamacpp is installed), transformers or llama.cpp.")
    tutor_slots: int = Field(10, ge=1, le=64, description="llama.cpp sequences decoded together (a 5-sample vote takes 5; each slot holds 2,048 tokens of KV cache).")
    tutor_parallel_requests: int = Field(4, ge=1, le=64, description="Tutor requests answered at the same time (llama.cpp batches them together; the transformers backend answers one at a time).")
    tutor_max_waiting: int = Field(8, ge=0, le=1000, description="Tutor requests that may wait for a turn beyond those being answered; the next one gets 503 with Retry-After.")
    tutor_share_answers: bool = Field(True, description="A tutor request asked while the same request (question, history, context, solving settings, budget, seed) is being answered waits for that answer instead of making it again (serve/shared.py); it still holds its place in the tutor's line. Token streams are shared alike.")
    tutor_answer_cache: int = Field(0, ge=0, le=100_000, description="Finished tutor answers (and streams) kept to give again at once to the same request, taking no place in the line; 0 (the default): none are kept, every request that does not join one being made is answered anew. A classroom working one worksheet may keep a few hundred.")
    tutor: str | None = Field(None, description="Serve this pretrained model as the tutor, without training: bundled:qwen2.5-coder-1.5b, a .gguf file, a hub id (or a tutor folder).")
    tutor_index: str | None = Field(None, description="Retrieval index for the tutor; default: the one in the tutor's recipe.")
    tutor_retrieval_style: Literal["examples", "passages"] | None = Field(None, description="How retrieved chunks reach the tutor: examples (whole worked examples as few-shot turns) or passages (context before the problem); default: the tutor's recipe, else examples.")
    tutor_scope: bool = Field(True, description="Questions that are not math get a short refusal from the server (tasks/scope.py), without asking the model.")
    ui_timeout_s: float = Field(300.0, gt=0, description="The web UI gives up on a request after this many seconds and says so.")
    drift_min_requests: int = Field(100, gt=0, description="No drift alarm before this many requests are in the window.")
    tutor_max_new_tokens: int = Field(512, gt=0, description="Upper limit on max_new_tokens per tutor request.")
    tutor_time_budget: float | None = Field(None, gt=0, le=3600, description="Upper limit on the seconds a tutor vote may take: a request's time_budget and the tutor's own are cut to it, and a vote without one gets it (then the samples still being drawn stop and those finished vote).")
    threads: int | None = Field(None, gt=0, description="CPU threads for the models (default: all cores).")
    mlflow_ui_url: str | None = Field(None, description="Base URL of an MLflow UI; the Models page links each run there.")
