//! The live stream over WebSocket (`GET /ws`) with a real client, tokio-tungstenite: order,
//! filters, replay, reconnection, slow clients, heartbeats, shutdown. Authentication and stream
//! tokens are in `stream_auth.rs`, Server-Sent Events specifics in `sse.rs`.

use std::time::Duration;

use futures_util::StreamExt;
use hitlhook_store::testing::TestDb;
use hitlhook_store::{EventQuery, Order};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::*;
use crate::on_both_backends;

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) fn ws_request(
    app: &TestApp,
    query: &str,
    key: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = format!("{}/ws{query}", app.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().expect("ws request");
    if let Some(key) = key {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("header"),
        );
    }
    request
}

/// Opens `/ws` with the admin key and checks the handshake succeeded.
pub(crate) async fn connect(app: &TestApp, query: &str) -> Ws {
    let (ws, response) = tokio_tungstenite::connect_async(ws_request(app, query, Some(ADMIN_KEY)))
        .await
        .expect("websocket handshake");
    assert_eq!(response.status(), 101);
    ws
}

/// The refusal of a handshake: status and problem JSON body.
pub(crate) async fn refused(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> (u16, Value) {
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            assert_eq!(content_type, "application/problem+json");
            let body = response.body().clone().expect("problem body");
            (
                response.status().as_u16(),
                serde_json::from_slice(&body).expect("problem json"),
            )
        }
        Ok(_) => panic!("the handshake should have been refused"),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

/// The next JSON message; panics after 10 s of silence or on close.
pub(crate) async fn recv(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("connection open")
            .expect("valid frame");
        match frame {
            Message::Text(text) => return serde_json::from_str(&text).expect("json message"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads up to and including `ready`: the replayed events and the ready message.
pub(crate) async fn until_ready(ws: &mut Ws) -> (Vec<Value>, Value) {
    let mut events = Vec::new();
    loop {
        let message = recv(ws).await;
        match message["type"].as_str() {
            Some("event") => events.push(message),
            Some("ready") => return (events, message),
            _ => panic!("unexpected message before ready: {message}"),
        }
    }
}

/// Waits until the change feed has published `seq`, so a client connecting now replays it (a
/// 200 from ingest means committed; the hub publishes a moment later). A real client is the probe.
pub(crate) async fn wait_published(app: &TestApp, seq: i64) {
    let mut probe = connect(app, "").await;
    let (_, ready) = until_ready(&mut probe).await;
    let mut position = ready["seq"].as_i64().expect("seq");
    while position < seq {
        let message = recv(&mut probe).await;
        position = message["seq"].as_i64().unwrap_or(position);
    }
}

/// The next `n` event messages, skipping heartbeats.
pub(crate) async fn next_events(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut events = Vec::new();
    while events.len() < n {
        let message = recv(ws).await;
        match message["type"].as_str() {
            Some("event") => events.push(message),
            Some("heartbeat") => {}
            _ => panic!("unexpected message: {message}"),
        }
    }
    events
}

fn seqs(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect()
}

/// Every sequence number in the store, in order.
pub(crate) async fn stored_seqs(app: &TestApp) -> Vec<i64> {
    let page = app
        .store
        .list_events(&EventQuery {
            order: Order::OldestFirst,
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    page.items.iter().map(|e| e.seq).collect()
}

on_both_backends!(
    live_events_are_filtered_and_in_order,
    replay_after_then_live_has_no_gap_and_no_duplicate,
    reconnecting_with_after_loses_nothing,
);

async fn live_events_are_filtered_and_in_order(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut all = connect(&app, "").await;
    let mut by_kickoff = connect(&app, "?kickoff_id=k-1").await;
    let mut decided = connect(&app, "?event_type=checkpoint.decided,checkpoint.expired").await;
    let mut by_checkpoint = connect(&app, "?checkpoint_id=cp-2,cp-3").await;
    for ws in [&mut all, &mut by_kickoff, &mut decided, &mut by_checkpoint] {
        let (replayed, ready) = until_ready(ws).await;
        assert!(replayed.is_empty(), "no ?after=: live only");
        assert_eq!(ready["seq"], 0);
    }

    app.send_checkpoint("cp-1", "k-1").await;
    app.send_checkpoint("cp-2", "k-2").await;
    let response = app
        .decide(ADMIN_KEY, "cp-1", "revise", Some("Cite sources"))
        .await;
    assert_eq!(response.status(), 200);

    let everything = next_events(&mut all, 3).await;
    assert_eq!(seqs(&everything), stored_seqs(&app).await, "store order");
    let types: Vec<&str> = everything
        .iter()
        .map(|e| e["event"]["event_type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "checkpoint.required",
            "checkpoint.required",
            "checkpoint.decided"
        ]
    );
    assert_eq!(everything[0]["event"]["payload"]["context"]["score"], 0.93);

    let k1 = next_events(&mut by_kickoff, 2).await;
    assert!(
        k1.iter().all(|e| e["event"]["kickoff_id"] == "k-1"),
        "{k1:?}"
    );

    let only_decided = next_events(&mut decided, 1).await;
    let payload = &only_decided[0]["event"]["payload"];
    assert_eq!(payload["decision"]["action"], "revise");
    assert_eq!(payload["decision"]["decided_by"], "key:WEBHOOK_API_KEY");
    assert_eq!(only_decided[0]["seq"], everything[2]["seq"]);

    let cp2 = next_events(&mut by_checkpoint, 1).await;
    assert_eq!(cp2[0]["event"]["checkpoint_id"], "cp-2");

    // Nothing else was queued for the filtered clients: the next message is a new event.
    app.send_checkpoint("cp-3", "k-1").await;
    assert_eq!(
        next_events(&mut by_kickoff, 1).await[0]["event"]["checkpoint_id"],
        "cp-3"
    );
    assert_eq!(
        next_events(&mut by_checkpoint, 1).await[0]["event"]["checkpoint_id"],
        "cp-3"
    );
}

async fn replay_after_then_live_has_no_gap_and_no_duplicate(db: TestDb) {
    let app = TestApp::spawn(db).await;
    for i in 1..=5 {
        app.send_checkpoint(&format!("cp-{i}"), "k-1").await;
    }
    let stored = stored_seqs(&app).await;
    wait_published(&app, stored[4]).await;

    let mut ws = connect(&app, &format!("?after={}", stored[1])).await;
    let (replayed, ready) = until_ready(&mut ws).await;
    assert_eq!(seqs(&replayed), stored[2..]);
    assert_eq!(ready["seq"], stored[4]);
    assert_eq!(ready["replayed"], 3);

    // Events committed while a client connects and replays: every one exactly once, in order.
    let sender = {
        let (base, client) = (app.base.clone(), app.client.clone());
        tokio::spawn(async move {
            for i in 6..=40 {
                let body = checkpoint_body(&format!("cp-{i}"), "k-2");
                let bytes = serde_json::to_vec(&body).expect("json");
                let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
                let now = hitlhook_domain::Timestamp::now().unix_seconds();
                let response = client
                    .post(format!("{base}/webhook/crewai"))
                    .headers(TestApp::signed_headers(SECRET, &bytes, &id, now))
                    .body(bytes)
                    .send()
                    .await
                    .expect("send");
                assert_eq!(response.status(), 200);
            }
        })
    };
    let mut racing = connect(&app, "?after=0").await;
    sender.await.expect("sender");
    let total = stored_seqs(&app).await;
    assert_eq!(total.len(), 40);
    let mut received = Vec::new();
    while received.len() < total.len() {
        let message = recv(&mut racing).await;
        if message["type"] == "event" {
            received.push(message["seq"].as_i64().expect("seq"));
        }
    }
    assert_eq!(received, total, "no gap, no duplicate, store order");
    // The first client kept following live.
    assert_eq!(seqs(&next_events(&mut ws, 35).await), total[5..]);
}

async fn reconnecting_with_after_loses_nothing(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut ws = connect(&app, "").await;
    until_ready(&mut ws).await;
    for i in 1..=3 {
        app.send_checkpoint(&format!("cp-{i}"), "k-1").await;
    }
    let seen = next_events(&mut ws, 2).await;
    let last = seen[1]["seq"].as_i64().expect("seq");
    ws.close(None).await.expect("close");
    drop(ws);

    for i in 4..=6 {
        app.send_checkpoint(&format!("cp-{i}"), "k-1").await;
    }
    wait_published(&app, *stored_seqs(&app).await.last().expect("stored")).await;
    let mut again = connect(&app, &format!("?after={last}")).await;
    let (replayed, ready) = until_ready(&mut again).await;
    app.send_checkpoint("cp-7", "k-1").await;
    let live = next_events(&mut again, 1).await;

    let mut all = seqs(&seen);
    all.extend(seqs(&replayed));
    all.extend(seqs(&live));
    assert_eq!(all, stored_seqs(&app).await, "everything once, in order");
    assert_eq!(ready["seq"], replayed.last().expect("replayed")["seq"]);
}

/// A client whose socket buffer is tiny and who stops reading: the server must cut it off with
/// a resync while a fast client and the ingest path go on at full speed.
#[tokio::test]
async fn slow_client_is_cut_off_while_a_fast_one_keeps_up() {
    let app = TestApp::spawn_with(TestDb::sqlite(), |c| {
        c.stream_queue = 8;
        c.stream_send_timeout_ms = 60_000;
    })
    .await;
    let mut fast = connect(&app, "").await;
    let mut slow = {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let addr = app
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("addr");
        let stream = socket.connect(addr).await.expect("connect");
        let request = ws_request(&app, "", Some(ADMIN_KEY));
        tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
            .await
            .expect("handshake")
            .0
    };
    until_ready(&mut fast).await;
    until_ready(&mut slow).await;

    // 200 events of ~32 KiB (6.6 MB): more than the socket buffers (at most 4 MiB here) and the
    // queue hold.
    const N: usize = 200;
    let fast_reader = tokio::spawn(async move {
        let events = next_events(&mut fast, N).await;
        (seqs(&events), fast)
    });
    let filler = "x".repeat(32 * 1024);
    let started = std::time::Instant::now();
    for i in 0..N {
        let mut body = checkpoint_body(&format!("cp-{i}"), "k-1");
        body["context"]["filler"] = json!(filler);
        let response = app.send_event(&body).await;
        assert_eq!(
            response.status(),
            200,
            "ingest never waits for a slow client"
        );
    }
    let ingest_time = started.elapsed();
    let (fast_seqs, _fast) = tokio::time::timeout(Duration::from_secs(30), fast_reader)
        .await
        .expect("the fast client keeps up")
        .expect("reader");
    let stored = stored_seqs(&app).await;
    assert_eq!(fast_seqs, stored, "the fast client got everything in order");
    eprintln!("ingest of {N} x 32 KiB events with a stalled client: {ingest_time:?}");

    // The slow client now reads: a prefix of the events, then a resync naming where it stopped.
    let mut got = Vec::new();
    let resync = loop {
        let message = recv(&mut slow).await;
        match message["type"].as_str() {
            Some("event") => got.push(message["seq"].as_i64().expect("seq")),
            Some("resync") => break message,
            _ => panic!("unexpected {message}"),
        }
    };
    eprintln!("slow client: {} of {N} events, then {resync}", got.len());
    assert_eq!(resync["reason"], "slow_consumer");
    assert!(
        got.len() < N,
        "cut off before the end ({} events)",
        got.len()
    );
    assert_eq!(got, stored[..got.len()], "a gap-free prefix");
    assert_eq!(resync["after"], got.last().copied().unwrap_or(0));
    match tokio::time::timeout(Duration::from_secs(10), slow.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => {
            assert_eq!(frame.code, CloseCode::Again);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }

    // Resuming from the resync position delivers exactly the rest (the fast client saw all of it
    // live, so the feed has published it).
    let after = resync["after"].as_i64().expect("after");
    let mut resumed = connect(&app, &format!("?after={after}")).await;
    let (rest, _) = until_ready(&mut resumed).await;
    got.extend(seqs(&rest));
    assert_eq!(got, stored);
}

/// Heartbeats arrive on an idle connection and carry the position, which also advances past
/// events the filter hides (so a reconnect does not re-scan them).
#[tokio::test]
async fn heartbeats_carry_the_position() {
    let app = TestApp::spawn_with(TestDb::sqlite(), |c| c.stream_heartbeat_ms = 100).await;
    let mut ws = connect(&app, "?kickoff_id=k-watched").await;
    let (_, ready) = until_ready(&mut ws).await;
    assert_eq!(ready["seq"], 0);
    assert_eq!(recv(&mut ws).await, json!({"type": "heartbeat", "seq": 0}));
    app.send_checkpoint("cp-1", "k-other").await;
    let seq = stored_seqs(&app).await[0];
    loop {
        let message = recv(&mut ws).await;
        assert_eq!(
            message["type"], "heartbeat",
            "the filtered event is not sent"
        );
        if message["seq"] == seq {
            break;
        }
    }
}

/// A client's close is answered with a close frame (the closing handshake), not a dropped
/// connection: clients wait for that answer before they count the stream as closed.
#[tokio::test]
async fn a_clients_close_is_answered() {
    use futures_util::SinkExt;
    let app = TestApp::spawn(TestDb::sqlite()).await;
    let mut ws = connect(&app, "").await;
    until_ready(&mut ws).await;
    ws.send(Message::Close(None)).await.expect("close");
    let answer = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("answered in time");
    assert!(
        matches!(answer, Some(Ok(Message::Close(_)))),
        "a close frame, not {answer:?}"
    );
}

/// On shutdown every client is told where to resume; after the restart nothing is lost.
#[tokio::test]
async fn server_restart_tells_clients_to_resync() {
    let app = TestApp::spawn(TestDb::sqlite()).await;
    let mut ws = connect(&app, "").await;
    until_ready(&mut ws).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let first = next_events(&mut ws, 1).await;
    let app = app.restart().await;
    let resync = recv(&mut ws).await;
    assert_eq!(resync["type"], "resync");
    assert_eq!(resync["reason"], "shutdown");
    assert_eq!(resync["after"], first[0]["seq"]);
    app.send_checkpoint("cp-2", "k-1").await;
    wait_published(&app, *stored_seqs(&app).await.last().expect("stored")).await;
    let mut again = connect(&app, &format!("?after={}", resync["after"])).await;
    let (rest, _) = until_ready(&mut again).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["event"]["checkpoint_id"], "cp-2");
}

/// Fan-out figures (run with `--ignored --nocapture`): many clients, each gets every event once
/// and in order; prints the delivery time and the send-to-client latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run explicitly"]
async fn fan_out_to_many_clients() {
    const CLIENTS: usize = 100;
    const EVENTS: usize = 500;
    let app = TestApp::spawn(TestDb::sqlite()).await;
    let mut readers = Vec::new();
    for _ in 0..CLIENTS {
        let mut ws = connect(&app, "").await;
        until_ready(&mut ws).await;
        readers.push(tokio::spawn(async move {
            let events = next_events(&mut ws, EVENTS).await;
            (seqs(&events), std::time::Instant::now())
        }));
    }
    let mut probe = connect(&app, "").await;
    until_ready(&mut probe).await;
    let mut latencies = Vec::new();
    for i in 0..20 {
        let sent = std::time::Instant::now();
        app.send_checkpoint(&format!("probe-{i}"), "k-probe").await;
        next_events(&mut probe, 1).await;
        latencies.push(sent.elapsed());
    }
    let started = std::time::Instant::now();
    let senders: Vec<_> = (0..4)
        .map(|w| {
            let (base, client) = (app.base.clone(), app.client.clone());
            tokio::spawn(async move {
                for i in (w..EVENTS - 20).step_by(4) {
                    let body = checkpoint_body(&format!("cp-{i}"), "k-fan");
                    let bytes = serde_json::to_vec(&body).expect("json");
                    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
                    let now = hitlhook_domain::Timestamp::now().unix_seconds();
                    let response = client
                        .post(format!("{base}/webhook/crewai"))
                        .headers(TestApp::signed_headers(SECRET, &bytes, &id, now))
                        .body(bytes)
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(response.status(), 200);
                }
            })
        })
        .collect();
    for s in senders {
        s.await.expect("sender");
    }
    let ingested = started.elapsed();
    let stored = stored_seqs(&app).await;
    let mut last = started;
    for reader in readers {
        let (got, at) = reader.await.expect("reader");
        assert_eq!(got, stored, "every client: every event once, in order");
        last = last.max(at);
    }
    latencies.sort();
    eprintln!(
        "{CLIENTS} clients x {EVENTS} events: ingest {ingested:?}, all delivered after {:?}; \
         send-to-client latency (signed POST, commit, stream) p50 {:?}, max {:?}",
        last - started,
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}
