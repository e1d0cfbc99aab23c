//! Every setting out of range yields an error naming the field and the range.

use infergate_config::{demo_config, Config, ConfigError};

fn base(extra: &str) -> String {
    format!(
        r#"
[deployments.llama]
{extra}
[deployments.llama.backend]
type = "process"
command = ["sim", "--port", "{{port}}"]
"#
    )
}

fn errors_of(text: &str) -> Vec<String> {
    match Config::from_toml_str(text) {
        Ok(_) => vec![],
        Err(ConfigError::Invalid(errs)) => errs.iter().map(|e| e.to_string()).collect(),
        Err(other) => vec![other.to_string()],
    }
}

fn assert_error(extra: &str, expected: &str) {
    let errs = errors_of(&base(extra));
    assert!(
        errs.iter().any(|e| e == expected),
        "for `{extra}` expected error `{expected}`, got {errs:#?}"
    );
}

#[test]
fn demo_config_is_valid() {
    std::env::set_var(infergate_config::DEMO_PROVIDER_KEY_ENV, "demo-key");
    let config = demo_config().expect("demo config must validate");
    assert_eq!(config.deployments.len(), 3);
    assert!(config.deployments.values().any(|d| d.fallback.is_some()));
    assert!(config.deployments.values().any(|d| d.min_replicas == 0));
}

#[test]
fn defaults_follow_the_spec() {
    let config = Config::from_toml_str(&base("")).unwrap();
    let d = &config.deployments["llama"];
    assert_eq!(d.min_replicas, 0);
    assert_eq!(d.max_replicas, 1);
    assert_eq!(d.autoscaling_window.get().as_secs(), 60);
    assert_eq!(d.scale_down_delay.get().as_secs(), 900);
    assert_eq!(d.concurrency_target, 1);
    assert_eq!(d.target_utilization, 70);
    assert_eq!(d.replica_concurrency, 0);
    assert_eq!(d.startup_timeout.get().as_secs(), 1200);
    assert_eq!(d.health.path, "/health");
    assert_eq!(d.health.interval.get().as_millis(), 250);
    assert_eq!(d.queue.max_wait.get().as_secs(), 600);
    assert_eq!(d.queue.max_waiting, 1000);
}

#[test]
fn max_below_min_names_both() {
    assert_error(
        "min_replicas = 2\nmax_replicas = 1",
        "deployments.llama.max_replicas: must be ≥ min_replicas (2), got 1",
    );
}

#[test]
fn every_range_is_named() {
    let cases = [
        ("max_replicas = 0", "deployments.llama.max_replicas: must be ≥ 1, got 0"),
        ("max_replicas = 5000", "deployments.llama.max_replicas: must be between 1 and 1000, got 5000"),
        ("autoscaling_window = \"5s\"", "deployments.llama.autoscaling_window: must be between 10s and 1h, got 5s"),
        ("autoscaling_window = \"2h\"", "deployments.llama.autoscaling_window: must be between 10s and 1h, got 2h"),
        ("scale_down_delay = \"2h\"", "deployments.llama.scale_down_delay: must be between 0s and 1h, got 2h"),
        ("concurrency_target = 0", "deployments.llama.concurrency_target: must be between 1 and 100000, got 0"),
        ("target_utilization = 0", "deployments.llama.target_utilization: must be between 1 and 100 (percent), got 0"),
        ("target_utilization = 101", "deployments.llama.target_utilization: must be between 1 and 100 (percent), got 101"),
        ("replica_concurrency = 200000", "deployments.llama.replica_concurrency: must be between 0 and 100000 (0 = unlimited), got 200000"),
        ("startup_timeout = \"0s\"", "deployments.llama.startup_timeout: must be between 1s and 1day, got 0s"),
        ("startup_timeout = \"3days\"", "deployments.llama.startup_timeout: must be between 1s and 1day, got 3days"),
        ("health = { path = \"health\" }", "deployments.llama.health.path: must start with '/', got \"health\""),
        ("health = { interval = \"1ms\" }", "deployments.llama.health.interval: must be between 10ms and 1m, got 1ms"),
        ("queue = { max_wait = \"0s\" }", "deployments.llama.queue.max_wait: must be between 1ms and 1day, got 0s"),
        ("queue = { max_waiting = 2000000 }", "deployments.llama.queue.max_waiting: must be between 0 and 1000000, got 2000000"),
        ("upstream = { connect_timeout = \"1ms\" }", "deployments.llama.upstream.connect_timeout: must be between 10ms and 1m, got 1ms"),
        ("upstream = { response_timeout = \"1ms\" }", "deployments.llama.upstream.response_timeout: must be between 100ms and 1day, got 1ms"),
        ("upstream = { idle_timeout = \"2days\" }", "deployments.llama.upstream.idle_timeout: must be between 100ms and 1day, got 2days"),
        ("stop = { kill_grace = \"1h\" }", "deployments.llama.stop.kill_grace: must be between 0s and 10m, got 1h"),
        ("stop = { drain_timeout = \"2days\" }", "deployments.llama.stop.drain_timeout: must be between 0s and 1day, got 2days"),
        ("route = { path_prefix = \"llama\" }", "deployments.llama.route.path_prefix: must look like \"/name\" (leading '/', no trailing '/'), got \"llama\""),
        ("preset = \"development\"\nmin_replicas = 1\nmax_replicas = 1", "deployments.llama.min_replicas: is fixed at 0 by preset \"development\", got 1"),
        ("preset = \"development\"\nmax_replicas = 3", "deployments.llama.max_replicas: is fixed at 1 by preset \"development\", got 3"),
    ];
    for (extra, expected) in cases {
        assert_error(extra, expected);
    }
}

#[test]
fn server_and_backend_settings_are_checked() {
    let text = r#"
[server]
listeners = [{ address = "localhost" }]
max_body_size = 10
shutdown_grace = "2h"
[admin]
address = "nowhere"
[deployments.a]
max_replicas = 2
[deployments.a.backend]
type = "process"
command = []
gpus = ["0"]
gpus_per_replica = 1
[deployments.b]
aliases = ["a"]
[deployments.b.backend]
type = "static"
urls = ["https://x:1", "http://127.0.0.1:9000"]
"#;
    let errs = errors_of(text);
    for expected in [
        "server.listeners[0].address: must be an IP:port such as 127.0.0.1:8080, got \"localhost\"",
        "server.max_body_size: must be between 1024 and 1073741824 bytes, got 10",
        "server.shutdown_grace: must be between 0s and 1h, got 2h",
        "admin.address: must be an IP:port such as 127.0.0.1:8080, got \"nowhere\"",
        "deployments.a.backend.command: must name a program, e.g. [\"vllm\", \"serve\", \"...\", \"--port\", \"{port}\"]",
        "deployments.a.backend.gpus: must hold max_replicas (2) × gpus_per_replica (1) = 2 GPUs, got 1",
        "deployments.b.aliases: model name \"a\" is already used by deployment \"a\"",
        "deployments.b.backend.urls[0]: must look like http://127.0.0.1:8000, got \"https://x:1\"",
    ] {
        assert!(errs.iter().any(|e| e == expected), "expected `{expected}` in {errs:#?}");
    }
}

#[test]
fn unknown_fields_and_bad_durations_are_refused() {
    let errs = errors_of(&base("max_replica = 2"));
    assert!(errs[0].contains("unknown field `max_replica`"), "{errs:?}");
    let errs = errors_of(&base("scale_down_delay = \"soon\""));
    assert!(errs[0].contains("invalid duration \"soon\""), "{errs:?}");
}

fn with_provider(provider: &str, fallback: &str) -> String {
    format!(
        "[server]\nlisteners = [{{ address = \"127.0.0.1:18080\" }}, {{ address = \"0.0.0.0:18081\" }}]\n{}\n[deployments.llama.fallback]\n{fallback}\n[providers.saas]\n{provider}\n",
        base("")
    )
}

#[test]
fn providers_and_fallbacks_name_the_field_and_range() {
    std::env::set_var("INFERGATE_TEST_KEY", "sk-test");
    let ok = with_provider(
        "base_url = \"https://api.example.com/v1\"\napi_key_env = \"INFERGATE_TEST_KEY\"",
        "providers = [\"saas\"]",
    );
    assert_eq!(errors_of(&ok), Vec::<String>::new());
    let cases = [
        (
            "base_url = \"ftp://x\"",
            "providers = [\"saas\"]",
            "providers.saas.base_url: must look like https://api.example.com/v1 (http or https, no query), got \"ftp://x\"",
        ),
        (
            "base_url = \"http://127.0.0.1:18080/v1\"",
            "providers = [\"saas\"]",
            "providers.saas.base_url: resolves to 127.0.0.1:18080, one of this proxy's own listeners: only external providers are allowed (a loop)",
        ),
        (
            "base_url = \"http://localhost:18081\"",
            "providers = [\"saas\"]",
            "providers.saas.base_url: resolves to 127.0.0.1:18081, one of this proxy's own listeners: only external providers are allowed (a loop)",
        ),
        (
            "base_url = \"https://h\"\napi_key_env = \"INFERGATE_UNSET_VARIABLE\"",
            "providers = [\"saas\"]",
            "providers.saas.api_key_env: environment variable INFERGATE_UNSET_VARIABLE is not set (it must hold the provider's API key)",
        ),
        (
            "base_url = \"https://h\"\ncool_down = \"0s\"",
            "providers = [\"saas\"]",
            "providers.saas.cool_down: must be between 1s and 1day, got 0s",
        ),
        (
            "base_url = \"https://h\"",
            "providers = [\"other\"]",
            "deployments.llama.fallback.providers[0]: no provider named \"other\" (defined: [\"saas\"])",
        ),
        (
            "base_url = \"https://h\"",
            "providers = [\"saas\"]\nramp_back = \"2h\"",
            "deployments.llama.fallback.ramp_back: must be between 0s and 1h, got 2h",
        ),
    ];
    for (provider, fallback, expected) in cases {
        let errs = errors_of(&with_provider(provider, fallback));
        assert!(
            errs.iter().any(|e| e == expected),
            "expected `{expected}`, got {errs:#?}"
        );
    }
}

#[test]
fn hibernation_and_deactivation_ranges() {
    assert_error(
        "hibernation = { wake_after_requests = 0 }",
        "deployments.llama.hibernation.wake_after_requests: must be between 1 and 1000000, got 0",
    );
    assert_error(
        "hibernation = { below_rps = -1.0 }",
        "deployments.llama.hibernation.below_rps: must be between 0 and 1000000 requests per second, got -1",
    );
    assert_error(
        "deactivate_after = \"10s\"",
        "deployments.llama.deactivate_after: must be 0s (never) or between 1m and 3650days, got 10s",
    );
    assert_eq!(
        errors_of(&base("deactivate_after = \"0s\"")),
        Vec::<String>::new()
    );
}

#[test]
fn passthrough_paths_and_stripped_headers_are_checked() {
    assert_error(
        "route = { passthrough = [\"tokenize\"] }",
        "deployments.llama.route.passthrough[0]: must be a path like \"/tokenize\" or a prefix like \"/debug/*\", got \"tokenize\"",
    );
    assert_error(
        "upstream = { strip_headers = [\"bad header\"] }",
        "deployments.llama.upstream.strip_headers[0]: must be an HTTP header name like \"cookie\", got \"bad header\"",
    );
    let config = Config::from_toml_str(&base(
        "route = { passthrough = [\"/tokenize\", \"/debug/*\"] }",
    ))
    .unwrap();
    let route = &config.deployments["llama"].route;
    for (path, allowed) in [
        ("/v1/chat/completions", true),
        ("/tokenize", true),
        ("/tokenize/x", false),
        ("/debug/pprof", true),
        ("/metrics", false),
        ("/sleep", false),
        ("/v1", false),
    ] {
        assert_eq!(route.allows_upstream_path(path), allowed, "{path}");
    }
}

#[test]
fn a_gpu_list_implies_one_gpu_per_replica() {
    let text = "[deployments.a]\nmax_replicas = 3\n[deployments.a.backend]\ntype = \"process\"\ncommand = [\"vllm\"]\ngpus = [\"0\", \"1\"]\n";
    let errs = errors_of(text);
    assert!(
        errs.iter().any(|e| e == "deployments.a.backend.gpus: must hold max_replicas (3) × gpus_per_replica (1) = 3 GPUs, got 2"),
        "{errs:#?}"
    );
    let ok = Config::from_toml_str(&text.replace("max_replicas = 3", "max_replicas = 2")).unwrap();
    let infergate_config::BackendConfig::Process(p) = &ok.deployments["a"].backend else {
        panic!("process backend expected");
    };
    assert_eq!(p.effective_gpus_per_replica(), 1);
}

#[test]
fn kubernetes_backend_and_cluster_settings_name_the_field() {
    let kube = |backend: &str, top: &str| {
        errors_of(&format!(
            "{top}\n[deployments.llama]\n[deployments.llama.backend]\ntype = \"kubernetes\"\n{backend}\n"
        ))
    };
    assert!(kube(
        "name = \"vllm\"\nport = \"http\"\nlabel_selector = \"app=vllm\"",
        ""
    )
    .is_empty());
    let errs = kube("name = \"Vllm_8B\"\nport = 0\nlabel_selector = \" \"", "");
    for field in ["backend.name", "backend.port", "backend.label_selector"] {
        assert!(
            errs.iter()
                .any(|e| e.contains(&format!("deployments.llama.{field}"))),
            "{field}: {errs:#?}"
        );
    }
    let errs = kube(
        "name = \"vllm\"\nport = \"http\"",
        "[cluster]\nmode = \"kubernetes\"\nlease_duration = \"1s\"\nlease_name = \"Lease!\"",
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("cluster.lease_duration") && e.contains("between 2s and 5m")),
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("cluster.lease_name")),
        "{errs:#?}"
    );
    let config = Config::from_toml_str(
        "[cluster]\nmode = \"kubernetes\"\n[admin]\naddress = \"127.0.0.1:0\"\n[deployments.llama]\n[deployments.llama.backend]\ntype = \"kubernetes\"\nname = \"vllm\"\nport = 8000\n",
    )
    .unwrap();
    assert_eq!(config.cluster.lease_duration.get().as_secs(), 15);
    assert_eq!(config.cluster.service, "infergate");
}

#[test]
fn the_sleep_tier_and_heartbeat_settings_name_the_field_and_the_range() {
    assert_error(
        "hibernation = { mode = \"sleep\", sleep_after = \"1h\", idle_after = \"30m\" }",
        "deployments.llama.hibernation.sleep_after: must be shorter than hibernation.idle_after (30m): replicas sleep first, then stop; got 1h",
    );
    assert!(errors_of(&base(
        "hibernation = { mode = \"sleep\", sleep_after = \"5m\" }"
    ))
    .is_empty());
    assert!(!errors_of(&base("hibernation = { mode = \"nap\" }")).is_empty());
    assert_error(
        "queue = { heartbeat = \"50ms\" }",
        "deployments.llama.queue.heartbeat: must be 0 (off) or between 100ms and 10m, got 50ms",
    );
    assert!(errors_of(&base("queue = { heartbeat = \"0s\" }")).is_empty());
    let config = Config::from_toml_str(&base("")).unwrap();
    assert_eq!(
        config.deployments["llama"].queue.heartbeat.get().as_secs(),
        15
    );
}

#[test]
fn schedule_windows_name_the_field_a_bad_cron_an_unknown_zone_and_overlaps() {
    let window = |cron: &str, tz: &str, duration: &str| {
        format!("[[deployments.llama.schedule]]\ncron = \"{cron}\"\ntz = \"{tz}\"\nduration = \"{duration}\"\nmin_replicas = 1\n")
    };
    let errs = |windows: &str| errors_of(&format!("{}{windows}", base("max_replicas = 2")));
    assert!(errs(&window("0 9 * * 1-5", "Europe/Berlin", "8h")).is_empty());
    let e = errs(&window("0 25 * * *", "Europe/Berlin", "1h"));
    assert!(
        e.iter().any(|e| e
            .starts_with("deployments.llama.schedule[0].cron: hour: \"25\" is not a number 0–23")),
        "{e:#?}"
    );
    let e = errs(&window("0 9 * * *", "Mars/Olympus", "1h"));
    assert!(
        e.iter().any(|e| e
            .starts_with("deployments.llama.schedule[0].tz: unknown time zone \"Mars/Olympus\"")),
        "{e:#?}"
    );
    let e = errs(&format!(
        "{}{}",
        window("0 9 * * 1-5", "UTC", "8h"),
        window("0 12 * * *", "UTC", "1h")
    ));
    assert!(
        e.iter()
            .any(|e| e.starts_with("deployments.llama.schedule[1]: windows 0 and 1 overlap")),
        "{e:#?}"
    );
    let e = errs(&window("0 * * * *", "UTC", "2h"));
    assert!(
        e.iter().any(|e| e.contains("opens again before it closes")),
        "{e:#?}"
    );
}
