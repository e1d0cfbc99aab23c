//! The admin API's bearer token: from the environment variable named by `admin.token_env`, or
//! made at start and written to a file only this user can read, where the CLI finds it.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

/// Where the token of the admin listener at `address` (`host:port`) is kept when infergate made it.
pub fn token_file(address: &str) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(|d| PathBuf::from(d).join("infergate"))
        .unwrap_or_else(|| {
            // SAFETY-free: getuid cannot fail.
            let uid = unsafe { libc::getuid() };
            std::env::temp_dir().join(format!("infergate-{uid}"))
        });
    dir.join(format!(
        "admin-{}.token",
        address.replace([':', '/', '[', ']'], "_")
    ))
}

/// The token and, when it was made here, the file it was written to. A variable that is set but
/// empty (or blank) is refused: it is a mistake, and guessing what was meant would either lock
/// the operator out or open the API.
pub fn resolve(token_env: &str, address: &str) -> Result<(String, Option<PathBuf>), String> {
    match std::env::var(token_env) {
        Ok(token) if token.trim().is_empty() => {
            return Err(format!(
                "${token_env} is set but empty: set it to a token, or unset it to let infergate make one"
            ))
        }
        Ok(token) => return Ok((token, None)),
        Err(_) => {}
    }
    write_new_token(address).map_err(|e| format!("cannot write the admin token file: {e}"))
}

fn write_new_token(address: &str) -> std::io::Result<(String, Option<PathBuf>)> {
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let path = token_file(address);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(token.as_bytes())?;
    Ok((token, Some(path)))
}
