//! SaaS fallback for infergate: external OpenAI-compatible providers that answer while a
//! deployment's own replicas sleep, start or fail (SPEC §6).
//!
//! Empty until the hibernation-and-fallback work lands; the crate exists now so the data plane's
//! dependency on it is in place and the workspace layout matches the architecture.
