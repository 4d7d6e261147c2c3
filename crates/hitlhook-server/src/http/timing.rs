//! The `Server-Timing: app;dur=<ms>` response header: how long the server spent on a request,
//! from routing to the response head, so a client (the scale benchmark, a browser's devtools)
//! can tell server time from network and client time. One clock read at each end; no body
//! buffering, so streams and long polls report the time to their first byte.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// Adds `Server-Timing: app;dur=<milliseconds, 3 decimals>` to every response.
pub async fn server_timing(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut response = next.run(request).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={ms:.3}")) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn every_response_says_how_long_the_server_took() {
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    "done"
                }),
            )
            .layer(axum::middleware::from_fn(server_timing));
        let response = app
            .oneshot(
                Request::builder()
                    .uri("/slow")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        let value = response.headers()["server-timing"].to_str().expect("ascii");
        let ms: f64 = value
            .strip_prefix("app;dur=")
            .and_then(|v| v.parse().ok())
            .expect("app;dur=<ms>");
        assert!((20.0..5000.0).contains(&ms), "{value}");
    }
}
