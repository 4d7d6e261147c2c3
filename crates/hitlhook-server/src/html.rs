//! Small HTML helpers shared by notification emails and the email decision pages: escaping and
//! the inbox link. Everything shown to people goes through [`escape`].

use hitlhook_domain::Checkpoint;

/// Escapes text for HTML element content and attribute values.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Percent-encodes a URL query value.
#[must_use]
pub fn query_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters), as the
/// inbox's router decodes it with `decodeURIComponent`.
#[must_use]
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where people review a checkpoint in the web inbox (`#/pending/{id}` opens its detail view,
/// whatever its status).
#[must_use]
pub fn inbox_link(base_url: &str, checkpoint_id: &str) -> String {
    format!(
        "{}/#/pending/{}",
        base_url.trim_end_matches('/'),
        path_segment(checkpoint_id)
    )
}

/// How a closed checkpoint ended, in one sentence for people.
#[must_use]
pub fn closed_sentence(cp: &Checkpoint) -> String {
    match &cp.decision {
        Some(d) => format!(
            "Already decided: {} by {} via {} at {}.",
            d.action, d.decided_by, d.channel, d.decided_at
        ),
        None => format!(
            "This checkpoint is {}{}.",
            cp.status.as_str(),
            cp.closed_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x&'y")</script>"#),
            "&lt;script&gt;alert(&quot;x&amp;&#39;y&quot;)&lt;/script&gt;"
        );
        assert_eq!(
            inbox_link("https://h.example/", "cp 1/2+é"),
            "https://h.example/#/pending/cp%201%2F2%2B%C3%A9"
        );
    }
}
