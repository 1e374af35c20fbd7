//! `gateway update …`: make keys, keyrings and bundles (on the operator's machine), apply a
//! bundle, show the state, and the two boot-time steps (docs/UPDATES.md).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use serde::Deserialize;

use crate::config::Update;
use crate::update::bundle::{self, BundleSpec};
use crate::update::keyring::{self, Keyring, KeyringBody};
use crate::update::keys::{self, SigningKey};
use crate::update::{apply, boot, fetch, slots, state, Version};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make an Ed25519 key pair: NAME.key (private, 0600) and NAME.pub.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a keyring from public keys and sign it with private keys (for a rotation: a
    /// threshold of the current keyring's), or add signatures to an existing keyring (--from).
    SignKeyring {
        /// Add signatures to this keyring file instead of making one.
        #[arg(long, conflicts_with_all = ["keyring_version", "threshold", "public", "revoke"])]
        from: Option<PathBuf>,
        #[arg(long = "keyring-version", required_unless_present = "from")]
        keyring_version: Option<u64>,
        #[arg(long, required_unless_present = "from")]
        threshold: Option<usize>,
        /// A NAME.pub file (repeat; at least 2).
        #[arg(long = "pub")]
        public: Vec<PathBuf>,
        /// The id of a revoked key (repeat).
        #[arg(long)]
        revoke: Vec<String>,
        /// A private key that signs (repeat).
        #[arg(long)]
        key: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Install a rotated keyring (accepted only when a threshold of the current one signed it).
    InstallKeyring { file: PathBuf },
    /// Pack a root filesystem image into a signed bundle.
    Bundle {
        #[arg(long)]
        rootfs: PathBuf,
        /// The image version the root filesystem boots as (e.g. 1.0.181).
        #[arg(long)]
        version: Version,
        #[arg(long)]
        board: String,
        /// The oldest running version that may install it.
        #[arg(long)]
        min_version: Version,
        /// When the bundle stops being accepted (RFC 3339, e.g. 2027-06-30T00:00:00Z).
        #[arg(long)]
        expires: jiff::Timestamp,
        /// A private key that signs (repeat up to the keyring's threshold).
        #[arg(long, required = true)]
        key: Vec<PathBuf>,
        /// The keyring the keys belong to (its version goes into the manifest; default 1).
        #[arg(long)]
        keyring: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a bundle (a file, or an http(s) URL downloaded with resume) and write it to
    /// the inactive slot with a boot entry of `boot_tries` tries; reboot to start it.
    Apply {
        source: String,
        /// Where a downloaded bundle is kept (resumed from if it exists).
        #[arg(long, default_value = "/var/lib/gateway-update/download.bundle")]
        download_to: PathBuf,
        /// Do nothing when the bundle's version runs already or was the last one applied
        /// (a bundle disk left attached must not be applied at every boot).
        #[arg(long)]
        skip_installed: bool,
        /// Reboot after writing the slot, to start it.
        #[arg(long)]
        reboot: bool,
    },
    /// Running version and slot, floor, last applied version, rollbacks, keyring, boot entries.
    Status,
    /// At boot, before the gateway: record a rollback if the booted version is older than
    /// the last applied one.
    BootCheck,
    /// After a blessed boot: raise the version floor to the running version.
    Confirm,
}

/// The sections `gateway update` reads; the rest of the file is not its business.
#[derive(Debug, Default, Deserialize)]
struct Sections {
    #[serde(default)]
    update: Update,
    #[serde(default)]
    board: BoardSection,
}

#[derive(Debug, Default, Deserialize)]
struct BoardSection {
    update_marker: Option<PathBuf>,
}

fn load(config: &Path) -> anyhow::Result<(Update, Option<PathBuf>)> {
    let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut s: Sections = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        anyhow::anyhow!("{}:{line}: {}", config.display(), e.message().trim_end())
    })?;
    let base = config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    s.update.resolve(base);
    let marker = s.board.update_marker.map(|p| if p.is_relative() { base.join(p) } else { p });
    Ok((s.update, marker))
}

fn load_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<SigningKey>> {
    paths.iter().map(|p| SigningKey::load(p)).collect()
}

pub fn run(config: &Path, command: Command, out: &mut dyn Write) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    match command {
        Command::Keygen { out: name } => {
            let (private, public, id) = keys::keygen(&name)?;
            writeln!(out, "key {id}: private {} (keep offline), public {}", private.display(), public.display())?;
        }
        Command::SignKeyring { from, keyring_version, threshold, public, revoke, key, out: dest } => {
            let signers = load_keys(&key)?;
            let ring = match from {
                Some(path) => {
                    let mut k = Keyring::load(&path)?;
                    k.add_signatures(&signers);
                    k
                }
                None => {
                    let keys = public.iter().map(|p| keys::load_public(p)).collect::<anyhow::Result<Vec<_>>>()?;
                    let body = KeyringBody {
                        version: keyring_version.unwrap_or(1),
                        threshold: threshold.unwrap_or(1),
                        keys,
                        revoked: revoke,
                    };
                    Keyring::sign_new(&body, &signers)?
                }
            };
            std::fs::write(&dest, ring.to_text()).with_context(|| format!("writing {}", dest.display()))?;
            writeln!(out, "keyring version {} written to {}", ring.body.version, dest.display())?;
        }
        Command::InstallKeyring { file } => {
            let (cfg, _) = load(config)?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let k = keyring::install(&cfg.trust_root, &cfg.state_dir, &text)?;
            writeln!(out, "keyring version {} installed", k.body.version)?;
        }
        Command::Bundle { rootfs, version, board, min_version, expires, key, keyring, out: dest } => {
            let keyring_version = match keyring {
                Some(p) => Keyring::load(&p)?.body.version,
                None => 1,
            };
            let spec = BundleSpec { rootfs: &rootfs, version, board, min_version, expires, keyring_version };
            let m = bundle::make(&spec, &load_keys(&key)?, &dest)?;
            writeln!(
                out,
                "bundle {}: version {} for {}, {} payload bytes, sha256 {}, {} signature(s)",
                dest.display(),
                m.version,
                m.board,
                m.payload_size,
                m.payload_sha256,
                key.len()
            )?;
        }
        Command::Apply { source, download_to, skip_installed, reboot } => {
            let (cfg, marker) = load(config)?;
            if skip_installed && !is_url(&source) {
                if let Some(v) = installed(&cfg, Path::new(&source))? {
                    writeln!(out, "version {v} runs already or was applied last: nothing to do")?;
                    return Ok(());
                }
            }
            let file = if is_url(&source) {
                if let Some(dir) = download_to.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let keyring = keyring::effective(&cfg.trust_root, &cfg.state_dir)?;
                let facts = apply::box_facts(&cfg, now)?;
                fetch::download(&source, &download_to, &|head| {
                    crate::update::verify::check(head, &keyring, &facts).map_err(Into::into)
                })?;
                download_to.clone()
            } else {
                PathBuf::from(&source)
            };
            let outcome = apply::apply_file(&cfg, &file, marker.as_deref(), now, &mut apply::PowerCut::never())?;
            if file == download_to {
                let _ = std::fs::remove_file(&download_to);
            }
            writeln!(
                out,
                "version {} written to slot {} (entry {}); reboot to start it",
                outcome.manifest.version, outcome.slot, outcome.entry
            )?;
            if reboot {
                out.flush()?;
                let status = std::process::Command::new("systemctl").arg("reboot").status()?;
                anyhow::ensure!(status.success(), "systemctl reboot: {status}");
            }
        }
        Command::Status => status(&load(config)?.0, out)?,
        Command::BootCheck => {
            let (cfg, _) = load(config)?;
            match boot::check_rollback(&cfg, now)? {
                Some(r) => writeln!(out, "rollback: {} did not stay booted, running {}", r.failed, r.running)?,
                None => writeln!(out, "no rollback")?,
            }
        }
        Command::Confirm => {
            let (cfg, _) = load(config)?;
            match boot::confirm(&cfg)? {
                Some(v) => writeln!(out, "floor raised to {v}")?,
                None => writeln!(out, "floor unchanged")?,
            }
        }
    }
    Ok(())
}

fn is_url(source: &str) -> bool {
    source.starts_with("https://") || source.starts_with("http://")
}

/// The bundle's version, if it runs already or was the last one applied.
fn installed(cfg: &Update, bundle_path: &Path) -> anyhow::Result<Option<Version>> {
    let mut f = std::fs::File::open(bundle_path).with_context(|| format!("opening {}", bundle_path.display()))?;
    let version = bundle::read_head(&mut f)?.manifest.version;
    let running = state::running_version(&cfg.os_release)?;
    let applied = state::applied(&cfg.state_dir)?.map(|a| a.version);
    Ok((running.as_ref() == Some(&version) || applied.as_ref() == Some(&version)).then_some(version))
}

fn or_none<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none".into(), |v| v.to_string())
}

fn status(cfg: &Update, out: &mut dyn Write) -> anyhow::Result<()> {
    let running = state::running_version(&cfg.os_release)?;
    let slot = slots::booted(&cfg.cmdline).map(|s| s.to_string()).unwrap_or_else(|_| "unknown".into());
    writeln!(out, "running:   {} (slot {slot})", or_none(running))?;
    writeln!(out, "board:     {}", cfg.board)?;
    writeln!(out, "floor:     {}", or_none(state::floor(&cfg.state_dir)?))?;
    match state::applied(&cfg.state_dir)? {
        Some(a) => writeln!(out, "applied:   {} to slot {} at {}", a.version, a.slot, a.at)?,
        None => writeln!(out, "applied:   none")?,
    }
    let r = state::rollbacks(&cfg.state_dir)?;
    write!(out, "rollbacks: {}", r.count)?;
    if let (Some(failed), Some(running)) = (&r.last_failed, &r.last_running) {
        write!(out, " (last: {failed} fell back to {running} at {})", r.last_at.as_deref().unwrap_or("?"))?;
    }
    writeln!(out)?;
    match keyring::effective(&cfg.trust_root, &cfg.state_dir) {
        Ok(k) => {
            let ids: Vec<&str> = k.body.keys.iter().map(|k| k.id.as_str()).collect();
            writeln!(
                out,
                "keyring:   version {}, threshold {} of [{}], revoked [{}]",
                k.body.version,
                k.body.threshold,
                ids.join(", "),
                k.body.revoked.join(", ")
            )?;
        }
        Err(e) => writeln!(out, "keyring:   unusable: {e:#}")?,
    }
    match slots::entries(&cfg.esp) {
        Ok(entries) => {
            for e in entries {
                let tries = e.tries_left.map_or_else(|| "blessed".into(), |n| format!("{n} tries left"));
                writeln!(out, "entry:     {} (slot {}, {tries})", e.file_name, e.slot)?;
            }
        }
        Err(e) => writeln!(out, "entries:   unreadable: {e:#}")?,
    }
    Ok(())
}
