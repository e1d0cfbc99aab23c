//! The cluster's two loops: the Lease election and the readings of the other instances' load.

use super::election::{Election, LeaseRead, Step};
use super::peers::LoadReport;
use super::ClusterView;
use crate::backend::kubernetes::endpoints_of;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, ListParams, PostParams};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often the other instances are read.
const READ_EVERY: Duration = Duration::from_millis(500);
/// Longest wait for one instance's answer.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Connects (kubeconfig or service account, retrying) and runs both loops.
pub async fn run(view: Arc<ClusterView>, token: String) {
    let client = loop {
        match kube::Client::try_default().await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "cluster mode: no Kubernetes API to talk to; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let namespace = view
        .config
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    tokio::spawn(read_peers(
        view.clone(),
        Api::namespaced(client.clone(), &namespace),
        token,
    ));
    elect(view, Api::namespaced(client, &namespace)).await;
}

/// Reads the Lease every retry period and creates, renews or takes it over as the election says.
async fn elect(view: Arc<ClusterView>, leases: Api<Lease>) {
    let name = view.config.lease_name.clone();
    let duration = view.config.lease_duration.get();
    let mut election = Election::new(&view.identity, duration);
    let period = election.retry_period();
    loop {
        let sent = view.epoch.elapsed();
        let mut holder = view.holder();
        match tokio::time::timeout(period, leases.get_opt(&name)).await {
            Ok(Ok(lease)) => {
                let read = lease.as_ref().map(|l| LeaseRead {
                    holder: l
                        .spec
                        .as_ref()
                        .and_then(|s| s.holder_identity.clone())
                        .unwrap_or_default(),
                    version: l.metadata.resource_version.clone().unwrap_or_default(),
                });
                let step = election.on_read(sent, read);
                let written = match step {
                    Step::Follow { holder: h } => {
                        holder = Some(h);
                        None
                    }
                    Step::Create => Some(
                        leases
                            .create(
                                &PostParams::default(),
                                &new_lease(&name, &view.identity, duration),
                            )
                            .await,
                    ),
                    Step::Update { take_over } => {
                        let mut lease = lease.unwrap_or_default();
                        hold(&mut lease, &view.identity, duration, take_over);
                        Some(leases.replace(&name, &PostParams::default(), &lease).await)
                    }
                };
                match written {
                    Some(Ok(_)) => {
                        election.on_written(sent);
                        holder = Some(view.identity.clone());
                    }
                    Some(Err(kube::Error::Api(e))) if e.code == 409 => election.on_conflict(),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, lease = %name, "cannot write the Lease")
                    }
                    None => {}
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, lease = %name, "cannot read the Lease"),
            Err(_) => tracing::warn!(lease = %name, "reading the Lease timed out"),
        }
        view.set_leader(election.is_leader(view.epoch.elapsed()), holder);
        tokio::time::sleep(period).await;
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn new_lease(name: &str, me: &str, duration: Duration) -> Lease {
    let mut lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        spec: None,
    };
    hold(&mut lease, me, duration, true);
    lease
}

/// Writes `me` into the Lease as holder, renewed now.
fn hold(lease: &mut Lease, me: &str, duration: Duration, take_over: bool) {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(me.to_string());
    spec.lease_duration_seconds = Some(duration.as_secs().max(1) as i32);
    spec.renew_time = Some(now());
    if take_over {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
}

/// Every [`READ_EVERY`]: the instances from the EndpointSlices of infergate's Service, and each
/// one's load from its admin listener.
async fn read_peers(view: Arc<ClusterView>, slices: Api<EndpointSlice>, token: String) {
    let selector = format!("kubernetes.io/service-name={}", view.config.service);
    let params = ListParams::default().labels(&selector);
    loop {
        tokio::time::sleep(READ_EVERY).await;
        let list = match tokio::time::timeout(READ_TIMEOUT, slices.list(&params)).await {
            Ok(Ok(list)) => list,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, selector, "cannot list infergate's instances");
                continue;
            }
            Err(_) => continue,
        };
        let addrs: Vec<SocketAddr> = list
            .items
            .iter()
            .flat_map(|s| endpoints_of(s, &view.config.admin_port))
            .filter(|e| !e.terminating)
            .map(|e| e.addr)
            .collect();
        let reads = addrs.iter().map(|addr| read_load(*addr, &token));
        let reports = futures_util::future::join_all(reads).await;
        let now = view.epoch.elapsed();
        if let Ok(mut book) = view.peers.lock() {
            for (addr, report) in addrs.iter().zip(reports) {
                match report {
                    Ok(r) if r.instance != view.identity => {
                        book.record(&r.instance, now, r.deployments)
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(%addr, error = %e, "cannot read an instance's load"),
                }
            }
        }
    }
}

/// `GET /admin/v1/cluster/load` on one instance.
async fn read_load(addr: SocketAddr, token: &str) -> Result<LoadReport, String> {
    let fetch = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let request = hyper::Request::get("/admin/v1/cluster/load")
            .header("host", addr.to_string())
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    tokio::time::timeout(READ_TIMEOUT, fetch)
        .await
        .map_err(|_| "no answer within 1s".to_string())?
}
