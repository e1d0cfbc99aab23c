//! The data plane: the worker threads that accept client connections, and the request path they
//! run, one module per phase in the order a request meets them (the shape of pingora's
//! `ProxyHttp` hooks):
//!
//! 1. accept — [`workers`] (a runtime per core), [`connection`] (admission, sniffing, the
//!    HTTP/1.1 keep-alive loop);
//! 2. read body — [`request_body`] (limits, decoding), [`multipart`];
//! 3. route — [`route`] over the [`routing`] table (model, alias, header, host or path prefix →
//!    [`deployment`]);
//! 4. admit — [`app`] (`route_and_proxy`, which runs the phases in this order: local answers,
//!    fallback before the queue, maintenance hold);
//! 5. acquire — a replica slot from the deployment's pool (`infergate_scaler::ReplicaPool`),
//!    with [`heartbeat`]s for a streaming request held long;
//! 6. forward — [`forward`] over [`upstream`] connections;
//! 7. fallback after an error — [`fallback`];
//! 8. log — [`access_log`] (metrics and the access log line);
//!
//! with [`errors`] and [`respond`] for the answers the proxy writes itself.

pub mod access_log;
pub mod app;
pub mod client_auth;
pub mod connection;
pub mod deployment;
pub mod errors;
pub mod fallback;
pub mod forward;
pub mod heartbeat;
pub mod multipart;
pub mod request_body;
pub mod respond;
pub mod route;
pub mod routing;
pub mod routing_key;
pub mod upstream;
pub mod workers;
