//! What a settings change changed, field by field, for the `settings_changed` event.

use infergate_config::DeploymentConfig;

/// Every setting that differs between two versions of a deployment, as `field: old → new`
/// (nested tables by dotted path), for the `settings_changed` event.
pub fn changed_fields(old: &DeploymentConfig, new: &DeploymentConfig) -> String {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                let null = serde_json::Value::Null;
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(
                        &p,
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(format!("{path}: {a} → {b}")),
            _ => {}
        }
    }
    let (a, b) = (
        serde_json::to_value(old).unwrap_or_default(),
        serde_json::to_value(new).unwrap_or_default(),
    );
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    if out.is_empty() {
        "no setting changed".into()
    } else {
        out.join(", ")
    }
}
