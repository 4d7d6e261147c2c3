//! Who may open the live stream: refusals before any upgrade (as problem JSON, on `/ws` and
//! `/v1/stream`), browser stream tokens, and revocation ending streams already open.

use std::time::Duration;

use futures_util::StreamExt;
use hitlhook_store::testing::TestDb;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::*;
use crate::ws::{next_events, recv, refused, until_ready, ws_request};

/// Every refusal happens before the upgrade, as problem JSON; an API key in the URL is ignored.
#[tokio::test]
async fn bad_connections_are_refused_before_the_upgrade() {
    let app = TestApp::spawn(TestDb::sqlite()).await;
    let ingest = app.create_key("sender", "ingest").await;
    let cases = [
        ("", None, 401, "unauthorized"),
        (&*format!("?api_key={ADMIN_KEY}"), None, 401, "unauthorized"),
        ("", Some("hhk_not-a-key"), 401, "invalid_api_key"),
        ("", Some(ingest.as_str()), 403, "forbidden"),
        ("?token=hst_forged.mac", None, 401, "invalid_stream_token"),
        ("?after=-1", Some(ADMIN_KEY), 400, "invalid_query"),
        ("?after=soon", Some(ADMIN_KEY), 400, "invalid_query"),
        ("?event_type=a,,b", Some(ADMIN_KEY), 400, "invalid_query"),
        ("?since=3", Some(ADMIN_KEY), 400, "invalid_query"),
    ];
    for (query, key, status, code) in cases {
        let (got, body) = refused(ws_request(&app, query, key)).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{query}"
        );
        let sse = match key {
            Some(key) => app.get(key, &format!("/v1/stream{query}")).await,
            None => app
                .client
                .get(app.url(&format!("/v1/stream{query}")))
                .send()
                .await
                .expect("request"),
        };
        assert_problem(sse, status, code).await;
    }
    // A plain GET is told to upgrade, or to use Server-Sent Events.
    let plain = app.get(ADMIN_KEY, "/ws").await;
    let body = assert_problem(plain, 400, "websocket_upgrade_required").await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("/v1/stream")
    );
}

/// Revoking a key ends the streams already open with it, whichever way they authenticated.
#[tokio::test]
async fn revoking_a_key_ends_its_open_streams() {
    let app = TestApp::spawn_with(TestDb::sqlite(), |c| c.stream_heartbeat_ms = 100).await;
    let key = app.create_key("leaver", "reviewer").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(&app, "", Some(&key)))
        .await
        .expect("handshake");
    until_ready(&mut ws).await;
    let revoked = app
        .client
        .delete(app.url("/v1/keys/leaver"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("revoke");
    assert!(revoked.status().is_success());
    let resync = loop {
        let message = recv(&mut ws).await;
        if message["type"] == "resync" {
            break message;
        }
    };
    assert_eq!(resync["reason"], "revoked");
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => assert_eq!(frame.code, CloseCode::Policy),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let (status, body) = refused(ws_request(&app, "", Some(&key))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
}

/// Browsers get a short-lived, single-use token instead of putting the API key in a URL.
#[tokio::test]
async fn stream_tokens_open_the_stream_once() {
    let app = TestApp::spawn(TestDb::sqlite()).await;
    let reviewer = app.create_key("rita", "reviewer").await;
    let ingest = app.create_key("sender", "ingest").await;
    let mint = |key: Option<String>| {
        let mut request = app.client.post(app.url("/v1/stream-tokens"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    assert_problem(mint(None).await.expect("req"), 401, "unauthorized").await;
    assert_problem(mint(Some(ingest)).await.expect("req"), 403, "forbidden").await;
    let minted: Value = mint(Some(reviewer.clone()))
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(minted["key_name"], "rita");
    assert_eq!(minted["scope"], "reviewer");
    assert_eq!(minted["expires_in"], 60);
    let token = minted["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("hst_") && !token.contains(&reviewer));

    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_request(&app, &format!("?token={token}"), None))
            .await
            .expect("a token opens the stream");
    until_ready(&mut ws).await;
    app.send_checkpoint("cp-1", "k-1").await;
    assert_eq!(
        next_events(&mut ws, 1).await[0]["event"]["checkpoint_id"],
        "cp-1"
    );

    let (status, body) = refused(ws_request(&app, &format!("?token={token}"), None)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("used_stream_token"))
    );

    // The same works for Server-Sent Events (EventSource cannot set headers either).
    let for_sse: Value = mint(Some(reviewer.clone()))
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    let sse_url = format!(
        "/v1/stream?token={}",
        for_sse["token"].as_str().expect("token")
    );
    let mut sse = app
        .client
        .get(app.url(&sse_url))
        .send()
        .await
        .expect("request");
    assert_eq!(sse.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), sse.chunk())
        .await
        .expect("a frame")
        .expect("body")
        .expect("open");
    assert!(
        String::from_utf8_lossy(&first).contains("event: ready"),
        "{first:?}"
    );
    let again = app
        .client
        .get(app.url(&sse_url))
        .send()
        .await
        .expect("request");
    assert_problem(again, 401, "used_stream_token").await;

    // A token dies with its key.
    let second: Value = mint(Some(reviewer.clone()))
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    let revoked = app
        .client
        .delete(app.url("/v1/keys/rita"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("revoke");
    assert!(revoked.status().is_success());
    let query = format!("?token={}", second["token"].as_str().expect("token"));
    let (status, body) = refused(ws_request(&app, &query, None)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    // The connection opened before the revocation is not affected by later tokens' fate.
    app.send_checkpoint("cp-2", "k-1").await;
    assert_eq!(
        next_events(&mut ws, 1).await[0]["event"]["checkpoint_id"],
        "cp-2"
    );
}
