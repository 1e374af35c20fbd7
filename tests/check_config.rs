//! `gateway check-config` checks everything `gateway run` would, on real files with real
//! modes, and `run` refuses exactly what it refuses: each problem with file, line and field,
//! its cause said once; unsafe settings refused unless the config says why they are safe.
//!
//! Needs `cargo build -p gateway` (the real binary).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gateway_tests::gateway_bin;

/// A config folder: `gateway.toml` is `[store]` + one loopback listener + `extra`.
struct Site {
    dir: tempfile::TempDir,
}

const BASE: &str = "[store]\npath = \"var/journal.db\"\nkey_file = \"var/journal.key\"\n\n\
                    [[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n";

impl Site {
    fn new() -> Site {
        Site { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` with `contents` and `mode`.
    fn file(&self, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn config(&self, extra: &str) -> PathBuf {
        self.file("gateway.toml", format!("{BASE}{extra}").as_bytes(), 0o644)
    }
}

/// Exit success and stdout + stderr of `gateway <args…> --config <config>`.
fn gateway(args: &[&str], config: &Path) -> (bool, String) {
    let out = Command::new(gateway_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// check-config refuses `config` with every one of `wants` in its output, each cause once;
/// `run` refuses it with the same lines, before opening the journal.
fn refused(site: &Site, config: &Path, wants: &[&str]) -> String {
    let (ok, checked) = gateway(&["check-config"], config);
    assert!(!ok, "check-config accepted it:\n{checked}");
    for want in wants {
        assert!(checked.contains(want), "{want:?} not in:\n{checked}");
    }
    for line in checked.lines() {
        for cause in ["run chmod 600 on it", "No such file or directory", "did you mean"] {
            assert!(line.matches(cause).count() <= 1, "cause said twice: {line}");
        }
    }
    let (ran, run_out) = gateway(&["run"], config);
    assert!(!ran, "run accepted what check-config refused:\n{run_out}");
    for want in wants {
        assert!(run_out.contains(want), "run: {want:?} not in:\n{run_out}");
    }
    assert!(!site.path("var/journal.db").exists(), "run refused before opening the journal");
    checked
}

fn accepted(config: &Path) {
    let (ok, out) = gateway(&["check-config"], config);
    assert!(ok && out.contains(": ok"), "{out}");
}

#[test]
fn a_missing_code_map_and_a_misspelt_time_zone_are_both_named_with_their_lines() {
    let site = Site::new();
    let config = site.config("\n[mapping]\ntime_zone = \"America/Chicag\"\ncode_maps = [\"maps/lab.csv\"]\n");
    let out = refused(
        &site,
        &config,
        &[
            "gateway.toml:10:13: field `mapping.time_zone`: \"America/Chicag\" is not an IANA time zone name",
            "did you mean \"America/Chicago\"?",
            "gateway.toml:11:13: field `mapping.code_maps`: cannot read code map",
            "maps/lab.csv: No such file or directory",
        ],
    );
    assert_eq!(out.lines().filter(|l| l.contains("gateway.toml:")).count(), 2, "{out}");
    site.file("maps/lab.csv", b"source_system,source_code,target_system,target_code,target_display\n", 0o644);
    let config = site.config("\n[mapping]\ntime_zone = \"America/Chicago\"\ncode_maps = [\"maps/lab.csv\"]\n");
    accepted(&config);
}

#[test]
fn a_journal_key_readable_by_others_is_refused_and_0600_or_0400_pass() {
    let site = Site::new();
    let key = site.file("var/journal.key", &[7u8; 32], 0o644);
    let config = site.config("");
    refused(
        &site,
        &config,
        &["gateway.toml:3:12: field `store.key_file`: key file", "(mode 644); run chmod 600 on it"],
    );
    for mode in [0o600, 0o400] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        accepted(&config);
    }
}

#[test]
fn token_files_must_exist_and_be_private() {
    let site = Site::new();
    let auth =
        "\n[cloud]\nurl = \"https://fhir.example.org/r4\"\n\n[cloud.auth]\nkind = \"bearer\"\ntoken_file = \"token\"\n";
    let config = site.config(auth);
    refused(
        &site,
        &config,
        &["gateway.toml:14:14: field `cloud.auth.token_file`:", "token: cannot open: No such file"],
    );
    let token = site.file("token", b"abc123\n", 0o644);
    refused(&site, &config, &["field `cloud.auth.token_file`:", "(mode 644); run chmod 600 on it"]);
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    accepted(&config);
}

#[test]
fn a_smart_key_readable_by_others_and_an_auth_without_a_url_are_refused() {
    let site = Site::new();
    let smart = "[cloud.auth]\nkind = \"smart\"\ntoken_url = \"https://auth.example.org/token\"\nclient_id = \"gw\"\n\
                 key_file = \"smart.pem\"\nalg = \"ES384\"\nkid = \"k1\"\n";
    site.file("smart.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0o640);
    let config = site.config(&format!("\n[cloud]\nurl = \"https://fhir.example.org/r4\"\n\n{smart}"));
    refused(&site, &config, &["field `cloud.auth.key_file`:", "(mode 640); run chmod 600 on it"]);
    let config = site.config(&format!("\n{smart}"));
    refused(&site, &config, &["field `cloud.auth`: [cloud.auth] is set but [cloud] has no `url`"]);
}

#[test]
fn plain_http_to_the_cloud_only_to_loopback_or_when_allowed() {
    let site = Site::new();
    let config = site.config("\n[cloud]\nurl = \"http://fhir.example.org/r4\"\n");
    refused(&site, &config, &["gateway.toml:10:7: field `cloud.url`: plain http:// sends patient data in clear text"]);
    accepted(&site.config("\n[cloud]\nurl = \"http://127.0.0.1:8080/r4\"\n"));
    accepted(&site.config("\n[cloud]\nurl = \"http://[::1]:8080/r4\"\n"));
    accepted(&site.config("\n[cloud]\nurl = \"http://fhir.example.org/r4\"\nallow_insecure_http = true\n"));
}

#[test]
fn the_admin_endpoint_off_loopback_needs_an_explicit_firewalled() {
    let site = Site::new();
    let config = site.config("\n[ops]\nadmin_bind = \"0.0.0.0:8575\"\n");
    refused(&site, &config, &["gateway.toml:10:14: field `ops.admin_bind`: 0.0.0.0:8575 is not a loopback address"]);
    let config = site.config("\n[ops]\nadmin_bind = \"0.0.0.0:8575\"\nadmin_exposed = \"yes\"\n");
    refused(&site, &config, &["field `ops.admin_exposed`: the only value is \"firewalled\""]);
    accepted(&site.config("\n[ops]\nadmin_bind = \"0.0.0.0:8575\"\nadmin_exposed = \"firewalled\"\n"));
    accepted(&site.config("\n[ops]\nadmin_bind = \"[::1]:8575\"\n"));
}

#[test]
fn a_tls_private_key_readable_by_others_is_refused() {
    let site = Site::new();
    site.file("server.pem", b"not checked before the key\n", 0o644);
    site.file("server.key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0o644);
    let config = site.config("[listener.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n");
    refused(&site, &config, &["gateway.toml:10:7: field `listener[0].tls.key`: private key", "(mode 644"]);
}

#[test]
fn an_address_where_a_network_belongs_says_the_prefix_is_missing() {
    let site = Site::new();
    let config = site.config("allow = [\"10.20.0.0\"]\n");
    refused(&site, &config, &["gateway.toml:8:10: field `listener.allow`:", "missing /prefix, e.g. 10.20.0.0/16"]);
    accepted(&site.config("allow = [\"10.20.0.0/16\"]\n"));
}

#[test]
fn the_shipped_configurations_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    accepted(&dir.join("gateway.toml"));
    accepted(&dir.join("appliance.toml"));
}
