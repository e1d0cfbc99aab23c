//! What a user expects of a mature command-line tool besides its main job: `validate` (also as
//! JSON for scripts and CI), shell completions and the man page (generated from the clap
//! definitions the binary parses with), and the JSON Schema of the config file for editors.

use infergate_config::{Config, ConfigError};
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;

/// `infergate validate FILE [--json]`: every invalid field with its allowed range; exit 2 when
/// invalid.
pub fn validate(file: &Path, as_json: bool) -> ExitCode {
    let result = Config::load(file);
    if as_json {
        let report = match &result {
            Ok(config) => json!({
                "file": file.display().to_string(),
                "valid": true,
                "deployments": config.deployments.len(),
                "errors": [],
            }),
            Err(e) => json!({
                "file": file.display().to_string(),
                "valid": false,
                "errors": errors_json(e),
            }),
        };
        out(format!("{report:#}\n").as_bytes());
    } else {
        match &result {
            Ok(config) => out(format!(
                "{}: valid ({} deployment(s))\n",
                file.display(),
                config.deployments.len()
            )
            .as_bytes()),
            Err(e) => {
                eprintln!("{}: invalid configuration", file.display());
                for line in e.to_string().lines() {
                    eprintln!("  {line}");
                }
            }
        }
    }
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// One object per problem: `field` (the dotted path, null for a file that does not parse),
/// `message`, and `allowed` (the range or form the field takes, when the message states one).
fn errors_json(e: &ConfigError) -> Vec<Value> {
    match e {
        ConfigError::Invalid(errors) => errors
            .iter()
            .map(
                |f| json!({"field": f.field, "message": f.message, "allowed": allowed(&f.message)}),
            )
            .collect(),
        other => vec![
            json!({"field": Value::Null, "message": other.to_string(), "allowed": Value::Null}),
        ],
    }
}

/// "must be between 1 and 4, got 9" → "between 1 and 4" (every range message has this form).
fn allowed(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("must be ")?;
    Some(rest.rsplit_once(", got").map_or(rest, |(range, _)| range))
}

/// `infergate config schema`: the JSON Schema of the TOML config.
pub fn schema() -> ExitCode {
    let schema = schemars::schema_for!(Config);
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            out(format!("{text}\n").as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("infergate: cannot render the schema: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `infergate completions SHELL`: the completion script for `cmd`.
pub fn completions(shell: clap_complete::Shell, mut cmd: clap::Command) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "infergate", &mut script);
    out(&script);
    ExitCode::SUCCESS
}

/// `infergate man`: the man page (roff) for `cmd`.
pub fn man(cmd: clap::Command) -> ExitCode {
    let mut page = Vec::new();
    match clap_mangen::Man::new(cmd).render(&mut page) {
        Ok(()) => {
            out(&page);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("infergate: cannot render the man page: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn out(bytes: &[u8]) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_allowed_range_is_read_off_the_message() {
        assert_eq!(
            super::allowed("must be between 1 and 4, got 9"),
            Some("between 1 and 4")
        );
        assert_eq!(super::allowed("is listed twice"), None);
    }
}
