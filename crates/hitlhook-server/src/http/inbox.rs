//! The reviewer web inbox at `/`: static HTML, CSS and JavaScript compiled into the binary (no
//! CDN, no build step, works offline). Every response carries a strict Content-Security-Policy:
//! only this origin's scripts, styles and connections; no inline code, frames or form posts.
//! The inbox is a plain client of the public API and the live stream; it has no private routes.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::http::AppState;
use crate::http::extract::Path;

/// `/` and `/inbox/{file}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(get_index))
        .route("/inbox/{file}", get(get_asset))
}

/// The policy on every inbox response. `connect-src 'self'` covers the same-origin `ws:`/`wss:`
/// stream; `form-action 'none'` means a key typed into the sign-in form can never be submitted
/// in a URL, even if the script failed to load.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../inbox/index.html"),
};

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../inbox/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../inbox/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../inbox/api.js"),
    },
    Asset {
        name: "render.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../inbox/render.js"),
    },
    Asset {
        name: "views.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../inbox/views.js"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../../inbox/icon.svg"),
    },
];

/// A strong validator per asset, so browsers revalidate cheaply (`Cache-Control: no-cache`).
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    std::iter::once(&INDEX)
        .chain(ASSETS)
        .map(|a| {
            format!(
                "\"{}\"",
                &hex::encode(Sha256::digest(a.body.as_bytes()))[..20]
            )
        })
        .collect()
});

async fn get_index(headers: HeaderMap) -> Response {
    serve(&INDEX, &ETAGS[0], &headers)
}

async fn get_asset(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .zip(ETAGS.iter().skip(1))
        .find(|(a, _)| a.name == file)
        .map(|(asset, etag)| serve(asset, etag, &headers))
        .ok_or_else(|| ApiError::not_found(format!("no inbox file {file:?}")))
}

fn serve(asset: &Asset, etag: &str, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("cache-control", "no-cache"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
