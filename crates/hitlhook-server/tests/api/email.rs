//! Email: a real SMTP server on loopback receives the notification; the test parses it, follows
//! a decision link, sees the confirmation page (a GET never decides), posts, and sees the
//! checkpoint decided by that recipient — and everything else follow: the Slack message is
//! edited, a waiting client wakes, subscribers are told, the other recipient's links show who
//! decided. Bad, forged and expired links are refused with the store unchanged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hitlhook_domain::{Action, Timestamp};
use hitlhook_server::config::Secret;
use hitlhook_server::delivery::config::SmtpTls;
use hitlhook_server::security::links::{LinkClaims, LinkSigner};
use hitlhook_store::testing::TestDb;
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;
use crate::peers::{Receiver, SmtpServer, slack_stand_in};

on_both_backends!(
    an_emailed_link_confirms_then_decides_and_every_channel_follows,
    bad_forged_and_expired_links_change_nothing,
);

/// The `Action: URL` lines of the text part.
fn links(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim().split_once(": http"))
        .filter(|(label, _)| ["Continue", "Revise…", "Skip", "Stop"].contains(label))
        .map(|(label, rest)| (label.to_owned(), format!("http{rest}")))
        .collect()
}

async fn page(app: &TestApp, url: &str) -> (u16, String) {
    let r = app
        .client
        .get(url)
        .header("accept", "text/html")
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

fn hidden_token(html: &str) -> String {
    let start = html.find("name=\"token\" value=\"").expect("a token field") + 20;
    html[start..].split('"').next().expect("value").to_owned()
}

async fn post_form(app: &TestApp, fields: &[(&str, &str)], accept: &str) -> reqwest::Response {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    app.client
        .post(app.url("/email/decision"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", accept)
        .body(body)
        .send()
        .await
        .expect("request")
}

async fn an_emailed_link_confirms_then_decides_and_every_channel_follows(db: TestDb) {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let slack = slack_stand_in("xoxb-mail-test").await;
    let subscriber = Receiver::answering(200).await;
    let (port, api) = (smtp.port, slack.url("/api"));
    let app = Arc::new(
        TestApp::spawn_with(db, move |cfg| {
            cfg.delivery.smtp_host = Some("127.0.0.1".into());
            cfg.delivery.smtp_port = Some(port);
            cfg.delivery.smtp_tls = SmtpTls::None;
            cfg.delivery.smtp_from = Some("hitlhook <hitl@example.com>".into());
            cfg.delivery.email_recipients = vec!["ops@example.com".into()];
            cfg.delivery.slack_bot_token = Some(Secret("xoxb-mail-test".into()));
            cfg.delivery.slack_channel = Some("C0REVIEW".into());
            cfg.delivery.slack_api_url = api.clone();
            cfg.delivery.outbound_allow = vec!["127.0.0.1".into()];
            cfg.delivery.schedule = "20ms".into();
        })
        .await,
    );
    let created = app
        .client
        .post(app.url("/v1/subscriptions"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"url": subscriber.url("/hook"), "event_types": ["checkpoint.decided"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    let mut body = checkpoint_body("cp-1", "k-1");
    body["recipients"] = json!(["alice@example.com", "bob@example.com"]);
    body["context"]["draft"] = json!("Q3 <summary> & outlook");
    assert_eq!(app.send_event(&body).await.status(), 200);
    let mails = smtp.wait_for(2, 20).await;
    let mail_to = |who: &str| {
        mails
            .iter()
            .find(|m| m["rcpt_tos"] == json!([who]))
            .cloned()
            .unwrap_or_else(|| panic!("a mail to {who}: {mails:?}"))
    };
    let alice = mail_to("alice@example.com");
    let bob = mail_to("bob@example.com");
    assert!(
        !mails
            .iter()
            .any(|m| m["rcpt_tos"] == json!(["ops@example.com"])),
        "named recipients replace the default list"
    );
    assert_eq!(alice["subject"], "Review needed: after_planning");
    assert_eq!(alice["mail_from"], "hitl@example.com");
    assert_eq!(alice["content_type"], "multipart/alternative");
    assert_eq!(
        alice["parts"],
        json!(["multipart/alternative", "text/plain", "text/html"])
    );
    let deliveries = app.deliveries("cp-1").await;
    let alice_delivery = deliveries
        .iter()
        .find(|d| d["kind"] == "email" && d["target"] == "alice@example.com")
        .expect("delivery");
    assert_eq!(
        alice["message_id"],
        format!(
            "<{}@example.com>",
            alice_delivery["id"].as_str().expect("id")
        ),
        "the Message-ID is the idempotency key"
    );
    let text = alice["text"].as_str().expect("text part");
    let html = alice["html"].as_str().expect("html part");
    assert!(
        text.contains("Execution: k-1")
            && text.contains("plan: 1. research 2. write")
            && text.contains("draft: Q3 <summary> & outlook"),
        "{text}"
    );
    assert!(
        html.contains("Q3 &lt;summary&gt; &amp; outlook") && !html.contains("<summary>"),
        "escaped HTML: {html}"
    );
    let alice_links = links(text);
    assert_eq!(
        alice_links
            .iter()
            .map(|(l, _)| l.as_str())
            .collect::<Vec<_>>(),
        ["Continue", "Revise…", "Skip", "Stop"]
    );
    for (_, url) in &alice_links {
        assert!(
            url.starts_with(&format!("{}/email/decision?token=", app.base)),
            "{url}"
        );
        assert!(
            html.contains(&format!("href=\"{url}\"")),
            "the HTML part has the same link"
        );
    }
    let bob_links = links(bob["text"].as_str().expect("text"));
    assert_ne!(alice_links[0].1, bob_links[0].1, "links are per recipient");

    // A client long-polls for the decision; Slack has the message with its buttons.
    slack.wait_for("/api/chat.postMessage", 1, 10).await;
    let waiter = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            app.get_json(ADMIN_KEY, "/v1/checkpoints/cp-1?wait=20")
                .await
        })
    };

    // Opening the link (a person, or a scanner that follows links) only shows a page.
    let before = app.snapshot().await;
    let continue_url = &alice_links[0].1;
    for _ in 0..2 {
        let (status, page_html) = page(&app, continue_url).await;
        assert_eq!(status, 200);
        assert!(
            page_html.contains("Confirm: continue") && page_html.contains("<form method=\"post\""),
            "{page_html}"
        );
        assert!(page_html.contains("alice@example.com"));
    }
    let scanner = app.client.get(continue_url).send().await.expect("request");
    assert_eq!(scanner.status(), 200);
    assert_eq!(scanner.headers()["cache-control"], "no-store");
    assert_eq!(scanner.headers()["referrer-policy"], "no-referrer");
    assert_eq!(app.snapshot().await, before, "GET never decides");
    assert!(!waiter.is_finished());

    let (_, confirm) = page(&app, continue_url).await;
    let started = Instant::now();
    let done = post_form(
        &app,
        &[("token", &hidden_token(&confirm)), ("feedback", "")],
        "text/html",
    )
    .await;
    assert_eq!(done.status(), 200);
    assert!(
        done.text()
            .await
            .expect("body")
            .contains("Recorded as decided by alice@example.com via email")
    );
    let cp = app.checkpoint("cp-1").await;
    assert_eq!(
        (
            cp["decision"]["action"].as_str(),
            cp["decision"]["decided_by"].as_str(),
            cp["decision"]["channel"].as_str()
        ),
        (Some("continue"), Some("alice@example.com"), Some("email"))
    );

    // Everyone else follows.
    let woke = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter wakes")
        .expect("join");
    assert_eq!(woke["decision"]["decided_by"], "alice@example.com");
    let edit = slack.wait_for("/api/chat.update", 1, 10).await.remove(0);
    let edited = edit.json()["blocks"].to_string();
    assert!(
        edited.contains("*Continue* by alice@example.com via email")
            && !edited.contains("\"actions\""),
        "{edited}"
    );
    let hook = subscriber.wait_for("/hook", 1, 10).await.remove(0).json();
    assert_eq!(
        (
            hook["type"].as_str(),
            hook["data"]["decision"]["decided_by"].as_str()
        ),
        (Some("checkpoint.decided"), Some("alice@example.com"))
    );
    println!(
        "email POST to Slack edit, subscriber and waiter: {:?}",
        started.elapsed()
    );

    // Bob's links now say who decided, and deciding through them changes nothing.
    let after = app.snapshot().await;
    let (status, bob_page) = page(&app, &bob_links[2].1).await;
    assert_eq!(status, 200);
    assert!(
        bob_page.contains("Already decided: continue by alice@example.com via email"),
        "{bob_page}"
    );
    assert!(
        !bob_page.contains("<form"),
        "no form on a decided checkpoint"
    );
    let bob_token = bob_links[2]
        .1
        .split("token=")
        .nth(1)
        .expect("token")
        .to_owned();
    let late = post_form(&app, &[("token", &bob_token)], "text/html").await;
    assert_eq!(late.status(), 409);
    assert!(
        late.text()
            .await
            .expect("body")
            .contains("Already decided: continue by alice@example.com")
    );
    let late_json = post_form(&app, &[("token", &bob_token)], "application/json").await;
    assert_problem(late_json, 409, "already_decided").await;
    // Alice posting the same decision again is harmless.
    let again = post_form(&app, &[("token", &hidden_token(&confirm))], "text/html").await;
    assert_eq!(again.status(), 200);
    assert_eq!(app.snapshot().await, after);
}

async fn bad_forged_and_expired_links_change_nothing(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-1", "k-1").await;
    // The test server's first webhook secret signs links, as in production.
    let signer = LinkSigner::new(SECRET.as_bytes());
    let token = |action: Action, expires_in_ms: i64, checkpoint: &str| {
        signer.sign(&LinkClaims {
            checkpoint_id: checkpoint.into(),
            recipient: "carol@example.com".into(),
            action,
            expires_at: Timestamp::now().millis() + expires_in_ms,
            delivery_id: "d-test".into(),
        })
    };
    let before = app.snapshot().await;
    let revise = token(Action::Revise, 60_000, "cp-1");
    let url = |t: &str| app.url(&format!("/email/decision?token={t}"));
    let get_json = |t: String| {
        let app = &app;
        let u = url(&t);
        async move {
            app.client
                .get(u)
                .header("accept", "application/json")
                .send()
                .await
                .expect("request")
        }
    };
    let forged = LinkSigner::new(b"someone else's key").sign(&LinkClaims {
        checkpoint_id: "cp-1".into(),
        recipient: "mallory@example.com".into(),
        action: Action::Continue,
        expires_at: i64::MAX,
        delivery_id: "d".into(),
    });
    let (claims_part, tag) = revise.split_once('.').expect("dot");
    let swapped = format!("{}.{tag}", &forged.split_once('.').expect("dot").0);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "expired",
            token(Action::Continue, -1, "cp-1"),
            410,
            "link_expired",
        ),
        ("forged with another key", forged.clone(), 403, "forbidden"),
        (
            "claims swapped under a valid tag",
            swapped,
            403,
            "forbidden",
        ),
        (
            "one character of the tag changed",
            format!(
                "{claims_part}.{}{}",
                if tag.starts_with('A') { 'B' } else { 'A' },
                &tag[1..]
            ),
            403,
            "forbidden",
        ),
        ("garbage", "not-a-token".into(), 400, "invalid_link"),
        ("empty", String::new(), 400, "invalid_link"),
        (
            "unknown checkpoint",
            token(Action::Continue, 60_000, "nope"),
            404,
            "not_found",
        ),
    ];
    for (name, t, status, code) in cases {
        let body = assert_problem(get_json(t.clone()).await, status, code).await;
        assert!(body["detail"].is_string(), "{name}");
        let posted = post_form(&app, &[("token", &t)], "application/json").await;
        assert_problem(posted, status, code).await;
    }
    let (status, html) = page(&app, &url("garbage")).await;
    assert_eq!(status, 400);
    assert!(
        html.contains("this link is malformed"),
        "browsers get a page: {html}"
    );
    // Revise needs feedback: the form asks again; nothing is decided.
    let (status, form_page) = page(&app, &url(&revise)).await;
    assert_eq!(status, 200);
    assert!(form_page.contains("textarea id=\"feedback\" name=\"feedback\" required"));
    let empty = post_form(&app, &[("token", &revise), ("feedback", "  ")], "text/html").await;
    assert_eq!(empty.status(), 422);
    assert!(
        empty
            .text()
            .await
            .expect("body")
            .contains("Please write what the agent should change.")
    );
    assert_problem(
        post_form(&app, &[("token", &revise)], "application/json").await,
        422,
        "feedback_required",
    )
    .await;
    // Only the confirmation page's form is accepted.
    let json_post = app
        .client
        .post(app.url("/email/decision"))
        .json(&json!({"token": revise}))
        .send()
        .await
        .expect("request");
    assert_problem(json_post, 415, "unsupported_media_type").await;
    assert_eq!(app.snapshot().await, before, "nothing changed");
    let decided = post_form(
        &app,
        &[("token", &revise), ("feedback", "Shorter, please.")],
        "text/html",
    )
    .await;
    assert_eq!(decided.status(), 200);
    let cp = app.checkpoint("cp-1").await;
    assert_eq!(
        (
            cp["decision"]["action"].as_str(),
            cp["decision"]["feedback"].as_str(),
            cp["decision"]["decided_by"].as_str()
        ),
        (
            Some("revise"),
            Some("Shorter, please."),
            Some("carol@example.com")
        )
    );
}

on_both_backends!(an_unreachable_smtp_server_is_retried_then_dead);

async fn an_unreachable_smtp_server_is_retried_then_dead(db: TestDb) {
    // A port nothing listens on: connection refused on every attempt.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let app = TestApp::spawn_with(db, move |cfg| {
        cfg.delivery.smtp_host = Some("127.0.0.1".into());
        cfg.delivery.smtp_port = Some(port);
        cfg.delivery.smtp_tls = SmtpTls::None;
        cfg.delivery.smtp_from = Some("hitl@example.com".into());
        cfg.delivery.email_recipients = vec!["alice@example.com".into()];
        cfg.delivery.schedule = "10ms".into();
        cfg.delivery.max_attempts = 3;
    })
    .await;
    app.send_checkpoint("cp-1", "k-1").await;
    let dead = app.delivery_in_state("cp-1", "email", "dead").await;
    assert_eq!(dead["attempts"], 3, "connection failures are retried");
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("SMTP:")),
        "{dead}"
    );
}
