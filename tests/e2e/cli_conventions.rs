//! Everyday CLI conventions (issue 17 item 4), through the real binary: shell completions and the
//! man page generated from the CLI (the shipped `man/infergate.1` is that output), `validate
//! --json` for scripts, `config schema` (JSON Schema that every shipped config validates against,
//! checked by Python's `jsonschema`), the systemd unit, and `sim-server --help` without the
//! proxy's or the admin verbs' flags.

use crate::clients::{python, run_python};
use crate::harness::{scratch_dir, BIN};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn infergate(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        // The demo config's provider key, as the demo sets it.
        .env(infergate_config::DEMO_PROVIDER_KEY_ENV, "demo-provider-key")
        .output()
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(path)
}

/// Every config the repository ships: the demo and each example.
pub fn shipped_configs() -> Vec<PathBuf> {
    let mut files = vec![repo("config/src/demo.toml")];
    if let Ok(dir) = std::fs::read_dir(repo("examples")) {
        let mut examples: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        examples.sort();
        files.extend(examples);
    }
    files
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&infergate(&["completions", shell]));
        for verb in [
            "serve",
            "validate",
            "simulate",
            "sim-server",
            "status",
            "completions",
        ] {
            assert!(script.contains(verb), "{shell} completions lack {verb}");
        }
    }
    // The bash script loads and registers the completion.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <({BIN} completions bash) && complete -p infergate"
        ))
        .output()
        .unwrap();
    assert!(stdout(&out).contains("_infergate"), "{out:?}");
    assert!(!infergate(&["completions", "tcsh"]).status.success());
}

#[test]
fn the_shipped_man_page_is_the_one_the_cli_generates() {
    let page = stdout(&infergate(&["man"]));
    assert!(page.contains(".TH infergate 1"), "{page}");
    assert!(page.contains("sim\\-server"), "subcommands are listed");
    let shipped = std::fs::read_to_string(repo("man/infergate.1")).unwrap();
    assert_eq!(
        shipped, page,
        "man/infergate.1 is stale: regenerate it with `infergate man > man/infergate.1`"
    );
}

#[test]
fn validate_json_reports_each_field_with_its_allowed_range() {
    let dir = scratch_dir();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[deployments.x]\nmax_replicas = 9999\nconcurrency_target = 0\nbackend = { type = \"static\", urls = [\"http://127.0.0.1:9\"] }\n",
    )
    .unwrap();
    let out = infergate(&["validate", "--json", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    let errors = report["errors"].as_array().unwrap();
    let max = errors
        .iter()
        .find(|e| e["field"] == "deployments.x.max_replicas")
        .unwrap();
    assert_eq!(max["allowed"], "between 1 and 1000");
    assert!(max["message"].as_str().unwrap().ends_with("got 9999"));
    assert!(errors
        .iter()
        .any(|e| e["field"] == "deployments.x.concurrency_target"));
    // A file that does not parse: one error without a field.
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "[deployments.x\n").unwrap();
    let out = infergate(&["validate", "--json", broken.to_str().unwrap()]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"][0]["field"], Value::Null);
    for file in shipped_configs() {
        let out = infergate(&["validate", "--json", file.to_str().unwrap()]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["valid"], true, "{}: {report:#}", file.display());
    }
}

const CHECK_SCHEMA: &str = r#"
import json, sys, tomllib, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
for path in sys.argv[2:]:
    config = tomllib.load(open(path, "rb"))
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(config)]
    assert not errors, (path, errors)
# A misspelt setting and a wrong type are caught, as an editor would show them.
bad = {"deployments": {"x": {"min_replica": 1, "backend": {"type": "static", "urls": []}}}}
assert list(validator.iter_errors(bad)), "unknown field accepted"
bad = {"deployments": {"x": {"min_replicas": "one", "backend": {"type": "static", "urls": []}}}}
assert list(validator.iter_errors(bad)), "wrong type accepted"
print("schema-ok", len(sys.argv) - 2)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_schema_accepts_every_shipped_config_and_catches_mistakes() {
    let schema = stdout(&infergate(&["config", "schema"]));
    let parsed: Value = serde_json::from_str(&schema).unwrap();
    assert_eq!(parsed["title"], "Config");
    let path = scratch_dir().join("infergate.schema.json");
    std::fs::write(&path, &schema).unwrap();
    let mut args = vec![path.to_str().unwrap().to_string()];
    args.extend(shipped_configs().iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let out = run_python(py, CHECK_SCHEMA, &args, None).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("schema-ok"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_systemd_unit_reloads_with_sighup_and_stops_gracefully() {
    let unit = std::fs::read_to_string(repo("deploy/systemd/infergate.service")).unwrap();
    for line in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        "ExecStart=/usr/local/bin/infergate serve --config /etc/infergate/infergate.toml",
    ] {
        assert!(unit.contains(line), "missing {line:?}");
    }
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        stop > 30 + 120 + 10,
        "must outlast shutdown_grace + drain_timeout + kill_grace"
    );
}

#[test]
fn sim_server_help_shows_only_its_own_flags() {
    let help = stdout(&infergate(&["sim-server", "--help"]));
    assert!(help.contains("--cold-start") && help.contains("--wake-time"));
    for foreign in ["--admin", "--token", "--config", "--log-format"] {
        assert!(
            !help.split_whitespace().any(|w| w == foreign),
            "sim-server --help shows {foreign}"
        );
    }
}
