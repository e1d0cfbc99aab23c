//! The operator CLI: `status`, `scale`, `events`, `hibernate`, `resume`, `activate`,
//! `maintenance`, talking to a
//! running infergate's admin API. Human tables by default, `--json` for scripts; clear errors when
//! the proxy is unreachable or the token is refused.

use crate::control_plane::admin_token::token_file;
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use infergate_fallback::provider::error_chain;
use serde_json::{json, Map, Value};
use std::process::ExitCode;
use std::time::Duration;

/// Where the admin API is and how to authenticate.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// Admin API base URL.
    #[arg(
        long,
        env = "INFERGATE_ADMIN_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub admin: String,
    /// Bearer token (default: $INFERGATE_ADMIN_TOKEN, else the token file infergate wrote).
    #[arg(long, env = "INFERGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// The CLI verbs that talk to a running proxy.
#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Show every deployment's live state.
    Status {
        /// Only this deployment.
        name: Option<String>,
        /// Where the admin API is.
        #[command(flatten)]
        conn: Connection,
    },
    /// Change a deployment's autoscaling settings (effective on the next decision).
    Scale(ScaleArgs),
    /// List the event log; with --follow, keep printing new events as they happen.
    Events {
        /// Keep the stream open and print events as they happen.
        #[arg(long, short)]
        follow: bool,
        /// Only this deployment.
        #[arg(long)]
        deployment: Option<String>,
        /// Only these types, comma-separated (e.g. scaled_up,scaled_down).
        #[arg(long = "type")]
        kinds: Option<String>,
        /// At most this many past events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Where the admin API is.
        #[command(flatten)]
        conn: Connection,
    },
    /// Hibernate a deployment now (zero replicas until woken).
    Hibernate {
        /// Deployment name.
        name: String,
        /// Where the admin API is.
        #[command(flatten)]
        conn: Connection,
    },
    /// Wake a hibernated deployment.
    Resume {
        /// Deployment name.
        name: String,
        /// Where the admin API is.
        #[command(flatten)]
        conn: Connection,
    },
    /// Bring a deactivated deployment back.
    Activate {
        /// Deployment name.
        name: String,
        /// Where the admin API is.
        #[command(flatten)]
        conn: Connection,
    },
    /// Switch maintenance on or off: the fallback answers new requests if it is configured for
    /// maintenance, else they wait until maintenance is off; requests in flight finish.
    Maintenance {
        /// Deployment name.
        name: String,
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// Where the admin API is.
        #[command(flatten)]
        conn: Connection,
    },
}

impl Verb {
    /// The admin API this verb talks to.
    pub fn connection(&self) -> &Connection {
        match self {
            Verb::Status { conn, .. }
            | Verb::Events { conn, .. }
            | Verb::Hibernate { conn, .. }
            | Verb::Resume { conn, .. }
            | Verb::Activate { conn, .. }
            | Verb::Maintenance { conn, .. } => conn,
            Verb::Scale(args) => &args.conn,
        }
    }
}

/// `infergate scale NAME --min-replicas N --max-replicas M …`
#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// Deployment name.
    pub name: String,
    /// Floor of replicas (0 = scale to zero).
    #[arg(long)]
    pub min_replicas: Option<u32>,
    /// Ceiling of replicas.
    #[arg(long)]
    pub max_replicas: Option<u32>,
    /// Requests one replica should carry.
    #[arg(long)]
    pub concurrency_target: Option<u32>,
    /// Headroom in percent (1–100).
    #[arg(long)]
    pub target_utilization: Option<u32>,
    /// Averaging window, e.g. 60s.
    #[arg(long)]
    pub autoscaling_window: Option<String>,
    /// Delay before scaling down, e.g. 15m.
    #[arg(long)]
    pub scale_down_delay: Option<String>,
    /// Where the admin API is.
    #[command(flatten)]
    pub conn: Connection,
}

/// Why a CLI call failed.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("cannot reach the infergate admin API at {url}: {reason} (is infergate running? set --admin or INFERGATE_ADMIN_URL)")]
    Unreachable { url: String, reason: String },
    #[error("the admin API refused the token ({status}): {message} (set --token or INFERGATE_ADMIN_TOKEN)")]
    Token { status: u16, message: String },
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("{0}")]
    Usage(String),
}

struct Api {
    base: String,
    token: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Api {
    fn new(conn: &Connection) -> Api {
        let base = conn.admin.trim_end_matches('/').to_string();
        let token = conn.token.clone().unwrap_or_else(|| {
            let address = base
                .trim_start_matches("http://")
                .trim_start_matches("https://");
            std::fs::read_to_string(token_file(address))
                .map(|t| t.trim().to_string())
                .unwrap_or_default()
        });
        Api {
            base,
            token,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, CliError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |reason: String| CliError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .map_err(|e| CliError::Usage(format!("bad admin URL {url}: {e}")))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .map_err(|_| unreachable("no answer within 10 s".into()))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CliError::Token {
                status: status.as_u16(),
                message,
            },
            _ => CliError::Api {
                status: status.as_u16(),
                message,
            },
        })
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let response = self.send(method, path, body).await?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| CliError::Unreachable {
                url: self.base.clone(),
                reason: e.to_string(),
            })?
            .to_bytes();
        serde_json::from_slice(&bytes)
            .map_err(|e| CliError::Usage(format!("unexpected answer: {e}")))
    }
}

/// Runs one verb; prints the result; exit code 0 on success, 1 on failure.
pub fn run(verb: Verb) -> ExitCode {
    let conn = verb.connection().clone();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("infergate: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(&conn, verb)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("infergate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn execute(conn: &Connection, verb: Verb) -> Result<(), CliError> {
    let api = Api::new(conn);
    match verb {
        Verb::Status { name, .. } => {
            let list = match name {
                Some(n) => vec![
                    api.json(
                        Method::GET,
                        &format!("/admin/v1/deployments/{}", path_segment(&n)),
                        None,
                    )
                    .await?,
                ],
                None => api.json(Method::GET, "/admin/v1/deployments", None).await?["deployments"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            };
            if conn.json {
                println!("{}", Value::Array(list));
            } else {
                print_status(&list);
            }
        }
        Verb::Scale(args) => {
            let mut patch = Map::new();
            let mut set = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    patch.insert(k.into(), v);
                }
            };
            set("min_replicas", args.min_replicas.map(Value::from));
            set("max_replicas", args.max_replicas.map(Value::from));
            set(
                "concurrency_target",
                args.concurrency_target.map(Value::from),
            );
            set(
                "target_utilization",
                args.target_utilization.map(Value::from),
            );
            set(
                "autoscaling_window",
                args.autoscaling_window.map(Value::from),
            );
            set("scale_down_delay", args.scale_down_delay.map(Value::from));
            if patch.is_empty() {
                return Err(CliError::Usage(
                    "nothing to change: give --min-replicas, --max-replicas, --concurrency-target, --target-utilization, --autoscaling-window or --scale-down-delay".into(),
                ));
            }
            let path = format!("/admin/v1/deployments/{}", path_segment(&args.name));
            let state = api
                .json(Method::PATCH, &path, Some(Value::Object(patch)))
                .await?;
            if conn.json {
                println!("{state}");
            } else {
                let s = &state["settings"];
                println!(
                    "{}: min_replicas {} max_replicas {} concurrency_target {} target_utilization {}% autoscaling_window {} scale_down_delay {} (effective on the next decision)",
                    state["name"].as_str().unwrap_or_default(),
                    s["min_replicas"], s["max_replicas"], s["concurrency_target"], s["target_utilization"],
                    s["autoscaling_window"].as_str().unwrap_or_default(),
                    s["scale_down_delay"].as_str().unwrap_or_default()
                );
            }
        }
        Verb::Events {
            follow,
            deployment,
            kinds,
            limit,
            ..
        } => {
            let mut query = format!("limit={limit}");
            if let Some(d) = deployment {
                query.push_str(&format!(
                    "&deployment={}",
                    path_segment(&d).replace('/', "%2F")
                ));
            }
            if let Some(k) = kinds {
                query.push_str(&format!("&type={k}"));
            }
            if follow {
                follow_events(&api, &query, conn.json).await?;
            } else {
                let events = api
                    .json(Method::GET, &format!("/admin/v1/events?{query}"), None)
                    .await?;
                for e in events["events"].as_array().cloned().unwrap_or_default() {
                    print_event(&e, conn.json);
                }
            }
        }
        Verb::Hibernate { name, .. } => action(&api, &name, "hibernate", conn.json).await?,
        Verb::Resume { name, .. } => action(&api, &name, "resume", conn.json).await?,
        Verb::Activate { name, .. } => action(&api, &name, "activate", conn.json).await?,
        Verb::Maintenance { name, state, .. } => {
            action(&api, &name, &format!("maintenance/{state}"), conn.json).await?
        }
    }
    Ok(())
}

async fn action(api: &Api, name: &str, action: &str, as_json: bool) -> Result<(), CliError> {
    let path = format!("/admin/v1/deployments/{}/{action}", path_segment(name));
    let state = api.json(Method::POST, &path, Some(json!({}))).await?;
    if as_json {
        println!("{state}");
    } else {
        let maintenance = if state["maintenance"] == true {
            ", maintenance on"
        } else {
            ""
        };
        println!(
            "{name}: {}{maintenance}",
            state["serving"].as_str().unwrap_or("?")
        );
        if let Some(note) = state["maintenance_note"].as_str() {
            println!("  {note}");
        }
    }
    Ok(())
}

async fn follow_events(api: &Api, query: &str, as_json: bool) -> Result<(), CliError> {
    let response = api
        .send(
            Method::GET,
            &format!("/admin/v1/events/stream?{query}"),
            None,
        )
        .await?;
    let mut body = response.into_body();
    let mut buffer = String::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CliError::Unreachable {
            url: api.base.clone(),
            reason: e.to_string(),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            if let Some(data) = message.lines().find_map(|l| l.strip_prefix("data: ")) {
                if let Ok(e) = serde_json::from_str::<Value>(data) {
                    print_event(&e, as_json);
                }
            }
        }
    }
    Ok(())
}

fn print_event(e: &Value, as_json: bool) {
    if as_json {
        println!("{e}");
        return;
    }
    let mut numbers = String::new();
    for key in ["load", "desired", "current"] {
        if !e[key].is_null() {
            numbers.push_str(&format!(" {key}={}", e[key]));
        }
    }
    println!(
        "{}  {:<22} {:<18} {:<10} {}{numbers}",
        e["time"].as_str().unwrap_or_default(),
        e["deployment"].as_str().unwrap_or_default(),
        e["type"].as_str().unwrap_or_default(),
        e["component"].as_str().unwrap_or_default(),
        e["description"].as_str().unwrap_or_default()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

fn print_status(list: &[Value]) {
    println!(
        "{:<28} {:<11} {:>5} {:>7} {:>8} {:>9} {:>7} {:>4} {:>4} {:>9} {:>8}  NOTES",
        "DEPLOYMENT",
        "SERVING",
        "READY",
        "DESIRED",
        "STARTING",
        "IN-FLIGHT",
        "WAITING",
        "MIN",
        "MAX",
        "GPU-S",
        "COST",
    );
    for d in list {
        let replicas = d["replicas"].as_array().cloned().unwrap_or_default();
        let count = |s: &str| replicas.iter().filter(|r| r["state"] == s).count();
        let mut notes = Vec::new();
        if d["maintenance"] == true {
            notes.push("maintenance".to_string());
        }
        if d["fallback_engaged"] == true {
            notes.push("fallback engaged".to_string());
        }
        if let Some(reason) = d["decision"]["reason"].as_str() {
            notes.push(format!("last decision: {reason}"));
        }
        let window = &d["schedule"]["active"];
        if let Some(cron) = window["cron"].as_str() {
            notes.push(format!(
                "window \"{cron}\" ({}) min {} until {}",
                window["tz"].as_str().unwrap_or_default(),
                window["min_replicas"],
                window["closes"].as_str().unwrap_or_default()
            ));
        }
        let next = &d["schedule"]["next"];
        if let Some(cron) = next["cron"].as_str() {
            notes.push(format!(
                "next window \"{cron}\" opens {} (warm from {})",
                next["opens"].as_str().unwrap_or_default(),
                next["warm_from"].as_str().unwrap_or_default()
            ));
        }
        let gpus: Vec<String> = replicas
            .iter()
            .filter_map(|r| r["gpus"].as_array())
            .flatten()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect();
        if !gpus.is_empty() {
            notes.push(format!("GPUs {}", gpus.join(",")));
        }
        if let Some(asleep) = d["cost"]["replica_seconds"]["sleeping"]
            .as_f64()
            .filter(|s| *s > 0.0)
        {
            notes.push(format!("{asleep:.0} replica-s asleep"));
        }
        let cost = match d["cost"]["cost_usd"].as_f64() {
            Some(usd) => format!("${usd:.2}"),
            None => "-".into(),
        };
        println!(
            "{:<28} {:<11} {:>5} {:>7} {:>8} {:>9} {:>7} {:>4} {:>4} {:>9.0} {:>8}  {}",
            d["name"].as_str().unwrap_or_default(),
            d["serving"].as_str().unwrap_or_default(),
            count("ready"),
            d["desired_replicas"].to_string(),
            count("starting"),
            d["in_flight"].to_string(),
            d["waiting"].to_string(),
            d["settings"]["min_replicas"].to_string(),
            d["settings"]["max_replicas"].to_string(),
            d["cost"]["gpu_seconds"].as_f64().unwrap_or_default(),
            cost,
            notes.join(", ")
        );
    }
}
