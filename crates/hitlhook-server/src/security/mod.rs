//! Authentication: webhook signatures over raw bytes, API keys, and short-lived stream tokens.

pub mod api_key;
pub mod signature;
pub mod stream_token;
