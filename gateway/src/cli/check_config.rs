//! `gateway check-config`, and the same checks `gateway run` makes before it starts: beyond
//! what parsing checks (`config.rs`: syntax, types, unsafe settings), every file the daemon
//! will read exists and is usable — code maps, TLS certificates and keys, the cloud's CA and
//! client key, the auth token or private key, the journal key if it exists — private keys
//! and tokens readable by their owner only, and the time zone known. Each problem names the
//! file, line and field, its cause said once.

use std::error::Error;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::config::{span_of, AuthConfig, Config, ConfigError};
use crate::fhir::site::{SiteError, SiteMaps};
use crate::forward::auth::{Auth, AuthError};
use crate::store::Keys;

/// Everything found wrong with a configuration, one line each.
#[derive(Debug)]
pub struct Problems(pub Vec<ConfigError>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

impl Error for Problems {}

/// `gateway check-config`: loads `path` and checks it as `gateway run` would; prints `ok` or
/// every problem.
pub fn check_config_command(path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    preflight(&config)?;
    writeln!(out, "{}: ok", path.display())?;
    Ok(())
}

/// The checks beyond parsing, all of them (not only the first failing).
pub fn preflight(config: &Config) -> Result<(), Problems> {
    let mut problems = Vec::new();
    site_maps(config, &mut problems);
    let mut check = |r: Result<(), ConfigError>| problems.extend(r.err());
    check(journal_key(config));
    for (i, listener) in config.listeners.iter().enumerate() {
        let Some(tls) = &listener.tls else { continue };
        let field = |name: &str| format!("listener[{i}].tls.{name}");
        check(readable(config, &["listener", &i.to_string(), "tls", "cert"], &field("cert"), tls.cert.get_ref()));
        if let Some(ca) = &tls.client_ca {
            check(readable(
                config,
                &["listener", &i.to_string(), "tls", "client_ca"],
                &field("client_ca"),
                ca.get_ref(),
            ));
        }
        let key = private(config, &["listener", &i.to_string(), "tls", "key"], &field("key"), tls.key.get_ref());
        let key_ok = key.is_ok();
        check(key);
        if key_ok {
            check(crate::mllp::tls::acceptor(tls).map(drop).map_err(|e| {
                error(config, &["listener", &i.to_string(), "tls"], &format!("listener[{i}].tls"), causes(&e))
            }));
        }
    }
    let cloud = &config.cloud;
    for (name, file) in [("ca_file", &cloud.ca_file), ("client_cert", &cloud.client_cert)] {
        if let Some(file) = file {
            check(readable(config, &["cloud", name], &format!("cloud.{name}"), file.get_ref()));
        }
    }
    if let Some(key) = &cloud.client_key {
        check(private(config, &["cloud", "client_key"], "cloud.client_key", key.get_ref()));
    }
    if cloud.url.is_some() {
        check(auth(config));
    } else if cloud.auth != AuthConfig::None {
        check(Err(error(
            config,
            &["cloud", "auth"],
            "cloud.auth",
            "[cloud.auth] is set but [cloud] has no `url`: bundles go to the local sink, which takes no credentials"
                .into(),
        )));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problems(problems))
    }
}

/// A problem at the value `path` names (its line when the file has it).
fn error(config: &Config, path: &[&str], field: &str, message: String) -> ConfigError {
    let (line, column) = span_of(&config.source, path).map(|s| line_col(&config.source, s.start)).unzip();
    ConfigError { file: config.file.clone(), line, column, field: Some(field.into()), message }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    (before.matches('\n').count() + 1, before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1)
}

/// An error and its causes, each said once: a cause whose text its error already holds is
/// left out.
pub(crate) fn causes(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// The file exists and this process can read it.
fn readable(config: &Config, path: &[&str], field: &str, file: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(file)
        .map(drop)
        .map_err(|e| error(config, path, field, format!("cannot read {}: {e}", file.display())))
}

/// A private key: readable, and by its owner only (mode 0600 or 0400).
fn private(config: &Config, path: &[&str], field: &str, file: &Path) -> Result<(), ConfigError> {
    readable(config, path, field, file)?;
    let meta = std::fs::metadata(file).map_err(|e| error(config, path, field, format!("{}: {e}", file.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(error(
            config,
            path,
            field,
            format!(
                "private key {} is readable by group or others (mode {mode:o}, owner uid {}); run chmod 600 on it",
                file.display(),
                meta.uid()
            ),
        ));
    }
    Ok(())
}

/// Time zone, default identifier system and code maps, as the convert stage loads them; a
/// bad zone or system does not hide a broken code map.
fn site_maps(config: &Config, problems: &mut Vec<ConfigError>) {
    let mut mapping = config.mapping.clone();
    while let Err(e) = SiteMaps::load(&mapping, &config.dir) {
        let last = matches!(e, SiteError::CodeMap { .. });
        match &e {
            SiteError::Zone(_) => mapping.time_zone = "UTC".into(),
            SiteError::DefaultSystem(_) => mapping.default_identifier_system = "urn:x:{authority}".into(),
            SiteError::CodeMap { .. } => {}
        }
        problems.push(site_error(config, &e));
        if last {
            return;
        }
    }
}

fn site_error(config: &Config, e: &SiteError) -> ConfigError {
    match e {
        SiteError::Zone(name) => {
            let hint = closest_zone(name).map(|z| format!("; did you mean {z:?}?")).unwrap_or_default();
            error(
                config,
                &["mapping", "time_zone"],
                "mapping.time_zone",
                format!("{name:?} is not an IANA time zone name (e.g. \"America/Chicago\"){hint}"),
            )
        }
        SiteError::DefaultSystem(_) => {
            error(config, &["mapping", "default_identifier_system"], "mapping.default_identifier_system", e.to_string())
        }
        SiteError::CodeMap { path, line: 0, message } => error(
            config,
            &["mapping", "code_maps"],
            "mapping.code_maps",
            format!("cannot read code map {path}: {message}"),
        ),
        SiteError::CodeMap { .. } => error(config, &["mapping", "code_maps"], "mapping.code_maps", e.to_string()),
    }
}

/// The known zone name nearest to `name` (a typo), if one is close.
fn closest_zone(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    jiff::tz::db()
        .available()
        .map(|z| z.as_str().to_string())
        .map(|z| (edit_distance(&lower, &z.to_ascii_lowercase()), z))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, z)| z)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The journal key, when it exists already (it is created at the first start otherwise):
/// a regular file owned by this user, mode 0600, 32 bytes. Root (an operator checking the
/// service's config with sudo) may check a key the service user owns; the daemon itself
/// still insists on owning it.
fn journal_key(config: &Config) -> Result<(), ConfigError> {
    let path = config.store.key_file.get_ref();
    if std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Ok(());
    }
    Keys::load_for_operator(path)
        .map(drop)
        .map_err(|e| error(config, &["store", "key_file"], "store.key_file", causes(&e)))
}

/// `[cloud.auth]`: its settings and its token or key file, as the forwarder loads them.
fn auth(config: &Config) -> Result<(), ConfigError> {
    let Err(e) = Auth::from_config(&config.cloud.auth, &config.dir) else { return Ok(()) };
    let key = match (&e, &config.cloud.auth) {
        (AuthError::File { .. }, AuthConfig::Bearer { .. }) => "token_file".to_string(),
        (AuthError::File { .. }, _) => "key_file".to_string(),
        // "cloud.auth.token_url must be …": the field leads the message.
        (AuthError::Config(message), _) => message
            .strip_prefix("cloud.auth.")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("kind")
            .to_string(),
        _ => "kind".to_string(),
    };
    Err(error(config, &["cloud", "auth", &key], &format!("cloud.auth.{key}"), causes(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both shipped configurations pass what `run` checks (the appliance's admin endpoint on
    /// 0.0.0.0 only because it says the firewall guards it).
    #[test]
    fn the_shipped_configs_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        for name in ["gateway.toml", "appliance.toml"] {
            let config = Config::load(&dir.join(name)).unwrap();
            preflight(&config).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let text = std::fs::read_to_string(dir.join("appliance.toml")).unwrap();
        let exposed = text.replace("admin_exposed = \"firewalled\"", "");
        let e = Config::parse(&exposed, &dir.join("appliance.toml")).unwrap_err().to_string();
        assert!(e.contains("appliance.toml:") && e.contains("`ops.admin_bind`") && e.contains("admin_exposed"), "{e}");
    }

    #[test]
    fn a_typo_in_a_zone_name_gets_the_nearest_zone() {
        assert_eq!(closest_zone("America/Chicag").as_deref(), Some("America/Chicago"));
        assert_eq!(closest_zone("Nowhere/At all, really"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn a_cause_already_in_its_error_is_said_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "key file k: {}", self.0)
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("run chmod 600 on it"));
        assert_eq!(causes(&e), "key file k: run chmod 600 on it");
    }
}
