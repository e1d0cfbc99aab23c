//! vLLM's sleep mode (`--enable-sleep-mode` with `VLLM_SERVER_DEV_MODE=1`): `POST /sleep?level=1`
//! frees the GPU memory but keeps the process, `POST /wake_up` loads the weights back (here it
//! takes `--wake-time`), `GET /is_sleeping` says which. A sleeping server refuses inference.
//! `--no-sleep-mode` plays a server started without it: the three paths answer 404.

use crate::state::SimState;
use crate::{full, json_error, SimBody};
use hyper::{Response, StatusCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// `POST /sleep`.
pub(crate) fn sleep(state: &SimState) -> Response<SimBody> {
    if state.opts.no_sleep_mode {
        return not_found("/sleep");
    }
    if !state.sleeping.swap(true, Ordering::AcqRel) {
        state.sleeps.fetch_add(1, Ordering::AcqRel);
    }
    full(StatusCode::OK, "application/json", "{}")
}

/// `POST /wake_up`: answers once the weights are back, `--wake-time` later.
pub(crate) async fn wake_up(state: Arc<SimState>) -> Response<SimBody> {
    if state.opts.no_sleep_mode {
        return not_found("/wake_up");
    }
    if state.sleeping.load(Ordering::Acquire) {
        state.wake_ups.fetch_add(1, Ordering::AcqRel);
        tokio::time::sleep(state.opts.wake_time).await;
        state.sleeping.store(false, Ordering::Release);
    }
    full(StatusCode::OK, "application/json", "{}")
}

/// `GET /is_sleeping`.
pub(crate) fn is_sleeping(state: &SimState) -> Response<SimBody> {
    if state.opts.no_sleep_mode {
        return not_found("/is_sleeping");
    }
    let body = serde_json::json!({ "is_sleeping": state.sleeping.load(Ordering::Acquire) });
    full(StatusCode::OK, "application/json", body.to_string())
}

/// What an inference request gets while the model sleeps.
pub(crate) fn refused_while_sleeping() -> Response<SimBody> {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the model is sleeping; POST /wake_up first",
        "server_error",
        "model_sleeping",
    )
}

fn not_found(path: &str) -> Response<SimBody> {
    json_error(
        StatusCode::NOT_FOUND,
        &format!("no route for POST {path}"),
        "invalid_request_error",
        "not_found",
    )
}
