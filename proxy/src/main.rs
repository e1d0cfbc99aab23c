//! `infergate`: an L7 proxy with a built-in autoscaler for self-hosted OpenAI-compatible model
//! servers. One binary: `serve` (the default), `validate`, `simulate`, `sim-server` and the
//! admin verbs.

mod cli_tools;
mod control_plane;
mod data_plane;
mod metrics;
mod serve;
mod simulate_cmd;

use clap::{Args, CommandFactory, Parser, Subcommand};
use infergate_config::{demo_config, Config, DEMO_PROVIDER_KEY_ENV, DEMO_PROVIDER_PORT};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "infergate",
    version,
    about = "Inference proxy with a built-in autoscaler",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default). Without --config, runs the embedded demo.
    Serve(ServeArgs),
    /// Check a config file; prints every invalid field with its allowed range.
    Validate {
        /// The TOML file to check.
        file: PathBuf,
        /// Print the result as JSON: `valid`, and `errors` with `field`, `message`, `allowed`.
        #[arg(long)]
        json: bool,
    },
    /// Tools for the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the shell completion script (e.g. `infergate completions bash > /etc/bash_completion.d/infergate`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; `infergate man | man -l -`).
    Man,
    /// Run a simulated OpenAI-compatible model server (the demo's and tests' replicas).
    SimServer(infergate_sim_server::SimOptions),
    /// Replay a request trace through the scaling code in virtual time, against Knative, KEDA,
    /// a fixed fleet, a TTL and the hybrid-histogram policy; cost, waits, and a recommendation.
    Simulate(Box<simulate_cmd::SimulateArgs>),
    #[command(flatten)]
    Admin(control_plane::cli::Verb),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the JSON Schema of the config file (for taplo / Even Better TOML and other editors).
    Schema,
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Config file (TOML). Without it the embedded demo config is used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn init_logging(format: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,pingora_core=warn,pingora=warn")
    });
    // Colours only for a person at a terminal; files and pipes get plain `key=value` lines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let registry = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if format == "json" {
        registry.with(layer.json()).init();
    } else {
        registry.with(layer).init();
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Validate { file, json }) => cli_tools::validate(&file, json),
        Some(Command::Config(ConfigCommand::Schema)) => cli_tools::schema(),
        Some(Command::Completions { shell }) => cli_tools::completions(shell, Cli::command()),
        Some(Command::Man) => cli_tools::man(Cli::command()),
        Some(Command::SimServer(opts)) => {
            init_logging("text");
            match runtime().and_then(|rt| rt.block_on(infergate_sim_server::run(opts))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sim-server: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Simulate(args)) => simulate_cmd::run(*args),
        Some(Command::Serve(args)) => serve_main(args),
        Some(Command::Admin(verb)) => control_plane::cli::run(verb),
        None => serve_main(cli.serve),
    }
}

/// The demo's SaaS provider: a simulated OpenAI-compatible server that wants the demo key, so
/// the fallback deployment of the demo config shows a cold start bridged by a provider.
async fn run_demo_provider() {
    #[derive(Parser)]
    struct Demo {
        #[command(flatten)]
        sim: infergate_sim_server::SimOptions,
    }
    let key = std::env::var(DEMO_PROVIDER_KEY_ENV).unwrap_or_default();
    let port = DEMO_PROVIDER_PORT.to_string();
    let args = [
        "demo-saas",
        "--port",
        &port,
        "--model",
        "gpt-4o-mini",
        "--ttft",
        "150ms",
        "--tokens-per-s",
        "80",
        "--api-key",
        &key,
    ];
    let opts = Demo::parse_from(args).sim;
    if let Err(e) = infergate_sim_server::run(opts).await {
        tracing::warn!(error = %e, port = DEMO_PROVIDER_PORT, "demo provider did not start; the fallback deployment will wait for its replica instead");
    }
}

fn serve_main(args: ServeArgs) -> ExitCode {
    init_logging(&args.log_format);
    // Demo mode (the simulated provider on 127.0.0.1:8090 and its key) for the embedded demo
    // config, and for the same file given with --config (config/src/demo.toml, unchanged).
    let demo = args.config.as_ref().is_none_or(|path| {
        std::fs::read_to_string(path).is_ok_and(|text| text == infergate_config::DEMO_CONFIG_TOML)
    });
    if demo && std::env::var_os(DEMO_PROVIDER_KEY_ENV).is_none() {
        // Still single-threaded: no other thread reads the environment yet.
        std::env::set_var(DEMO_PROVIDER_KEY_ENV, "demo-provider-key");
    }
    let (config, source) = match &args.config {
        Some(path) => (Config::load(path), path.display().to_string()),
        None => (demo_config(), "the embedded demo config".to_string()),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid configuration ({source}):");
            for line in e.to_string().lines() {
                eprintln!("  {line}");
            }
            return ExitCode::from(2);
        }
    };
    let result = runtime().map_err(|e| e.to_string()).and_then(|rt| {
        if demo {
            rt.spawn(run_demo_provider());
        }
        let result = rt
            .block_on(serve::run(config, &source, args.config.clone()))
            .map_err(|e| e.to_string());
        // Replicas are stopped by now; do not wait on idle keep-alive connections.
        rt.shutdown_timeout(std::time::Duration::from_secs(1));
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("infergate: {e}");
            ExitCode::FAILURE
        }
    }
}
