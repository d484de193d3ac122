//! The HTTP server of paper mode: the dashboard (`/`, assets embedded in the
//! binary), its live updates (`/events`, server-sent events), the JSON API
//! (`/api/...`), `/health` and `/metrics` (Prometheus text format). It reads
//! the [`Monitor`] the paper loop feeds; the one route that acts,
//! `POST /api/control`, needs the bearer token and hands the action to the
//! paper loop (docs/dashboard.md, "Controls").

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use tokio::net::TcpListener;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::monitor::Monitor;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
/// TradingView Lightweight Charts 4.2.3 (Apache-2.0; src/dashboard/vendor/README.md).
pub const CHARTS_JS: &str =
    include_str!("dashboard/vendor/lightweight-charts.standalone.production.js");

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
        .route(
            "/vendor/lightweight-charts.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "max-age=86400"),
                    ],
                    CHARTS_JS,
                )
            }),
        )
        .route("/events", get(events))
        .route("/api/status", get(status))
        .route("/api/control", post(control))
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
    axum::serve(
        listener,
        router(monitor).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The page with the current state inlined, so that the first render needs no
/// request; `/events` keeps it live from there.
async fn index(State(m): State<Arc<Monitor>>) -> Html<String> {
    let mut initial = serde_json::json!({ "state": m.state_json(), "status": m.status_json() });
    for t in ["signals", "orders", "fills", "alerts", "controls"] {
        initial[t] = m.table_json(t).unwrap_or_default();
    }
    // No `<` in the script element: neither `</script>` nor `<!--` can then
    // change how the HTML parser reads it (JSON strings keep `\u003c`).
    let initial = initial.to_string().replace('<', "\\u003c");
    Html(INDEX_HTML.replace(
        "<script src=\"/dashboard.js\">",
        &format!("<script>window.PT_INITIAL = {initial};</script>\n<script src=\"/dashboard.js\">"),
    ))
}

async fn status(State(m): State<Arc<Monitor>>) -> Json<serde_json::Value> {
    Json(m.status_json())
}

/// The body of `POST /api/control`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlBody {
    action: papertrader_core::engine::ControlAction,
    strategy: String,
    #[serde(default)]
    symbol: Option<String>,
    /// Who acts, for the audit log (the caller's address is added).
    #[serde(default)]
    by: Option<String>,
}

fn refuse(code: StatusCode, error: &str) -> Response {
    (code, Json(serde_json::json!({ "error": error }))).into_response()
}

/// `POST /api/control`: pause, resume, flatten (a strategy, or one symbol of
/// it) or kill. 401 without the bearer token; 400 for a body that does not
/// parse or an action the engine refuses; 503 when no paper loop takes it.
async fn control(
    State(m): State<Arc<Monitor>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !m.authorized(auth) {
        tracing::warn!(%peer, "control refused: no or wrong bearer token");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({"error": "send Authorization: Bearer <token> (http.token, or the one printed at start)"})),
        )
            .into_response();
    }
    let body: ControlBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "control refused: the body does not parse");
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("{e}: send {{\"action\": \"pause\"|\"resume\"|\"flatten\"|\"kill\", \"strategy\": NAME, \"symbol\": SYMBOL (flatten only, optional), \"by\": WHO (optional)}}"),
            );
        }
    };
    let Some(tx) = m.controls() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "paper mode is not running");
    };
    let by = format!("{} ({peer})", body.by.as_deref().unwrap_or("api"));
    tracing::info!(action = body.action.name(), strategy = %body.strategy, symbol = ?body.symbol, %by, "control requested");
    let (reply, answer) = tokio::sync::oneshot::channel();
    let req = crate::monitor::ControlRequest {
        action: body.action,
        strategy: body.strategy,
        symbol: body.symbol,
        by,
        reply,
    };
    if tx.send(req).await.is_err() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "paper mode has stopped");
    }
    match tokio::time::timeout(Duration::from_secs(60), answer).await {
        Ok(Ok(Ok(msg))) => Json(msg).into_response(),
        Ok(Ok(Err(e))) => refuse(StatusCode::BAD_REQUEST, &e),
        Ok(Err(_)) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "paper mode stopped before applying it",
        ),
        Err(_) => refuse(
            StatusCode::GATEWAY_TIMEOUT,
            "paper mode did not apply it within 60 s",
        ),
    }
}

async fn state(State(m): State<Arc<Monitor>>) -> Json<serde_json::Value> {
    Json(m.state_json())
}

async fn table(State(m): State<Arc<Monitor>>, Path(table): Path<String>) -> Response {
    match m.table_json(&table) {
        Some(v) => Json(v).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no such table: use /api/state, /api/status, /api/signals, /api/orders, /api/fills, /api/alerts or /api/controls\n",
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

/// Serve one Prometheus registry on `/metrics` (`papertrader ingest --metrics-addr`).
pub async fn serve_registry(listener: TcpListener, registry: prometheus::Registry) {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut buf = Vec::new();
                let _ = prometheus::Encoder::encode(
                    &prometheus::TextEncoder::new(),
                    &registry.gather(),
                    &mut buf,
                );
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    String::from_utf8_lossy(&buf).into_owned(),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics server stopped");
    }
}
