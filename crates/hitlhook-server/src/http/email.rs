//! The pages behind email decision links. `GET /email/decision?token=` shows the checkpoint and
//! asks for confirmation — it never decides, so link scanners and previews change nothing. The
//! form POSTs back to the same path and decides as the link's recipient, via email. A link of a
//! closed checkpoint shows who decided. Browsers get HTML; other clients get problem JSON with the
//! same status and code.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hitlhook_domain::delivery::summary;
use hitlhook_domain::{
    Action, Checkpoint, CheckpointStatus, DecideError, DecisionRequest, Timestamp,
};
use hitlhook_store::DecideOutcome;
use serde::Deserialize;

use crate::delivery::email::DECISION_PATH;
use crate::error::ApiError;
use crate::html::{closed_sentence, escape, inbox_link};
use crate::http::AppState;
use crate::http::checkpoints::apply_decision;
use crate::http::extract::{Query, read_body};
use crate::security::links::{LinkClaims, LinkError};

pub fn router() -> Router<AppState> {
    Router::new().route(DECISION_PATH, get(show_decision).post(confirm_decision))
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// A page, or the same answer as problem JSON for clients that ask for JSON.
struct Page {
    status: StatusCode,
    code: &'static str,
    title: String,
    body: String,
}

impl Page {
    fn new(
        status: StatusCode,
        code: &'static str,
        title: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        Page {
            status,
            code,
            title: title.into(),
            body: body.into(),
        }
    }

    fn render(self, headers: &HeaderMap) -> Response {
        // These links are opened by people: a page unless the client asks for JSON (a bare
        // `curl`, a mail client's preview or a browser all get HTML).
        let wants_json = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("json") && !a.contains("text/html"));
        let mut response = if !wants_json || self.status.is_success() {
            let html = format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
                 <meta name=\"robots\" content=\"noindex\"><title>{title} · hitlhook</title>\
                 <style>body{{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2328;max-width:640px;margin:40px auto;padding:0 16px;line-height:1.5}}\
                 th{{text-align:left;padding:4px 12px 4px 0;vertical-align:top}}td{{white-space:pre-wrap}}\
                 button{{font-size:16px;padding:10px 20px;border-radius:6px;border:0;background:#1a7f37;color:#fff;cursor:pointer}}\
                 textarea{{width:100%;min-height:120px;font:inherit}}.muted{{color:#57606a}}.error{{color:#cf222e}}</style></head>\
                 <body><h1>{title}</h1>{body}</body></html>",
                title = escape(&self.title),
                body = self.body
            );
            let mut r = (self.status, html).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        } else {
            let error = match self.status.as_u16() {
                400 => ApiError::bad_request(self.code, self.title),
                403 => ApiError::Forbidden { detail: self.title },
                404 => ApiError::not_found(self.title),
                409 => ApiError::Conflict {
                    code: self.code,
                    detail: self.title,
                    extra: serde_json::Map::new(),
                },
                410 => ApiError::Gone {
                    code: self.code,
                    detail: self.title,
                },
                503 => ApiError::Unavailable { detail: self.title },
                _ => ApiError::unprocessable(self.code, self.title),
            };
            error.into_response()
        };
        let h = response.headers_mut();
        // The token is in the URL: keep it out of caches, referrers and frames.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
        );
        response
    }
}

fn link_error(e: &LinkError) -> Page {
    let status = match e {
        LinkError::Malformed => StatusCode::BAD_REQUEST,
        LinkError::BadSignature => StatusCode::FORBIDDEN,
        LinkError::Expired => StatusCode::GONE,
    };
    Page::new(
        status,
        e.code(),
        e.to_string(),
        "<p>Open the checkpoint in the hitlhook inbox instead, or ask for a new email.</p>",
    )
}

/// Verifies the token and loads its checkpoint, or the page to show instead.
async fn resolve(state: &AppState, token: Option<&str>) -> Result<(LinkClaims, Checkpoint), Page> {
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
        Page::new(
            StatusCode::BAD_REQUEST,
            "invalid_link",
            "this link has no token",
            "<p>Use the link exactly as it came in the email.</p>",
        )
    })?;
    let claims = state
        .delivery
        .links
        .verify(token, Timestamp::now())
        .map_err(|e| link_error(&e))?;
    match state.store.get_checkpoint(&claims.checkpoint_id).await {
        Ok(Some(cp)) => Ok((claims, cp)),
        Ok(None) => Err(Page::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this checkpoint no longer exists",
            "",
        )),
        Err(e) => {
            tracing::error!(error = ?e, "email link: reading the checkpoint failed");
            Err(Page::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "please try again in a moment",
                "",
            ))
        }
    }
}

fn details(cp: &Checkpoint) -> String {
    let rows: String = summary::summarize(&cp.context_json, 30, 1000)
        .iter()
        .map(|f| {
            format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(&f.label),
                escape(&f.value)
            )
        })
        .collect();
    format!(
        "<p class=\"muted\">Checkpoint <b>{}</b> · execution <code>{}</code> · id <code>{}</code></p><table>{rows}</table>",
        escape(&cp.name),
        escape(cp.kickoff_id.as_deref().unwrap_or("-")),
        escape(&cp.id)
    )
}

fn closed_page(state: &AppState, cp: &Checkpoint, status: StatusCode) -> Page {
    let body = format!(
        "{}<p><a href=\"{}\">Open in the inbox</a></p>",
        details(cp),
        escape(&inbox_link(&state.delivery.base_url, &cp.id))
    );
    Page::new(status, "already_decided", closed_sentence(cp), body)
}

fn confirm_page(cp: &Checkpoint, claims: &LinkClaims, token: &str, error: Option<&str>) -> String {
    let feedback = if claims.action == Action::Revise {
        "<p><label for=\"feedback\"><b>What should the agent change?</b></label><br><textarea id=\"feedback\" name=\"feedback\" required maxlength=\"10000\"></textarea></p>"
    } else {
        "<p><label for=\"feedback\">Comment (optional)</label><br><textarea id=\"feedback\" name=\"feedback\" maxlength=\"10000\"></textarea></p>"
    };
    format!(
        "{}{}<form method=\"post\" action=\"{DECISION_PATH}\"><input type=\"hidden\" name=\"token\" value=\"{}\">{feedback}\
         <p><button type=\"submit\">Confirm: {}</button></p></form><p class=\"muted\">You are deciding as {}. Nothing happens until you confirm.</p>",
        error
            .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
            .unwrap_or_default(),
        details(cp),
        escape(token),
        escape(claims.action.as_str()),
        escape(&claims.recipient)
    )
}

async fn show_decision(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    let page = match resolve(&state, q.token.as_deref()).await {
        Err(page) => page,
        Ok((_, cp)) if cp.status != CheckpointStatus::Pending => {
            closed_page(&state, &cp, StatusCode::OK)
        }
        Ok((claims, cp)) => Page::new(
            StatusCode::OK,
            "confirm",
            format!("Confirm: {} “{}”?", claims.action, cp.name),
            confirm_page(&cp, &claims, q.token.as_deref().unwrap_or_default(), None),
        ),
    };
    page.render(&headers)
}

async fn confirm_decision(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(&headers, body, &state.config).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return ApiError::UnsupportedMediaType {
            detail: format!("expected the form of the confirmation page (application/x-www-form-urlencoded), got {content_type:?}"),
        }
        .into_response();
    }
    let mut token = None;
    let mut feedback = None;
    for (k, v) in form_urlencoded::parse(&bytes) {
        match k.as_ref() {
            "token" => token = Some(v.into_owned()),
            "feedback" => feedback = Some(v.into_owned()).filter(|f| !f.trim().is_empty()),
            _ => {}
        }
    }
    let (claims, cp) = match resolve(&state, token.as_deref()).await {
        Ok(found) => found,
        Err(page) => return page.render(&headers),
    };
    let request = DecisionRequest {
        action: claims.action,
        feedback,
        decided_by: claims.recipient.clone(),
        channel: "email".into(),
    };
    let source = format!("email:{}", claims.delivery_id);
    let page = match apply_decision(&state, &cp.id, request, &source).await {
        Err(e) => return e.into_response(),
        Ok(DecideOutcome::Decided { checkpoint, .. }) => Page::new(
            StatusCode::OK,
            "decided",
            format!("Done: {} “{}”", claims.action, checkpoint.name),
            format!(
                "<p>Recorded as decided by {} via email. The agent has been told.</p>",
                escape(&claims.recipient)
            ),
        ),
        Ok(DecideOutcome::Unchanged(checkpoint)) => {
            closed_page(&state, &checkpoint, StatusCode::OK)
        }
        Ok(DecideOutcome::Refused {
            checkpoint,
            error: DecideError::FeedbackRequired,
        }) => Page::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "feedback_required",
            "revise needs feedback telling the agent what to change",
            confirm_page(
                &checkpoint,
                &claims,
                token.as_deref().unwrap_or_default(),
                Some("Please write what the agent should change."),
            ),
        ),
        Ok(DecideOutcome::Refused {
            checkpoint,
            error: DecideError::ActionNotAllowed(a),
        }) => Page::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "action_not_allowed",
            format!("{a} is not allowed at this checkpoint"),
            details(&checkpoint),
        ),
        Ok(DecideOutcome::Refused {
            checkpoint,
            error: DecideError::Invalid(e),
        }) => Page::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            e.to_string(),
            details(&checkpoint),
        ),
        Ok(DecideOutcome::Refused { checkpoint, .. }) => {
            closed_page(&state, &checkpoint, StatusCode::CONFLICT)
        }
        Ok(DecideOutcome::NotFound) => Page::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this checkpoint no longer exists",
            "",
        ),
    };
    page.render(&headers)
}
