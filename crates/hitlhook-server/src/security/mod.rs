//! Authentication: webhook signatures over raw bytes, and API keys.

pub mod api_key;
pub mod signature;
