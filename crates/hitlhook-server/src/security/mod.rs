//! Authentication: webhook signatures over raw bytes, API keys, short-lived stream tokens, Slack
//! request signing and the signed links in notification emails.

pub mod amp;
pub mod api_key;
pub mod links;
pub mod signature;
pub mod slack;
pub mod stream_token;
