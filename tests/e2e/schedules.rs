//! A scheduled warm window through the real binary: a window opening a minute or two ahead gets
//! its replica ready before it opens (prewarm), holds it with no traffic, and after it closes
//! the deployment's own settings (min 0) bring it back to zero. Status shows the windows.

use crate::harness::{sim_deployment, Proxy};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_one_minute_ahead_is_warm_when_it_opens_and_released_when_it_closes() {
    // The first minute boundary at least 45 s away (the first deploy's replica idles out first).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let opens = (now + 45).div_ceil(60) * 60;
    let (hour, minute) = ((opens / 3600) % 24, (opens / 60) % 60);
    let proxy = Proxy::start(&sim_deployment(
        "chat",
        &format!(
            "min_replicas = 0\nmax_replicas = 2\nscale_down_delay = \"0s\"\nautoscaling_window = \"10s\"\n\
             [[deployments.chat.schedule]]\ncron = \"{minute} {hour} * * *\"\ntz = \"UTC\"\n\
             duration = \"1m\"\nmin_replicas = 1\nprewarm = \"20s\""
        ),
        "--cold-start 2s --ttft 5ms",
    ));
    let state = proxy.state("chat").await;
    assert_eq!(state["schedule"]["next"]["tz"], "UTC", "{state:#}");
    assert!(state["schedule"]["active"].is_null(), "{state:#}");
    let unix = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    // The first deploy's replica goes while no window holds.
    proxy
        .wait_state("chat", Duration::from_secs(40), |s| {
            s["replicas"].as_array().unwrap().is_empty()
        })
        .await;
    assert!(
        unix() < opens as f64 - 20.0,
        "the test needs the prewarm still ahead"
    );
    // Warm before it opens, with no request at all.
    let warm = proxy
        .wait_state("chat", Duration::from_secs(90), |s| {
            s["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["state"] == "ready")
        })
        .await;
    assert!(
        unix() < opens as f64,
        "ready only after the window opened: {warm:#}"
    );
    assert_eq!(warm["replicas_started_total"], 2, "{warm:#}");
    assert_eq!(warm["requests_total"], 0);
    // Open: held at 1 with no traffic, and status says which window.
    while unix() < opens as f64 + 5.0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let open = proxy.state("chat").await;
    assert_eq!(open["schedule"]["active"]["min_replicas"], 1, "{open:#}");
    assert_eq!(open["desired_replicas"], 1, "{open:#}");
    // Closed: back to the base min of 0.
    let after = proxy
        .wait_state("chat", Duration::from_secs(120), |s| {
            s["schedule"]["active"].is_null() && s["replicas"].as_array().unwrap().is_empty()
        })
        .await;
    assert!(
        unix() >= opens as f64 + 60.0,
        "released {:.1} s after opening: {after:#}",
        unix() - opens as f64
    );
    assert_eq!(after["replicas_stopped_total"], 2, "{after:#}");
}
