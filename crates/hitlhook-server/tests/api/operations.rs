//! Health, readiness, metrics and the OpenAPI document.

use hitlhook_store::testing::TestDb;
use serde_json::Value;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(health_ready_and_metrics_report_the_truth);

async fn health_ready_and_metrics_report_the_truth(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let backend = app.db.name;
    app.send_checkpoint("cp-1", "k-1").await;
    let health: Value = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["pending_events"], 0);
    assert_eq!(health["processed_events"], 1);
    assert_eq!(health["pending_checkpoints"], 1);
    assert_eq!(health["database"]["backend"], backend);
    assert_eq!(
        app.client
            .get(app.url("/ready"))
            .send()
            .await
            .expect("req")
            .status(),
        200
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("req")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("hitlhook_ingest_total"), "{metrics}");
    // SQLite's common batches go through its ingest thread; PostgreSQL has the one path.
    let path = if backend == "sqlite" {
        "sqlite_thread"
    } else {
        "general"
    };
    assert!(
        metrics.contains(&format!("hitlhook_ingest_batches_total{{path=\"{path}\"}}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("hitlhook_http_request_duration_seconds_bucket"),
        "latency histogram"
    );
    assert!(
        metrics.contains("route=\"/webhook/crewai\""),
        "labels use the route template"
    );
    let response = app.client.get(app.url("/ready")).send().await.expect("req");
    assert!(response.headers().contains_key("x-request-id"));
}

/// Every route the server answers is documented.
#[tokio::test]
async fn openapi_documents_every_route() {
    let doc: Value =
        serde_json::from_str(hitlhook_server::http::health::OPENAPI).expect("valid JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let routes = [
        ("post", "/webhook/crewai"),
        ("post", "/webhook/feedback"),
        ("get", "/webhook/checkpoint/{id}"),
        ("get", "/webhook/status/{kickoff_id}"),
        ("get", "/v1/checkpoints"),
        ("get", "/v1/checkpoints/{id}"),
        ("post", "/v1/checkpoints/{id}/decision"),
        ("get", "/v1/executions"),
        ("get", "/v1/executions/{kickoff_id}"),
        ("get", "/v1/executions/{kickoff_id}/events"),
        ("get", "/v1/events"),
        ("get", "/v1/keys"),
        ("post", "/v1/keys"),
        ("delete", "/v1/keys/{id_or_name}"),
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
        ("get", "/ws"),
        ("get", "/v1/stream"),
        ("post", "/v1/stream-tokens"),
        ("get", "/"),
        ("get", "/inbox/{file}"),
        ("get", "/v1/deliveries"),
        ("get", "/v1/deliveries/{id}"),
        ("post", "/v1/deliveries/{id}/retry"),
        ("get", "/v1/subscriptions"),
        ("post", "/v1/subscriptions"),
        ("get", "/v1/subscriptions/{id}"),
        ("delete", "/v1/subscriptions/{id}"),
        ("post", "/amp/{source}/{endpoint}"),
        ("post", "/amp/{source}/{endpoint}/{token}"),
        ("get", "/v1/amp/sources"),
        ("post", "/v1/amp/sources"),
        ("get", "/v1/amp/sources/{name}"),
        ("delete", "/v1/amp/sources/{name}"),
        ("post", "/v1/amp/sources/{name}/kickoff"),
        ("post", "/v1/executions/{kickoff_id}/reconcile"),
        ("post", "/slack/interactions"),
        ("get", "/email/decision"),
        ("post", "/email/decision"),
    ];
    for (method, path) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
}
