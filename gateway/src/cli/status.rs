//! `gateway status`: fetches `/status.json` from the running daemon's admin endpoint (a
//! wildcard bind is reached over loopback) and prints it as a plain-text table. Fails when
//! the daemon does not answer.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::health::{get, reachable};
use crate::config::Config;
use crate::ops::status::{text, Status};

pub fn status_command(config_path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let Some(bind) = config.ops.admin_bind else {
        anyhow::bail!(
            "{}: [ops] admin_bind is not set: the daemon has no admin endpoint to ask",
            config_path.display()
        );
    };
    if bind.port() == 0 {
        anyhow::bail!(
            "{}: [ops] admin_bind has port 0 (chosen at start): set a fixed port to use `gateway status`",
            config_path.display()
        );
    }
    let addr = reachable(bind);
    let (code, body) =
        get(addr, "/status.json").with_context(|| format!("the gateway does not answer on {addr} (is it running?)"))?;
    if code != 200 {
        anyhow::bail!("{addr}/status.json: HTTP {code}: {}", body.trim());
    }
    let status: Status = serde_json::from_str(&body).with_context(|| format!("{addr}/status.json: not a status"))?;
    out.write_all(text::render(&status).as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_that_does_not_answer_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        std::fs::write(
            &path,
            format!("[store]\npath = \"j.db\"\nkey_file = \"j.key\"\n\n[[listener]]\nname = \"adt\"\nbind = \"127.0.0.1:0\"\n\n[ops]\nadmin_bind = \"0.0.0.0:{port}\"\nadmin_exposed = \"firewalled\"\n"),
        )
        .unwrap();
        let e = status_command(&path, &mut Vec::new()).unwrap_err();
        assert!(format!("{e:#}").contains(&format!("127.0.0.1:{port}")), "{e:#}");
    }
}
