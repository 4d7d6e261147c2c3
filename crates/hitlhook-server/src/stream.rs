//! One live-stream session, shared by the WebSocket (`/ws`) and Server-Sent Events
//! (`/v1/stream`) transports: which events a client wants, the typed messages it receives, and
//! the producer that replays from the store and then follows the hub.
//!
//! Ordering without gap or duplicate: the session subscribes to the hub FIRST, then reads the
//! hub's published position `high`; everything up to `high` comes from the store (the source of
//! truth), everything after it from the subscription, and live events at or below the position
//! already sent are dropped.
//!
//! Slow clients never slow anyone else: the hub never waits for a subscriber (a receiver that
//! falls too far behind is told it lagged), and each session has its own bounded queue. When the
//! queue is full or the subscription lagged, the session ends with a `resync` message carrying the
//! last position the client was actually sent, so it reconnects with `?after=` and loses nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hitlhook_store::{EventQuery, Order, Store, StoredEvent};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use axum::extract::ws::Utf8Bytes;

use crate::http::dto::EventOut;
use crate::hub::{Hub, Published};

/// Events read from the store per replay round.
const REPLAY_BATCH: u32 = 500;
/// Most values one filter parameter may list.
const MAX_FILTER_VALUES: usize = 100;

/// Which events a client wants. Each list is "any of"; lists combine with "and"; empty lists
/// match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    kickoff_ids: Vec<String>,
    checkpoint_ids: Vec<String>,
    event_types: Vec<String>,
}

impl Filter {
    /// Parses the comma-separated query parameters; the error names the bad parameter.
    pub fn parse(
        kickoff_id: Option<&str>,
        checkpoint_id: Option<&str>,
        event_type: Option<&str>,
    ) -> Result<Self, String> {
        Ok(Filter {
            kickoff_ids: list("kickoff_id", kickoff_id)?,
            checkpoint_ids: list("checkpoint_id", checkpoint_id)?,
            event_types: list("event_type", event_type)?,
        })
    }

    /// True when `event` passes every list.
    #[must_use]
    pub fn matches(&self, event: &StoredEvent) -> bool {
        let any = |wanted: &[String], value: Option<&str>| {
            wanted.is_empty() || value.is_some_and(|v| wanted.iter().any(|w| w == v))
        };
        any(&self.kickoff_ids, event.kickoff_id.as_deref())
            && any(&self.checkpoint_ids, event.checkpoint_id.as_deref())
            && any(&self.event_types, Some(&event.event_type))
    }

    /// The store query for a replay: a single kickoff or checkpoint is filtered in SQL.
    fn replay_query(&self, after: i64) -> EventQuery {
        let single = |v: &[String]| (v.len() == 1).then(|| v[0].clone());
        EventQuery {
            kickoff_id: single(&self.kickoff_ids),
            checkpoint_id: single(&self.checkpoint_ids),
            order: Order::OldestFirst,
            cursor: Some(after),
            limit: REPLAY_BATCH,
        }
    }
}

fn list(name: &str, value: Option<&str>) -> Result<Vec<String>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let items: Vec<String> = value.split(',').map(|v| v.trim().to_owned()).collect();
    if items.iter().any(String::is_empty) {
        return Err(format!(
            "{name} must be a comma-separated list of non-empty values"
        ));
    }
    if items.len() > MAX_FILTER_VALUES {
        return Err(format!("{name} lists more than {MAX_FILTER_VALUES} values"));
    }
    Ok(items)
}

/// Why a session ended with a `resync` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    /// The client fell so far behind that the live feed moved on without it.
    Lagged,
    /// The client did not read fast enough: its outgoing queue filled up.
    SlowConsumer,
    /// The server is shutting down.
    Shutdown,
    /// The store could not be read for the replay.
    Unavailable,
    /// The API key the client connected with was revoked (reconnecting will be refused).
    Revoked,
}

impl ResyncReason {
    /// The wire name (`slow_consumer`, …), also the metrics label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::Lagged => "lagged",
            ResyncReason::SlowConsumer => "slow_consumer",
            ResyncReason::Shutdown => "shutdown",
            ResyncReason::Unavailable => "unavailable",
            ResyncReason::Revoked => "revoked",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            ResyncReason::Lagged => {
                "the connection fell too far behind the live feed; reconnect with ?after="
            }
            ResyncReason::SlowConsumer => {
                "messages were not read fast enough; reconnect with ?after="
            }
            ResyncReason::Shutdown => "the server is restarting; reconnect with ?after=",
            ResyncReason::Unavailable => {
                "the event store could not be read; retry shortly with ?after="
            }
            ResyncReason::Revoked => "the API key of this stream was revoked; sign in again",
        }
    }
}

/// A message to a client. Serialised with a `type` tag: `{"type":"event","seq":7,...}`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message<'a> {
    /// The replay (if any) is complete: the client has everything up to `seq`; live from here.
    Ready { seq: i64, replayed: u64 },
    /// One stored event.
    Event { seq: i64, event: EventOut },
    /// Still connected; nothing new up to `seq` matched the filter.
    Heartbeat { seq: i64 },
    /// The server ends the stream: reconnect with `?after=<after>`.
    Resync {
        after: i64,
        reason: ResyncReason,
        detail: &'a str,
    },
}

/// A serialised message and the position the client is complete up to once it has it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The position (seq) the client is complete up to once it has this message.
    pub position: i64,
    /// The `type` of the message (SSE `event:` name).
    pub kind: &'static str,
    /// The message as sent (shared, cheap to clone: a live event's text is serialised once for
    /// all subscribers).
    pub json: Utf8Bytes,
    /// Set on the last message of a session: why the server ends it.
    pub resync: Option<ResyncReason>,
}

impl Outgoing {
    fn new(position: i64, message: &Message<'_>) -> Self {
        let (kind, resync) = match message {
            Message::Ready { .. } => ("ready", None),
            Message::Event { .. } => ("event", None),
            Message::Heartbeat { .. } => ("heartbeat", None),
            Message::Resync { reason, .. } => ("resync", Some(*reason)),
        };
        Outgoing {
            position,
            kind,
            json: Utf8Bytes::from(serialise(message)),
            resync,
        }
    }

    /// A live event, sent with the message text every subscriber shares.
    fn live(event: &Published) -> Self {
        Outgoing {
            position: event.seq,
            kind: "event",
            json: event.shared_message(|e| {
                serialise(&Message::Event {
                    seq: e.seq,
                    event: EventOut::from(e),
                })
            }),
            resync: None,
        }
    }
}

fn serialise(message: &Message<'_>) -> String {
    // Every field serialises infallibly (strings, integers, stored JSON text).
    serde_json::to_string(message).unwrap_or_default()
}

/// What a client asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Replay stored events after this sequence number first.
    pub after: Option<i64>,
    /// Which events to send.
    pub filter: Filter,
}

/// Tuning shared by every session.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Period of heartbeats on an idle session.
    pub heartbeat: Duration,
    /// Messages that may wait for the client before it counts as too slow.
    pub queue: usize,
    /// How often an open session re-checks [`Access`].
    pub recheck: Duration,
}

/// Whether a session's client may still watch: checked at connection time by the transport and
/// then every [`Settings::recheck`], so revoking an API key also ends its open streams.
pub trait Access: Send + Sync + 'static {
    /// `false` ends the session with a `revoked` resync.
    fn still_allowed(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
}

/// Access that never ends (tests, embedding).
pub struct Always;

impl Access for Always {
    fn still_allowed(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(std::future::ready(true))
    }
}

/// What every session of a server shares.
#[derive(Clone)]
pub struct Context {
    /// Where replays read from.
    pub store: Arc<dyn Store>,
    /// Cancelled when the server stops: every session ends with a `shutdown` resync.
    pub shutdown: CancellationToken,
    pub settings: Settings,
}

/// One client's session: the messages to send, in order. Dropping it stops the producer.
pub struct Session {
    queue: mpsc::Receiver<Outgoing>,
    stop: oneshot::Receiver<ResyncReason>,
    finished: bool,
    /// The position of the last message the transport confirmed written.
    written: i64,
    producer: JoinHandle<()>,
}

impl Session {
    /// Subscribes to the hub (first, so nothing published from now on is missed) and starts the
    /// producer: replay from the store after `request.after`, then the live feed.
    pub fn open(context: Context, hub: &Hub, request: Request, access: Arc<dyn Access>) -> Session {
        let live = hub.subscribe();
        // Read after subscribing: every event above `high` is sent to `live` (see module doc).
        let high = hub.published_seq();
        Self::start(context, (live, high), request, access)
    }

    /// Starts a session on a subscription taken before the hub position `high` was read.
    pub fn start(
        context: Context,
        (live, high): (broadcast::Receiver<Arc<Published>>, i64),
        request: Request,
        access: Arc<dyn Access>,
    ) -> Session {
        let settings = context.settings;
        let (queue_tx, queue) = mpsc::channel(settings.queue.max(1));
        let (stop_tx, stop) = oneshot::channel();
        let start = request.after.unwrap_or(high);
        let producer = Producer {
            store: context.store,
            live,
            high,
            request,
            queue: queue_tx,
            settings,
            access,
            shutdown: context.shutdown,
        };
        let producer = tokio::spawn(async move {
            if let End::Resync(reason) = producer.run().await {
                metrics::counter!("hitlhook_stream_resyncs_total", "reason" => reason.as_str())
                    .increment(1);
                let _ = stop_tx.send(reason);
            }
        });
        Session {
            queue,
            stop,
            finished: false,
            written: start,
            producer,
        }
    }

    /// The next message to send, or `None` when the session is over. A `resync` discards
    /// whatever is still queued: it names the last position actually written, so the client
    /// loses nothing and gets nothing twice.
    pub async fn next(&mut self) -> Option<Outgoing> {
        if self.finished {
            return None;
        }
        let stopped = tokio::select! {
            biased;
            reason = &mut self.stop => reason.ok(),
            message = self.queue.recv() => match message {
                Some(message) => return Some(message),
                // The producer is gone; it may still have said why.
                None => (&mut self.stop).await.ok(),
            },
        };
        self.finished = true;
        stopped.map(|reason| {
            Outgoing::new(
                self.written,
                &Message::Resync {
                    after: self.written,
                    reason,
                    detail: reason.detail(),
                },
            )
        })
    }

    /// Records that the message at `position` reached the transport.
    pub fn written(&mut self, position: i64) {
        self.written = self.written.max(position);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.producer.abort();
    }
}

enum End {
    /// The client went away.
    Closed,
    Resync(ResyncReason),
}

struct Producer {
    store: Arc<dyn Store>,
    live: broadcast::Receiver<Arc<Published>>,
    high: i64,
    request: Request,
    queue: mpsc::Sender<Outgoing>,
    settings: Settings,
    access: Arc<dyn Access>,
    shutdown: CancellationToken,
}

impl Producer {
    async fn run(mut self) -> End {
        let after = self.request.after;
        let mut replayed = 0;
        if let Some(after) = after.filter(|a| *a < self.high) {
            match self.replay(after).await {
                Ok(n) => replayed = n,
                Err(end) => return end,
            }
        }
        // A client ahead of this node (another node served it) keeps its own position.
        let mut position = after.map_or(self.high, |a| a.max(self.high));
        let ready = Message::Ready {
            seq: position,
            replayed,
        };
        if let Err(end) = self.push(Outgoing::new(position, &ready)).await {
            return end;
        }
        let mut beat = tick_every(self.settings.heartbeat);
        let mut recheck = tick_every(self.settings.recheck);
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return End::Resync(ResyncReason::Shutdown),
                () = self.queue.closed() => return End::Closed,
                received = self.live.recv() => match received {
                    Ok(event) => {
                        if event.seq <= position {
                            continue;
                        }
                        position = event.seq;
                        if self.request.filter.matches(&event)
                            && let Err(end) = self.offer(Outgoing::live(&event))
                        {
                            return end;
                        }
                    }
                    Err(RecvError::Lagged(_)) => return End::Resync(ResyncReason::Lagged),
                    Err(RecvError::Closed) => return End::Resync(ResyncReason::Shutdown),
                },
                _ = beat.tick() => {
                    let message = Message::Heartbeat { seq: position };
                    if let Err(end) = self.offer(Outgoing::new(position, &message)) {
                        return end;
                    }
                }
                _ = recheck.tick() => {
                    if !self.access.still_allowed().await {
                        return End::Resync(ResyncReason::Revoked);
                    }
                }
            }
        }
    }

    /// Sends stored events after `after` up to the hub position seen at subscription, waiting
    /// for the client (a replay is paced by the reader). Returns how many matched.
    async fn replay(&mut self, after: i64) -> Result<u64, End> {
        let mut cursor = after;
        let mut sent = 0;
        loop {
            let query = self.request.filter.replay_query(cursor);
            let page = tokio::select! {
                () = self.shutdown.cancelled() => return Err(End::Resync(ResyncReason::Shutdown)),
                page = self.store.list_events(&query) => page,
            };
            let page = page.map_err(|e| {
                tracing::warn!(error = ?e, "live stream: replay read failed");
                End::Resync(ResyncReason::Unavailable)
            })?;
            for event in &page.items {
                if event.seq > self.high {
                    return Ok(sent);
                }
                cursor = event.seq;
                if self.request.filter.matches(event) {
                    let message = Message::Event {
                        seq: event.seq,
                        event: EventOut::from(event),
                    };
                    self.push(Outgoing::new(event.seq, &message)).await?;
                    sent += 1;
                }
            }
            if page.next_cursor.is_none() {
                return Ok(sent);
            }
        }
    }

    /// Queues a message, waiting for room (replay and the ready marker).
    async fn push(&self, message: Outgoing) -> Result<(), End> {
        tokio::select! {
            () = self.shutdown.cancelled() => Err(End::Resync(ResyncReason::Shutdown)),
            sent = self.queue.send(message) => sent.map_err(|_| End::Closed),
        }
    }

    /// Queues a live message without waiting: a full queue means the client is too slow.
    fn offer(&self, message: Outgoing) -> Result<(), End> {
        self.queue.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => End::Resync(ResyncReason::SlowConsumer),
            mpsc::error::TrySendError::Closed(_) => End::Closed,
        })
    }
}

/// An interval whose first tick is one period from now.
fn tick_every(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, kickoff: &str, event_type: &str) -> StoredEvent {
        StoredEvent {
            seq,
            identity: format!("e{seq}"),
            event_type: event_type.into(),
            kickoff_id: Some(kickoff.into()),
            checkpoint_id: Some(format!("cp-{seq}")),
            source: "test".into(),
            received_at: hitlhook_domain::Timestamp::from_millis(seq),
            occurred_at: None,
            payload: "{}".into(),
        }
    }

    #[test]
    fn filters_combine_lists_with_and() {
        let f = Filter::parse(Some("k1, k2"), None, Some("checkpoint.required")).expect("ok");
        assert!(f.matches(&event(1, "k2", "checkpoint.required")));
        assert!(!f.matches(&event(1, "k3", "checkpoint.required")));
        assert!(!f.matches(&event(1, "k1", "task.started")));
        assert!(Filter::default().matches(&event(1, "any", "any")));
        assert!(Filter::parse(Some("k1,,k2"), None, None).is_err());
        assert!(Filter::parse(None, Some(""), None).is_err());
        let many = vec!["x"; 101].join(",");
        assert!(Filter::parse(None, None, Some(&many)).is_err());
        let single = Filter::parse(Some("k1"), Some("c1"), None).expect("ok");
        let q = single.replay_query(5);
        assert_eq!(
            (
                q.kickoff_id.as_deref(),
                q.checkpoint_id.as_deref(),
                q.cursor
            ),
            (Some("k1"), Some("c1"), Some(5))
        );
        assert_eq!(
            f.replay_query(0).kickoff_id,
            None,
            "two kickoffs: filtered here"
        );
    }

    /// A subscription the hub moved past ends the session with a resync at the position the
    /// client was actually sent, whatever was still queued.
    #[tokio::test]
    async fn a_lagged_subscription_ends_with_a_resync() {
        let db = hitlhook_store::testing::TestDb::sqlite();
        let (hub, live) = broadcast::channel(2);
        let context = Context {
            store: db.store().await,
            shutdown: CancellationToken::new(),
            settings: Settings {
                heartbeat: Duration::from_secs(60),
                queue: 8,
                recheck: Duration::from_secs(60),
            },
        };
        let mut session = Session::start(context, (live, 10), Request::default(), Arc::new(Always));
        let ready = session.next().await.expect("ready");
        assert_eq!(ready.json, r#"{"type":"ready","seq":10,"replayed":0}"#);
        session.written(ready.position);
        for seq in 11..=15 {
            hub.send(Arc::new(Published::new(event(seq, "k", "task.started"))))
                .expect("subscribed");
        }
        let resync = session.next().await.expect("resync");
        assert_eq!(
            resync.json,
            r#"{"type":"resync","after":10,"reason":"lagged","detail":"the connection fell too far behind the live feed; reconnect with ?after="}"#
        );
        assert!(session.next().await.is_none(), "the session is over");
    }

    #[test]
    fn messages_are_typed_json() {
        let m = Outgoing::new(3, &Message::Heartbeat { seq: 3 });
        assert_eq!(m.json, r#"{"type":"heartbeat","seq":3}"#);
        let r = Message::Resync {
            after: 9,
            reason: ResyncReason::SlowConsumer,
            detail: "d",
        };
        let r = Outgoing::new(9, &r);
        assert_eq!(
            (r.resync, r.kind),
            (Some(ResyncReason::SlowConsumer), "resync")
        );
        assert_eq!(
            r.json,
            r#"{"type":"resync","after":9,"reason":"slow_consumer","detail":"d"}"#
        );
    }
}
