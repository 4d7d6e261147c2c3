//! Connection limits against slow or idle clients: the header read timeout closes connections
//! that trickle headers or sit idle, and the connection cap makes extra clients wait instead of
//! exhausting file descriptors.

use std::time::{Duration, Instant};

use hitlhook_store::testing::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; returns how long that took and what it said.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&got).into_owned(),
    )
}

#[tokio::test]
async fn trickled_headers_and_idle_connections_are_closed() {
    let app = TestApp::spawn_with(TestDb::sqlite(), |c| {
        c.header_read_timeout_secs = 1;
    })
    .await;

    // Headers sent one line at a time, never finished.
    let mut slow = TcpStream::connect(addr(&app)).await.expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let trickle = async {
        for i in 0..10 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    trickle.await;
    let (_, said) = until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(
        !said.contains("200 OK"),
        "an unfinished request is never answered: {said}"
    );

    // A connection that sends nothing at all.
    let mut idle = TcpStream::connect(addr(&app)).await.expect("connect");
    let (took, _) = until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "idle for {took:?}");

    // A keep-alive connection that goes quiet after a request.
    let mut keep = TcpStream::connect(addr(&app)).await.expect("connect");
    keep.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (took, said) = until_closed(&mut keep, Duration::from_secs(5)).await;
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    assert!(
        took < Duration::from_secs(3),
        "idle keep-alive for {took:?}"
    );

    // Normal clients are unaffected.
    let health = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("req");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_body_that_never_arrives_is_answered_408() {
    let app = TestApp::spawn_with(TestDb::sqlite(), |c| {
        c.header_read_timeout_secs = 1;
    })
    .await;
    // Before any credential is checked: an AMP endpoint of a source that does not exist, and
    // the seed's ingest endpoint.
    for path in ["/amp/nosuchsource/events", "/webhook/crewai"] {
        let mut stalled = TcpStream::connect(addr(&app)).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 1000\r\n\r\n{{"
        );
        stalled.write_all(head.as_bytes()).await.expect("write");
        let (took, said) = until_closed(&mut stalled, Duration::from_secs(5)).await;
        assert!(said.starts_with("HTTP/1.1 408"), "{path}: {said}");
        assert!(said.contains("request_timeout"), "{path}: {said}");
        assert!(took < Duration::from_secs(3), "{path}: waited {took:?}");
    }
    assert_eq!(app.store.stats().await.expect("stats").events_total, 0);
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let app = TestApp::spawn_with(TestDb::sqlite(), |c| {
        c.max_connections = 1;
    })
    .await;
    let holder = TcpStream::connect(addr(&app)).await.expect("connect");
    // Give the server a moment to accept the first connection and take the only slot.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let waiting = tokio::spawn({
        let client = reqwest::Client::new();
        let url = app.url("/health");
        async move {
            let started = Instant::now();
            let status = client.get(url).send().await.expect("req").status();
            (status, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "a second connection waited while the cap was reached"
    );
    drop(holder);
    let (status, took) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("answered once the slot was free")
        .expect("task");
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(700), "{took:?}");
}
