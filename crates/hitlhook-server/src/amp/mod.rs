//! CrewAI AMP around the HTTP API and the CLI: creating sources ([`source`]), and starting and
//! reconciling runs on a deployment ([`kickoff`]).

pub mod kickoff;
pub mod reconcile;
pub mod source;
