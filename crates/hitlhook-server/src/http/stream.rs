//! The live stream over two transports, `GET /ws` (WebSocket) and `GET /v1/stream` (Server-Sent
//! Events), and `POST /v1/stream-tokens` for browsers. Every check (authentication, scope, query)
//! answers with problem JSON BEFORE any upgrade; the session itself lives in [`crate::stream`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{SinkExt, StreamExt};
use hitlhook_domain::{Scope, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::extract::Query;
use crate::security::api_key::{self, Caller};
use crate::stream::{Access, Context, Filter, Outgoing, Request, ResyncReason, Session, Settings};

/// `/ws`, `/v1/stream` and `/v1/stream-tokens`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ws", get(open_websocket))
        .route("/v1/stream", get(open_event_stream))
        .route("/v1/stream-tokens", post(create_stream_token))
}

/// A stream's client only sends close and ping frames: a small read buffer instead of the
/// default 128 KiB, which the reader fills (and so makes resident) on its first read — 1.4 GB
/// for 10,000 subscribers.
const READ_BUFFER: usize = 4 * 1024;

/// Close code for "reconnect later with ?after=" (RFC 6455 1013, Try Again Later).
const CLOSE_TRY_AGAIN: u16 = 1013;
/// Close code on server shutdown (1001, Going Away).
const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code when the key was revoked (1008, Policy Violation).
const CLOSE_POLICY: u16 = 1008;

/// A caller of the live stream: an API key in a header, or a stream token in `?token=`.
pub struct StreamCaller(pub Caller);

#[derive(Deserialize)]
struct TokenParam {
    token: Option<String>,
}

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if api_key::presented_key(&parts.headers).is_some() {
            return Caller::from_request_parts(parts, state)
                .await
                .map(StreamCaller);
        }
        let token = axum::extract::Query::<TokenParam>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|q| q.0.token);
        let Some(token) = token else {
            return Err(ApiError::unauthorized(
                "unauthorized",
                "the live stream needs an API key (Authorization: Bearer <key> or X-API-Key) \
                 or, from a browser, ?token= from POST /v1/stream-tokens",
            ));
        };
        let caller = state
            .stream_tokens
            .redeem(&token, Timestamp::now())
            .map_err(|e| ApiError::unauthorized(e.code(), e.to_string()))?;
        ensure_key_active(state, &caller).await?;
        Ok(StreamCaller(caller))
    }
}

/// A token outlives nothing: the key it was minted with must still be active, with that scope.
async fn ensure_key_active(state: &AppState, caller: &Caller) -> ApiResult<()> {
    let active = if caller.name == "WEBHOOK_API_KEY" && caller.scope == Scope::Admin {
        state.admin_key_hash.is_some()
    } else {
        state
            .store
            .list_api_keys()
            .await?
            .iter()
            .any(|k| k.revoked_at.is_none() && k.name == caller.name && k.scope == caller.scope)
    };
    if active {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "invalid_api_key",
            "the API key this stream token was made with is revoked",
        ))
    }
}

/// The query of both transports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    /// Replay stored events with a larger sequence number first.
    after: Option<i64>,
    kickoff_id: Option<String>,
    checkpoint_id: Option<String>,
    /// Comma-separated event types.
    event_type: Option<String>,
    /// Read by [`StreamCaller`].
    #[allow(dead_code)]
    token: Option<String>,
}

impl StreamQuery {
    fn into_request(self, last_event_id: Option<i64>) -> ApiResult<Request> {
        // An SSE client reconnecting on its own sends Last-Event-ID: newer than the URL's ?after=.
        let after = last_event_id.or(self.after);
        if after.is_some_and(|a| a < 0) {
            return Err(ApiError::bad_request(
                "invalid_query",
                "after must be a sequence number, 0 or more",
            ));
        }
        let filter = Filter::parse(
            self.kickoff_id.as_deref(),
            self.checkpoint_id.as_deref(),
            self.event_type.as_deref(),
        )
        .map_err(|detail| ApiError::bad_request("invalid_query", detail))?;
        Ok(Request { after, filter })
    }
}

/// Longest time between two checks that an open stream's key is still active.
const MAX_RECHECK: Duration = Duration::from_secs(30);

/// A stream's caller, re-checked while the stream is open: revoking its key ends the stream.
struct KeyStillActive {
    state: AppState,
    caller: Caller,
}

impl Access for KeyStillActive {
    fn still_allowed(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            match ensure_key_active(&self.state, &self.caller).await {
                Ok(()) => true,
                Err(ApiError::Unauthorized { .. }) => false,
                // A store hiccup is not a revocation: keep streaming, check again later.
                Err(_) => true,
            }
        })
    }
}

fn open_session(state: &AppState, caller: Caller, request: Request) -> Session {
    let context = Context {
        store: Arc::clone(&state.store),
        shutdown: state.shutdown.clone(),
        settings: Settings {
            heartbeat: state.config.stream_heartbeat(),
            queue: state.config.stream_queue,
            // Every two heartbeats, at most every 30 s: one indexed-size query per client.
            recheck: (state.config.stream_heartbeat() * 2).min(MAX_RECHECK),
        },
    };
    let access = Arc::new(KeyStillActive {
        state: state.clone(),
        caller,
    });
    Session::open(context, &state.hub, request, access)
}

async fn open_websocket(
    State(state): State<AppState>,
    StreamCaller(caller): StreamCaller,
    Query(query): Query<StreamQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    caller.require(Scope::Reviewer, "watching the live stream")?;
    let request = query.into_request(None)?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(
            "websocket_upgrade_required",
            format!(
                "GET /ws is a WebSocket endpoint ({}); without WebSocket use GET /v1/stream \
                 (Server-Sent Events)",
                e.body_text()
            ),
        )
    })?;
    // Subscribe before answering 101: whatever is committed after the handshake is delivered.
    tracing::debug!(caller = %caller.label(), "websocket stream opened");
    let session = open_session(&state, caller, request);
    let send_timeout = state.config.stream_send_timeout();
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| serve_socket(socket, session, send_timeout)))
}

/// Counts open streams for `/metrics` while alive.
struct OpenStream(&'static str);

impl OpenStream {
    fn new(transport: &'static str) -> Self {
        metrics::counter!("hitlhook_stream_connections_total", "transport" => transport)
            .increment(1);
        metrics::gauge!("hitlhook_stream_clients", "transport" => transport).increment(1.0);
        OpenStream(transport)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("hitlhook_stream_clients", "transport" => self.0).decrement(1.0);
    }
}

/// Writes the session to the socket; reads only to notice the client leaving. A write that takes
/// longer than `send_timeout` drops the connection: the client resumes with `?after=`.
async fn serve_socket(socket: WebSocket, mut session: Session, send_timeout: Duration) {
    let _open = OpenStream::new("websocket");
    let (mut sink, mut incoming) = socket.split();
    let reader = async {
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, WsMessage::Close(_)) {
                break;
            }
        }
    };
    let writer = async {
        while let Some(out) = session.next().await {
            let sent =
                tokio::time::timeout(send_timeout, sink.send(WsMessage::Text(out.json))).await;
            if !matches!(sent, Ok(Ok(()))) {
                return;
            }
            session.written(out.position);
            if let Some(reason) = out.resync {
                let code = match reason {
                    ResyncReason::Shutdown => CLOSE_GOING_AWAY,
                    ResyncReason::Revoked => CLOSE_POLICY,
                    _ => CLOSE_TRY_AGAIN,
                };
                let close = WsMessage::Close(Some(CloseFrame {
                    code,
                    reason: "resync".into(),
                }));
                let _ = tokio::time::timeout(send_timeout, sink.send(close)).await;
                return;
            }
        }
    };
    let client_closed = tokio::select! {
        () = reader => true,
        () = writer => false,
    };
    if client_closed {
        // Answer the client's close (RFC 6455 §5.5.1) rather than drop the connection: a client
        // waits for that answer, up to its close timeout, before it counts the stream as closed.
        let _ = tokio::time::timeout(send_timeout, async {
            let _ = sink.send(WsMessage::Close(None)).await;
            let _ = sink.close().await;
        })
        .await;
    }
}

async fn open_event_stream(
    State(state): State<AppState>,
    StreamCaller(caller): StreamCaller,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> ApiResult<Response> {
    caller.require(Scope::Reviewer, "watching the live stream")?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_last_event_id",
                        "Last-Event-ID must be a sequence number sent by this stream",
                    )
                })?,
        ),
    };
    let request = query.into_request(last_event_id)?;
    let session = open_session(&state, caller, request);
    let open = OpenStream::new("sse");
    // `written` is recorded as each message is handed to the connection: if the client gets the
    // final resync, it got everything before it, in order.
    let events = futures_util::stream::unfold((session, open), |(mut session, open)| async move {
        let out: Outgoing = session.next().await?;
        session.written(out.position);
        let event = Event::default()
            .id(out.position.to_string())
            .event(out.kind)
            .data(out.json.as_str());
        Some((Ok::<_, Infallible>(event), (session, open)))
    });
    let mut response = Sse::new(events).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tells nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The answer to `POST /v1/stream-tokens`.
#[derive(Debug, Serialize)]
struct StreamTokenOut {
    token: String,
    expires_at: Timestamp,
    expires_in: i64,
    /// The key the token acts for, and its scope (the inbox shows who is signed in).
    key_name: String,
    scope: Scope,
}

async fn create_stream_token(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<StreamTokenOut>> {
    caller.require(Scope::Reviewer, "watching the live stream")?;
    let minted = state.stream_tokens.mint(&caller, Timestamp::now());
    Ok(axum::Json(StreamTokenOut {
        token: minted.token,
        expires_at: minted.expires_at,
        expires_in: state.stream_tokens.ttl_secs(),
        key_name: caller.name,
        scope: caller.scope,
    }))
}
