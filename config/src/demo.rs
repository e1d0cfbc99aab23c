//! The embedded demo configuration, used when infergate starts without a config file.

use crate::schema::Config;

/// The demo config as shipped (TOML text), so `infergate validate` and docs can show it.
pub const DEMO_CONFIG_TOML: &str = include_str!("demo.toml");

/// Where the demo's simulated SaaS provider listens (infergate starts it in demo mode).
pub const DEMO_PROVIDER_PORT: u16 = 8090;
/// The environment variable the demo provider's key is read from.
pub const DEMO_PROVIDER_KEY_ENV: &str = "INFERGATE_DEMO_PROVIDER_KEY";

/// The parsed demo config; it is validated by this crate's tests, so parsing cannot fail at run time
/// unless the binary was built from a broken tree.
pub fn demo_config() -> Result<Config, crate::ConfigError> {
    Config::from_toml_str(DEMO_CONFIG_TOML)
}
