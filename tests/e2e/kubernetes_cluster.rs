//! Two infergate instances behind one Service, against the fake API server: one leader by a
//! Lease, decisions on the summed load (load sent only to the follower still scales), and the
//! leader killed → the other takes over within the Lease duration and nothing is lost.

use crate::autoscaling::Load;
use crate::fake_kube::FakeCluster;
use crate::harness::{Proxy, ADMIN_TOKEN};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const NAMESPACE: &str = "models";

fn start_instance(cluster: &FakeCluster, pod: &str) -> Proxy {
    let kubeconfig = cluster.kubeconfig.to_string_lossy().to_string();
    let config = "[cluster]\nmode = \"kubernetes\"\nlease_duration = \"3s\"\n\
                  [deployments.chat]\nmin_replicas = 0\nmax_replicas = 3\nconcurrency_target = 1\n\
                  target_utilization = 100\nautoscaling_window = \"10s\"\nscale_down_delay = \"2s\"\n\
                  [deployments.chat.backend]\ntype = \"kubernetes\"\nname = \"chat\"\nport = \"http\"\n";
    Proxy::start_with_env(
        "listeners = [{ address = \"127.0.0.1:0\" }]",
        config,
        &[("KUBECONFIG", kubeconfig.as_str()), ("POD_NAME", pod)],
    )
}

async fn cluster_state(proxy: &Proxy) -> Value {
    reqwest::Client::new()
        .get(format!("{}/admin/v1/cluster", proxy.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn admin_addr(proxy: &Proxy) -> SocketAddr {
    proxy.admin.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_elect_one_leader_that_scales_on_the_summed_load_and_hands_over_when_killed()
{
    let cluster = FakeCluster::start(NAMESPACE);
    cluster.add_deployment("chat", "chat", "--ttft 5ms --tokens-per-s 50");
    let a = start_instance(&cluster, "infergate-a");
    let b = start_instance(&cluster, "infergate-b");
    cluster.add_endpoint("infergate", "infergate-a", admin_addr(&a), "admin");
    cluster.add_endpoint("infergate", "infergate-b", admin_addr(&b), "admin");

    // One leader, and both agree who it is.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (leader_name, sa, sb) = loop {
        let (sa, sb) = (cluster_state(&a).await, cluster_state(&b).await);
        let leaders = [&sa, &sb].iter().filter(|s| s["leader"] == true).count();
        if leaders == 1 && sa["holder"] == sb["holder"] && !sa["holder"].is_null() {
            break (sa["holder"].as_str().unwrap().to_string(), sa, sb);
        }
        assert!(Instant::now() < deadline, "no single leader: {sa} {sb}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lease = cluster.lease("infergate").expect("the Lease exists");
    assert_eq!(lease["spec"]["holderIdentity"], leader_name.as_str());
    let (mut leader, follower) = if leader_name == "infergate-a" {
        (a, b)
    } else {
        (b, a)
    };
    eprintln!("leader {leader_name}: {sa} / {sb}");

    // Load only on the follower: the leader sees it through the follower's admin listener.
    let load = Load::start(&follower, "chat", 3, 40);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.replicas("chat") < 3 {
        assert!(
            Instant::now() < deadline,
            "the leader did not scale on the follower's load: {:?}",
            cluster.scale_history("chat")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader_state = leader.state("chat").await;
    assert_eq!(
        leader_state["requests_total"].as_u64().unwrap_or(0),
        0,
        "{leader_state:#}"
    );
    // The follower routes to every pod once they are ready.
    follower.wait_ready("chat", 3).await;

    // The leader dies: the follower takes over within the Lease duration (3 s) plus one
    // retry period, and the load on it goes on being served meanwhile.
    let killed = Instant::now();
    crate::harness::kill(leader.child.id(), libc_sigkill());
    let _ = leader.child.wait();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if cluster_state(&follower).await["leader"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "nobody took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let takeover = killed.elapsed();
    eprintln!("takeover after the leader was killed: {takeover:?}");
    let writes_before = cluster.scale_history("chat").len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, failed) = load.finish().await;
    assert!(failed.is_empty(), "lost requests: {failed:?}");
    assert!(ok > 10, "{ok}");

    // The new leader scales: the load is gone, so it brings the Deployment down.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.replicas("chat") > 0 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            cluster.scale_history("chat")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(cluster.scale_history("chat").len() > writes_before);
    let state = follower.state("chat").await;
    assert_eq!(state["replicas_failed_total"], 0, "{state:#}");
}

fn libc_sigkill() -> i32 {
    9
}
