//! `deploy/kubernetes/`: every manifest parses as its Kubernetes type, the Role grants exactly
//! the calls the code makes, the names line up (Service ports, ConfigMap ↔ Deployment), and the
//! ConfigMap's config passes `infergate validate`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every YAML document of `file`, as JSON values.
pub fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn typed<T: serde::de::DeserializeOwned>(doc: &Value) -> T {
    serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", doc["kind"]))
}

/// The Role's rules as (group, resource, verb) triples.
pub fn role_grants() -> BTreeSet<(String, String, String)> {
    let role: Role = typed(&documents("role.yaml")[0]);
    let mut grants = BTreeSet::new();
    for rule in role.rules.unwrap_or_default() {
        for group in rule.api_groups.unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                for verb in &rule.verbs {
                    grants.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    grants
}

#[test]
fn every_manifest_parses_as_its_kubernetes_type() {
    let mut kinds = Vec::new();
    for file in [
        "serviceaccount.yaml",
        "role.yaml",
        "configmap.yaml",
        "infergate.yaml",
        "vllm.yaml",
    ] {
        for doc in documents(file) {
            let kind = doc["kind"].as_str().unwrap().to_string();
            match kind.as_str() {
                "ServiceAccount" => drop(typed::<ServiceAccount>(&doc)),
                "Role" => drop(typed::<Role>(&doc)),
                "RoleBinding" => drop(typed::<RoleBinding>(&doc)),
                "ConfigMap" => drop(typed::<ConfigMap>(&doc)),
                "Deployment" => drop(typed::<Deployment>(&doc)),
                "Service" => drop(typed::<Service>(&doc)),
                other => panic!("{file}: unexpected kind {other}"),
            }
            kinds.push(kind);
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount"
        ]
    );
    let kustomization = documents("kustomization.yaml");
    assert_eq!(kustomization[0]["resources"].as_array().unwrap().len(), 5);
}

#[test]
fn the_role_grants_exactly_the_calls_the_code_makes() {
    let mut used = BTreeSet::new();
    for (group, resources, verbs) in infergate_scaler::backend::kubernetes::access::API_ACCESS {
        for resource in *resources {
            for verb in *verbs {
                used.insert((group.to_string(), resource.to_string(), verb.to_string()));
            }
        }
    }
    assert_eq!(role_grants(), used);
}

#[test]
fn the_manifests_agree_with_each_other_and_the_config_validates() {
    let infergate = documents("infergate.yaml");
    let deployment: Deployment = typed(&infergate[0]);
    let spec = deployment.spec;
    assert_eq!(spec.replicas, Some(2), "two instances for availability");
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("infergate"));
    let security = pod.security_context.unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    let container = &pod.containers[0];
    let env: Vec<&str> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        env.contains(&"POD_NAME") && env.contains(&"INFERGATE_ADMIN_TOKEN"),
        "{env:?}"
    );
    let service: Service = typed(&infergate[1]);
    let ports: Vec<String> = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    assert!(ports.contains(&"admin".to_string()), "{ports:?}");

    let config_map: ConfigMap = typed(&documents("configmap.yaml")[0]);
    let toml_text = config_map.data.unwrap()["infergate.toml"].clone();
    let config: toml::Value = toml::from_str(&toml_text).unwrap();
    assert_eq!(config["cluster"]["mode"].as_str(), Some("kubernetes"));
    assert_eq!(config["cluster"]["admin_port"].as_str(), Some("admin"));
    let backend = &config["deployments"]["llama-3.1-8b-instruct"]["backend"];
    let vllm = documents("vllm.yaml");
    let model_server: Deployment = typed(&vllm[0]);
    assert_eq!(
        backend["name"].as_str(),
        model_server.metadata.name.as_deref()
    );
    assert_eq!(model_server.spec.replicas, Some(0));
    let model_service: Service = typed(&vllm[1]);
    assert_eq!(
        backend["service"].as_str(),
        model_service.metadata.name.as_deref()
    );
    let port_names: Vec<String> = model_service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    assert_eq!(port_names, [backend["port"].as_str().unwrap()]);

    let dir = crate::harness::scratch_dir();
    let path = dir.join("infergate.toml");
    std::fs::write(&path, toml_text).unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
