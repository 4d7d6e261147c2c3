//! The live stream over Server-Sent Events (`GET /v1/stream`), read by a real HTTP client:
//! replay, live events, heartbeats and resuming with `Last-Event-ID`.

use std::time::Duration;

use hitlhook_store::testing::TestDb;
use serde_json::Value;

use crate::helpers::*;
use crate::on_both_backends;
use crate::ws::{stored_seqs, wait_published};

/// One Server-Sent Events frame.
#[derive(Debug, Default, PartialEq)]
struct SseFrame {
    id: String,
    event: String,
    data: Value,
}

/// Reads SSE frames from a streaming response body.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn next(&mut self) -> SseFrame {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let raw: String = self.buffer.drain(..end + 2).collect();
                let mut frame = SseFrame::default();
                for line in raw.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => frame.id = value.to_owned(),
                        "event" => frame.event = value.to_owned(),
                        "data" => frame.data = serde_json::from_str(value).expect("json data"),
                        _ => {}
                    }
                }
                return frame;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("a frame within 10 s")
                .expect("body")
                .expect("stream open");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }
}

on_both_backends!(server_sent_events_replay_follow_and_resume);

async fn server_sent_events_replay_follow_and_resume(db: TestDb) {
    let app = TestApp::spawn_with(db, |c| c.stream_heartbeat_ms = 200).await;
    app.send_checkpoint("cp-1", "k-1").await;
    app.send_checkpoint("cp-2", "k-1").await;
    let stored = stored_seqs(&app).await;
    wait_published(&app, stored[1]).await;

    let response = app.get(ADMIN_KEY, "/v1/stream?after=0").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().expect("ct"),
        "text/event-stream"
    );
    let mut sse = SseReader {
        response,
        buffer: String::new(),
    };
    for seq in &stored {
        let frame = sse.next().await;
        assert_eq!(
            (frame.event.as_str(), frame.id.clone()),
            ("event", seq.to_string())
        );
        assert_eq!(frame.data["seq"], *seq);
    }
    let ready = sse.next().await;
    assert_eq!(ready.event, "ready");
    assert_eq!(ready.data["seq"], stored[1]);
    app.send_checkpoint("cp-3", "k-1").await;
    let live = sse.next().await;
    assert_eq!(live.data["event"]["checkpoint_id"], "cp-3");
    let beat = sse.next().await;
    assert_eq!((beat.event.as_str(), &beat.id), ("heartbeat", &live.id));

    // An EventSource reconnecting by itself sends Last-Event-ID, which wins over ?after=.
    let resumed = app
        .client
        .get(app.url("/v1/stream?after=0"))
        .bearer_auth(ADMIN_KEY)
        .header("last-event-id", stored[1].to_string())
        .send()
        .await
        .expect("request");
    let mut sse = SseReader {
        response: resumed,
        buffer: String::new(),
    };
    assert_eq!(sse.next().await.data["event"]["checkpoint_id"], "cp-3");
    assert_eq!(sse.next().await.event, "ready");

    let bad = app
        .client
        .get(app.url("/v1/stream"))
        .bearer_auth(ADMIN_KEY)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .expect("request");
    assert_problem(bad, 400, "invalid_last_event_id").await;
}

/// An open event stream does not hold up a graceful shutdown: it ends with a resync.
#[tokio::test]
async fn shutdown_ends_open_event_streams_with_a_resync() {
    let mut app = TestApp::spawn(TestDb::sqlite()).await;
    app.send_checkpoint("cp-1", "k-1").await;
    wait_published(&app, stored_seqs(&app).await[0]).await;
    let mut sse = SseReader {
        response: app.get(ADMIN_KEY, "/v1/stream").await,
        buffer: String::new(),
    };
    let ready = sse.next().await;
    assert_eq!(ready.event, "ready");
    tokio::time::timeout(Duration::from_secs(10), app.stop_server())
        .await
        .expect("the server stops although a stream is open");
    let resync = sse.next().await;
    assert_eq!(resync.event, "resync");
    assert_eq!(resync.data["reason"], "shutdown");
    assert_eq!(resync.data["after"], ready.data["seq"]);
}
