//! `gateway provision`: apply a stick (the device side, run by the udev-started unit), and the
//! provisioning office's tools — `keygen`, `sign`, `verify` — on the same code paths.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::Config;
use crate::provision::{self, stick, trust, Identity, Options};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProvisionArgs {
    #[command(subcommand)]
    command: Option<ProvisionCommand>,
    #[command(flatten)]
    apply: ApplyArgs,
}

/// Where the trusted provisioning keys are and how many must sign.
#[derive(Debug, clap::Args)]
struct TrustArgs {
    /// Folder of the provisioning public keys (`*.pub`) shipped in the image.
    #[arg(long, default_value = "/usr/share/gateway/provision-keys")]
    keys: PathBuf,
    /// Distinct provisioning keys that must have signed.
    #[arg(long, default_value_t = 2)]
    threshold: usize,
}

#[derive(Debug, clap::Args)]
struct ApplyArgs {
    /// The stick: its mountpoint (mounted ro,noexec,nosuid,nodev), or a FAT image or block
    /// device read directly.
    stick: Option<PathBuf>,
    #[command(flatten)]
    trust: TrustArgs,
    /// Provisioning state: the live configuration, its version, the device keys.
    #[arg(long, default_value = provision::STATE_DIR)]
    state: PathBuf,
    /// The configuration running now (its journal gets the audit event; its board names
    /// the box). The default resolves to the provisioned one once there is one.
    #[arg(long, default_value = provision::SHIPPED_CONFIG)]
    config: PathBuf,
    /// This box's serial (default: DMI, device tree, machine id).
    #[arg(long)]
    serial: Option<String>,
    /// Where the WireGuard networkd files go.
    #[arg(long, default_value = "/run/systemd/network")]
    networkd_dir: PathBuf,
    /// Only write files: no remount of the stick, no networkctl/nft/systemctl (tests).
    #[arg(long)]
    no_activate: bool,
}

#[derive(Debug, clap::Subcommand)]
enum ProvisionCommand {
    /// Make a provisioning key pair: `<out>.key` (secret, 0600, keep it offline) and
    /// `<out>.pub` (ship it in the image).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a provision.toml with one provisioning key: appends a line to the
    /// `provision.sig` beside it (each office signs in turn).
    Sign {
        #[arg(long)]
        key: PathBuf,
        manifest: PathBuf,
    },
    /// Check a stick (folder or FAT image) as a box would: signatures, the whole
    /// configuration, and (with --serial/--board) its scope and validity now.
    Verify {
        #[command(flatten)]
        trust: TrustArgs,
        #[arg(long)]
        serial: Option<String>,
        #[arg(long, default_value = "board")]
        board: String,
        stick: PathBuf,
    },
    /// Render the tunnel's networkd files and the firewall sets from the live configuration
    /// (at boot, by gateway-network.service).
    Network {
        #[arg(long, default_value = provision::SHIPPED_CONFIG)]
        config: PathBuf,
        #[arg(long, default_value = provision::STATE_DIR)]
        state: PathBuf,
        #[arg(long, default_value = "/run/systemd/network")]
        networkd_dir: PathBuf,
        #[arg(long)]
        no_activate: bool,
    },
    /// Put the previous configuration back (once).
    Rollback {
        #[arg(long, default_value = provision::STATE_DIR)]
        state: PathBuf,
    },
}

pub fn provision_command(args: ProvisionArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match args.command {
        None => apply(args.apply, out),
        Some(ProvisionCommand::Keygen { out: base }) => keygen(&base, out),
        Some(ProvisionCommand::Sign { key, manifest }) => sign(&key, &manifest, out),
        Some(ProvisionCommand::Verify { trust, serial, board, stick }) => verify(&trust, serial, board, &stick, out),
        Some(ProvisionCommand::Network { config, state, networkd_dir, no_activate }) => {
            let path = provision::resolve_config(&config);
            let config = Config::load(&path)?;
            let key = state.join("keys").join(provision::device_keys::WIREGUARD);
            provision::network::install(&config, &networkd_dir, &state, &key, !no_activate)?;
            writeln!(out, "{}: network rendered", path.display())?;
            Ok(())
        }
        Some(ProvisionCommand::Rollback { state }) => {
            provision::apply::rollback(&state)?;
            writeln!(out, "previous configuration restored; restart the gateway")?;
            Ok(())
        }
    }
}

fn apply(a: ApplyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = a.stick.context("name the stick: gateway provision <mountpoint>")?;
    let current_config = provision::resolve_config(&a.config);
    let current = Config::load(&current_config).ok();
    let opts = Options {
        keys: trust::load_keys(&a.trust.keys)?,
        threshold: a.trust.threshold,
        state_dir: a.state,
        identity: Identity {
            serial: a.serial.unwrap_or_else(provision::serial),
            // No board file: the board file's own default name.
            board: current
                .as_ref()
                .map(|c| c.board.spec.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "board".into()),
        },
        marker: current.as_ref().and_then(|c| c.board.provision_marker.as_ref().map(|m| m.get_ref().clone())),
        current_config,
        networkd_dir: a.networkd_dir,
        activate: !a.no_activate,
        now: jiff::Timestamp::now(),
    };
    let outcome = match stick::open(&path, opts.activate) {
        Ok(mut s) => provision::provision(s.as_mut(), &opts),
        Err(e) => {
            let refusal = provision::Refusal::Stick(e);
            provision::report_unopened(&opts, &refusal);
            Err(refusal)
        }
    };
    match outcome {
        Ok(v) => {
            writeln!(out, "applied config_version {v}")?;
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("refused ({}): {e}", e.code())),
    }
}

fn keygen(base: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let key = trust::SigningKey::generate()?;
    let (secret, public) = (base.with_extension("key"), base.with_extension("pub"));
    crate::files::create_private(&secret, key.to_file_text().as_bytes())
        .with_context(|| format!("creating {}", secret.display()))?;
    std::fs::write(&public, format!("{}\n", key.public().base64()))?;
    writeln!(out, "key id {}: {} (secret), {} (public)", key.public().id, secret.display(), public.display())?;
    Ok(())
}

fn sign(key: &Path, manifest: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let key = trust::SigningKey::from_file_text(&std::fs::read_to_string(key)?)?;
    let data = std::fs::read(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    // The office may not hold the files the configuration names (TLS certificates on the
    // box): here only the TOML and its [provision] section; `verify` runs the full check.
    let text = std::str::from_utf8(&data).context("provision.toml is not UTF-8")?;
    let table: toml::Table = text.parse().with_context(|| format!("{}", manifest.display()))?;
    anyhow::ensure!(table.contains_key("provision"), "{} has no [provision] section", manifest.display());
    let sig_path = manifest.with_file_name(stick::SIGNATURES);
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&sig_path)?;
    f.write_all(key.sign_line(trust::Purpose::Manifest, &data).as_bytes())?;
    f.sync_all()?;
    writeln!(out, "signed with key {} into {}", key.public().id, sig_path.display())?;
    Ok(())
}

fn verify(
    t: &TrustArgs,
    serial: Option<String>,
    board: String,
    path: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let keys = trust::load_keys(&t.keys)?;
    let mut s = stick::open(path, false)?;
    let live = Path::new(provision::STATE_DIR).join(provision::apply::LIVE);
    let checked = provision::check(s.as_mut(), &keys, t.threshold, &live).map_err(|e| anyhow::anyhow!("{e}"))?;
    let p = checked.config.provision.as_ref().context("no [provision] section")?;
    writeln!(out, "signatures ok (threshold {}), configuration ok", t.threshold)?;
    writeln!(out, "config_version {}  sha256 {}", p.config_version, checked.hash)?;
    writeln!(out, "valid {} .. {}", p.not_before.get_ref(), p.not_after.get_ref())?;
    let scope =
        if p.site_wide { "site-wide".to_string() } else { format!("serials {:?} boards {:?}", p.serials, p.boards) };
    writeln!(out, "for {scope}")?;
    if let Some(pem) = &p.client_certificate {
        let n = provision::client_cert::parse(pem.get_ref()).map_err(|e| anyhow::anyhow!("{e}"))?.len();
        writeln!(out, "client certificate: {n} certificate(s); the box checks it certifies its own TLS key")?;
    }
    if let Some(serial) = serial {
        provision::check_scope(&checked, &Identity { serial: serial.clone(), board }, jiff::Timestamp::now())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        writeln!(
            out,
            "a box with serial {serial} would accept it now (unless it applied config_version {} or later)",
            p.config_version
        )?;
    }
    Ok(())
}
