//! The HTTP server of paper mode: the dashboard (`/`, assets embedded in the
//! binary), its live updates (`/events`, server-sent events), the JSON API
//! (`/api/...`), `/health` and `/metrics` (Prometheus text format). It only
//! reads the [`Monitor`] the paper loop feeds.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use tokio::net::TcpListener;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::monitor::Monitor;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");

/// The routes over `monitor`.
pub fn router(monitor: Arc<Monitor>) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/dashboard.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    DASHBOARD_JS,
                )
            }),
        )
        .route("/events", get(events))
        .route("/api/state", get(state))
        .route("/api/{table}", get(table))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(monitor)
}

/// Serve on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    monitor: Arc<Monitor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(monitor))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The page with the current state inlined, so that the first render needs no
/// request; `/events` keeps it live from there.
async fn index(State(m): State<Arc<Monitor>>) -> Html<String> {
    let mut initial = serde_json::json!({ "state": m.state_json() });
    for t in ["signals", "orders", "fills", "alerts"] {
        initial[t] = m.table_json(t).unwrap_or_default();
    }
    // `</` cannot end the script element from inside a JSON string.
    let initial = initial.to_string().replace("</", "<\\/");
    Html(INDEX_HTML.replace(
        "<script src=\"/dashboard.js\">",
        &format!("<script>window.PT_INITIAL = {initial};</script>\n<script src=\"/dashboard.js\">"),
    ))
}

async fn state(State(m): State<Arc<Monitor>>) -> Json<serde_json::Value> {
    Json(m.state_json())
}

async fn table(State(m): State<Arc<Monitor>>, Path(table): Path<String>) -> Response {
    match m.table_json(&table) {
        Some(v) => Json(v).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no such table: use /api/state, /api/signals, /api/orders, /api/fills or /api/alerts\n",
        )
            .into_response(),
    }
}

async fn health(State(m): State<Arc<Monitor>>) -> Response {
    let (ok, body) = m.health();
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(m): State<Arc<Monitor>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.metrics.render(),
    )
        .into_response()
}

async fn events(
    State(m): State<Arc<Monitor>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(m.subscribe())
        .filter_map(|r| r.ok())
        .map(|data| Ok(Event::default().event("batch").data(data)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}
