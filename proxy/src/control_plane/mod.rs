//! The control plane: the admin API (live state, scaling verbs, events, metrics), the CLI verbs
//! that call it, and hot reload of the config file.

pub mod admin;
pub mod admin_token;
pub mod cli;
pub mod reload;
