"""Settings read from the environment at call time (never cached at import)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import FalConfigError

DEFAULT_QUEUE_BASE_URL = "https://queue.fal.run"
DEFAULT_REST_BASE_URL = "https://rest.fal.ai"

QUEUE_BASE_URL_ENV = "FAL_QUEUE_BASE_URL"
REST_BASE_URL_ENV = "FAL_REST_BASE_URL"
QUEUE_TIMEOUT_ENV = "GROK_IMAGINE_QUEUE_TIMEOUT"
RUN_TIMEOUT_ENV = "GROK_IMAGINE_TIMEOUT"
DOWNLOAD_TIMEOUT_ENV = "GROK_IMAGINE_DOWNLOAD_TIMEOUT"

DEFAULT_QUEUE_TIMEOUT_S = 300.0
DEFAULT_RUN_TIMEOUT_S = 600.0
DEFAULT_DOWNLOAD_TIMEOUT_S = 60.0


def _base_url(env_name: str, default: str) -> str:
    value = os.environ.get(env_name, "").strip() or default
    if not value.startswith(("https://", "http://")):
        raise FalConfigError(f"{env_name} must be an http(s) URL such as {default}, got {value!r}.")
    return value.rstrip("/")


def queue_base_url() -> str:
    """Base URL of fal's queue, `FAL_QUEUE_BASE_URL` or https://queue.fal.run."""
    return _base_url(QUEUE_BASE_URL_ENV, DEFAULT_QUEUE_BASE_URL)


def rest_base_url() -> str:
    """Base URL of fal's REST API (storage uploads), `FAL_REST_BASE_URL` or https://rest.fal.ai."""
    return _base_url(REST_BASE_URL_ENV, DEFAULT_REST_BASE_URL)


def _number(env_name: str, *, positive: bool, expected: str) -> float | None:
    """The variable as a finite number (> 0 if `positive`, else >= 0), None when unset."""
    raw = os.environ.get(env_name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise FalConfigError(f"{env_name} must be {expected}, got {raw!r}. Fix it or unset it.")
    return value


def _seconds(env_name: str, default: float) -> float:
    value = _number(env_name, positive=True, expected=f"a positive number of seconds (default {default:g})")
    return default if value is None else value


@dataclass(frozen=True)
class Limits:
    """Time limits of one request, in seconds.

    `queue_timeout`: how long a request may sit in fal's queue without progress (its position
    not moving, its state not changing); a queue that moves never times out.
    `run_timeout`: how long a request may run once fal has started it.
    `download_timeout`: all attempts at downloading one image, whole body included."""

    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT_S
    run_timeout: float = DEFAULT_RUN_TIMEOUT_S
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT_S

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            queue_timeout=_seconds(QUEUE_TIMEOUT_ENV, DEFAULT_QUEUE_TIMEOUT_S),
            run_timeout=_seconds(RUN_TIMEOUT_ENV, DEFAULT_RUN_TIMEOUT_S),
            download_timeout=_seconds(DOWNLOAD_TIMEOUT_ENV, DEFAULT_DOWNLOAD_TIMEOUT_S),
        )


STATE_DIR_ENV = "GROK_IMAGINE_STATE_DIR"
KEY_FILE_NAME = "fal_key"


def state_dir() -> Path:
    """The pack's private state directory (key file, request journal), outside anything ComfyUI serves.

    `GROK_IMAGINE_STATE_DIR`, else `$XDG_STATE_HOME/grok-imagine-fal` (`~/.local/state/...`),
    or `%LOCALAPPDATA%\\grok-imagine-fal` on Windows.
    """
    configured = os.environ.get(STATE_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "grok-imagine-fal"
    xdg = os.environ.get("XDG_STATE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "grok-imagine-fal"


def key_file() -> Path:
    return state_dir() / KEY_FILE_NAME


DAILY_LIMIT_ENV = "GROK_IMAGINE_DAILY_LIMIT_USD"


def daily_limit_from_env() -> float | None:
    """`GROK_IMAGINE_DAILY_LIMIT_USD` as dollars, None when unset; it wins over the stored limit."""
    return _number(DAILY_LIMIT_ENV, positive=False, expected="a number of US dollars such as 5 or 12.50")


BALANCE_FLOOR_ENV = "GROK_IMAGINE_BALANCE_FLOOR_USD"


def balance_floor_from_env() -> float | None:
    """`GROK_IMAGINE_BALANCE_FLOOR_USD` as dollars, None when unset; it wins over the stored floor."""
    return _number(BALANCE_FLOOR_ENV, positive=False, expected="a number of US dollars such as 2 or 0.50")
