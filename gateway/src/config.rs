//! The gateway's TOML configuration: typed, validated at load, errors that name file,
//! line and field.

use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub device: Device,
    pub(crate) store: Store,
    #[serde(rename = "listener", default)]
    pub(crate) listeners: Vec<Listener>,
    #[serde(default)]
    pub(crate) ops: Ops,
    /// Process-wide resource bounds.
    #[serde(default)]
    pub(crate) limits: Limits,
    /// Site maps for the FHIR conversion.
    #[serde(default)]
    pub(crate) mapping: crate::fhir::site::MappingConfig,
    #[serde(default)]
    pub(crate) cloud: Cloud,
    /// The appliance's status LED and reset button (`[board]`).
    #[serde(default)]
    pub(crate) board: Board,
    /// Alert thresholds and the webhook (`[alerts]`).
    #[serde(default)]
    pub(crate) alerts: Alerts,
    /// `[provision]`: present in a configuration delivered by USB stick (its signed metadata).
    pub(crate) provision: Option<Provision>,
    /// `[wireguard]`: the tunnel the cloud traffic takes (rendered for systemd-networkd).
    pub(crate) wireguard: Option<WireGuard>,
    /// Signed A/B updates (`[update]`, read by `gateway update`).
    #[serde(default)]
    pub(crate) update: Update,
    /// The folder of the config file: relative paths in it are resolved against it.
    #[serde(skip)]
    pub(crate) dir: PathBuf,
    /// The config file and its text, for errors found after parsing (`cli::check_config`)
    /// to name their line.
    #[serde(skip)]
    pub(crate) file: PathBuf,
    #[serde(skip)]
    pub(crate) source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub name: String,
}

impl Default for Device {
    fn default() -> Self {
        Device { name: "gateway".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Store {
    /// SQLite database file.
    pub(crate) path: Spanned<PathBuf>,
    /// Key file for payload encryption; created with mode 0600 on first start, then bound to
    /// the store (`store::key_guard`): never replaced while sealed rows need it.
    pub(crate) key_file: Spanned<PathBuf>,
    /// Disk budget of the journal's files (database, WAL, shm; see `store/budget.rs`);
    /// beyond it new messages are refused with AR/CR. The WAL is kept under an eighth of it.
    #[serde(default = "defaults::max_bytes")]
    pub(crate) max_bytes: u64,
    /// A re-sent message (same sender, MSH-10 and payload) within this window is ACKed
    /// again but not stored twice.
    #[serde(default = "defaults::dedup_window_secs")]
    pub(crate) dedup_window_secs: u64,
    /// Delivered rows are purged after this long.
    #[serde(default = "defaults::retention_secs")]
    pub(crate) retention_secs: u64,
    /// Most messages committed in one transaction.
    #[serde(default = "defaults::batch_max_messages")]
    pub(crate) batch_max_messages: NonZeroUsize,
    /// Most payload bytes committed in one transaction.
    #[serde(default = "defaults::batch_max_bytes")]
    pub(crate) batch_max_bytes: NonZeroUsize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Listener {
    /// Name used in logs, metrics and the journal.
    pub(crate) name: String,
    pub(crate) bind: SocketAddr,
    pub(crate) tls: Option<Tls>,
    /// Source networks allowed to connect; others are closed before anything is read.
    #[serde(default = "defaults::allow")]
    pub(crate) allow: Vec<IpNet>,
    /// Connections at once; when all are taken, the one idle the longest is closed for a new one.
    #[serde(default = "defaults::max_connections")]
    pub(crate) max_connections: NonZeroUsize,
    /// Connections at once from one source address.
    #[serde(default = "defaults::max_connections_per_source")]
    pub(crate) max_connections_per_source: NonZeroUsize,
    #[serde(default = "defaults::idle_timeout_secs")]
    pub(crate) idle_timeout_secs: u64,
    /// A frame that is opened and not finished within this time closes the connection.
    #[serde(default = "defaults::frame_timeout_secs")]
    pub(crate) frame_timeout_secs: u64,
    #[serde(default = "defaults::max_frame_bytes")]
    pub(crate) max_frame_bytes: NonZeroUsize,
    #[serde(default)]
    pub(crate) accept: Accept,
}

/// Which messages a listener takes; others get AR/CR with the matching table 0357 code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    #[serde(default = "defaults::versions")]
    pub(crate) versions: Vec<String>,
    #[serde(default = "defaults::processing_ids")]
    pub(crate) processing_ids: Vec<String>,
    /// `TYPE` (any trigger) or `TYPE^TRIGGER`.
    #[serde(default = "defaults::message_types")]
    pub(crate) message_types: Vec<String>,
    /// What an empty MSH-11 stands for (senders leave it empty); `""`: an empty MSH-11 is
    /// refused (AE 101).
    #[serde(default = "defaults::default_processing_id")]
    pub(crate) default_processing_id: String,
    /// Store messages with a type/trigger the converter does not handle (ACK AA) as dead
    /// letters marked "unsupported", instead of refusing them (AR/CR 200/201).
    #[serde(default)]
    pub(crate) store_unsupported: bool,
}

impl Default for Accept {
    fn default() -> Self {
        Accept {
            versions: defaults::versions(),
            processing_ids: defaults::processing_ids(),
            message_types: defaults::message_types(),
            default_processing_id: defaults::default_processing_id(),
            store_unsupported: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tls {
    pub(crate) cert: Spanned<PathBuf>,
    pub(crate) key: Spanned<PathBuf>,
    /// When set, clients must present a certificate issued by this CA (mTLS).
    pub(crate) client_ca: Option<Spanned<PathBuf>>,
}

/// The destination FHIR server: a cloud FHIR base URL, or (no `url`) the embedded sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cloud {
    /// Bundle shape: `generic` (transaction, conditional updates) or `salesforce` (batches of
    /// at most 30 entries with deterministic ids).
    pub(crate) profile: Option<Spanned<String>>,
    /// FHIR base URL (`https://…/fhir`); bundles are POSTed to it. With a Salesforce auth whose
    /// token names an instance, a path (`/services/data/…`) is resolved against that instance.
    pub(crate) url: Option<Spanned<String>>,
    /// The embedded FHIR sink's folder (its database `fhir.db`), used when `url` is absent.
    pub(crate) sink: Option<Spanned<PathBuf>>,
    /// `[cloud.auth]`: how requests authenticate.
    #[serde(default)]
    pub auth: AuthConfig,
    /// PEM bundle of CA certificates that sign the server's certificate.
    pub(crate) ca_file: Option<Spanned<PathBuf>>,
    /// Also trust the system's CA bundle; default: only when `ca_file` is not set.
    pub(crate) system_roots: Option<bool>,
    /// PEM client certificate chain and key for mutual TLS (both or neither).
    pub(crate) client_cert: Option<Spanned<PathBuf>>,
    pub(crate) client_key: Option<Spanned<PathBuf>>,
    /// HTTP(S) proxy (`http://host:port`); no proxy (not even from the environment) when unset.
    pub(crate) proxy: Option<Spanned<String>>,
    /// Requests in flight at once (one per patient lane).
    #[serde(default = "defaults::concurrency")]
    pub(crate) concurrency: NonZeroUsize,
    /// Most entries in one request that packs several patients' `batch` bundles (the
    /// `salesforce` profile); 1 sends every bundle alone. Read from the deprecated
    /// `batch_max_entries` too (see [`DEPRECATED_KEYS`]).
    #[serde(default = "defaults::request_max_entries", alias = "batch_max_entries")]
    pub(crate) request_max_entries: NonZeroUsize,
    /// Most entries in one `transaction` (the `generic` profile) that holds a conditional
    /// entry; a larger one is split into several. Medplum's server refuses more than 8.
    #[serde(default = "defaults::transaction_max_entries")]
    pub(crate) transaction_max_entries: NonZeroUsize,
    /// Most updates (`PUT`) in one transaction; Medplum's server refuses more than 50.
    #[serde(default = "defaults::transaction_max_updates")]
    pub(crate) transaction_max_updates: NonZeroUsize,
    #[serde(default = "defaults::connect_timeout_secs")]
    pub(crate) connect_timeout_secs: NonZeroU64,
    /// Longest wait for the response head, and between body reads.
    #[serde(default = "defaults::read_timeout_secs")]
    pub(crate) read_timeout_secs: NonZeroU64,
    /// Longest a whole request may take.
    #[serde(default = "defaults::timeout_secs")]
    pub(crate) timeout_secs: NonZeroU64,
    /// First retry delay of a failing lane; doubles per failure up to `backoff_max_secs`.
    #[serde(default = "defaults::backoff_base_ms")]
    pub(crate) backoff_base_ms: NonZeroU64,
    #[serde(default = "defaults::backoff_max_secs")]
    pub(crate) backoff_max_secs: NonZeroU64,
    /// Randomise retry delays (within [d/2, d]); tests turn it off.
    #[serde(default = "defaults::yes")]
    pub(crate) retry_jitter: bool,
    /// Allow a plain `http://` URL to a host other than loopback (PHI in clear text on the
    /// network): refused unless set.
    #[serde(default)]
    pub(crate) allow_insecure_http: bool,
    /// Resource types the target does not accept; unset: none for `generic`, the types no
    /// documented Salesforce Healthcare API module lists for `salesforce`
    /// ([`SALESFORCE_UNSUPPORTED`]).
    pub(crate) unsupported_types: Option<Vec<String>>,
    /// What becomes of an entry of an unsupported type: `drop` (counted) or `dead-letter`.
    #[serde(default)]
    pub(crate) unsupported: UnsupportedMode,
    /// Leave out of requests what the server acknowledged unchanged (write economy). Turn it
    /// off for a server that may lose data behind the gateway's back (a test server reset).
    #[serde(default = "defaults::yes")]
    pub(crate) write_economy: bool,
    /// An unchanged resource is written again after this many hours (write economy).
    #[serde(default = "defaults::reassert_hours")]
    pub(crate) reassert_hours: NonZeroU64,
    /// API calls the org allows per day; the forwarder warns at 80 % and stops sending at
    /// 100 % until the day (UTC) ends. Unset: only `Sforce-Limit-Info` paces.
    pub(crate) daily_api_budget: Option<NonZeroU64>,
    /// Reads (searches) one salesforce batch may carry — the documented limit is 10. Before
    /// a resource is first created the forwarder searches it by identifier in batches of at
    /// most this many searches (`forward::lookup`); 0 turns the lookup off.
    #[serde(default = "defaults::salesforce_max_reads")]
    pub(crate) salesforce_max_reads: usize,
    /// `[cloud.base_urls]`: a base URL per resource type (`Patient = "https://…/r4"`) for the
    /// types a Salesforce org serves elsewhere than `url` (salesforce profile only).
    #[serde(default)]
    pub(crate) base_urls: std::collections::BTreeMap<Spanned<String>, Spanned<String>>,
}

/// `[cloud] unsupported`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum UnsupportedMode {
    #[default]
    Drop,
    DeadLetter,
}

/// Resource types the converter can emit that no module of the Salesforce Healthcare API
/// documentation lists (docs/CONVERSION.md, "Salesforce profile").
pub(crate) const SALESFORCE_UNSUPPORTED: [&str; 4] = ["Provenance", "Coverage", "Appointment", "Specimen"];

impl Default for Cloud {
    fn default() -> Self {
        Cloud {
            profile: None,
            url: None,
            sink: None,
            auth: Default::default(),
            ca_file: None,
            system_roots: None,
            client_cert: None,
            client_key: None,
            proxy: None,
            concurrency: defaults::concurrency(),
            request_max_entries: defaults::request_max_entries(),
            transaction_max_entries: defaults::transaction_max_entries(),
            transaction_max_updates: defaults::transaction_max_updates(),
            connect_timeout_secs: defaults::connect_timeout_secs(),
            read_timeout_secs: defaults::read_timeout_secs(),
            timeout_secs: defaults::timeout_secs(),
            backoff_base_ms: defaults::backoff_base_ms(),
            backoff_max_secs: defaults::backoff_max_secs(),
            retry_jitter: true,
            allow_insecure_http: false,
            unsupported_types: None,
            unsupported: UnsupportedMode::Drop,
            write_economy: true,
            reassert_hours: defaults::reassert_hours(),
            daily_api_budget: None,
            salesforce_max_reads: defaults::salesforce_max_reads(),
            base_urls: Default::default(),
        }
    }
}

impl Cloud {
    /// The resource types the target does not accept (see `unsupported_types`).
    pub(crate) fn unsupported_types(&self) -> Vec<String> {
        match (&self.unsupported_types, self.profile()) {
            (Some(list), _) => list.clone(),
            (None, crate::fhir::bundle::Profile::Salesforce) => {
                SALESFORCE_UNSUPPORTED.iter().map(|t| t.to_string()).collect()
            }
            (None, crate::fhir::bundle::Profile::Generic) => Vec::new(),
        }
    }

    /// The configured profile (validated at load), `generic` when unset.
    pub(crate) fn profile(&self) -> crate::fhir::bundle::Profile {
        self.profile.as_ref().and_then(|p| p.get_ref().parse().ok()).unwrap_or_default()
    }

    /// The target server's transaction limits, which the generic profile's bundles fit under;
    /// none for the local sink, which takes a transaction of any size (and resolves no
    /// conditional references, which a split would need).
    pub fn transaction_limits(&self) -> crate::fhir::bundle::TxLimits {
        if self.url.is_none() {
            return crate::fhir::bundle::TxLimits::NONE;
        }
        crate::fhir::bundle::TxLimits {
            max_entries: self.transaction_max_entries.get(),
            max_updates: self.transaction_max_updates.get(),
        }
    }

    /// The sink folder when no `url` is set (resolved at load; `var/fhir-sink` by default).
    pub(crate) fn sink_dir(&self, config_dir: &Path) -> Option<PathBuf> {
        if self.url.is_some() {
            return None;
        }
        Some(match &self.sink {
            Some(s) => s.get_ref().clone(),
            None => config_dir.join("var/fhir-sink"),
        })
    }
}

/// `[cloud.auth]`, tagged by `kind`. Relative file paths are resolved against the config
/// file's folder by `forward::auth::Auth::from_config`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    #[default]
    None,
    /// A static token; the file (mode 0600) holds the token, a trailing newline is trimmed.
    Bearer { token_file: PathBuf },
    /// SMART Backend Services (client credentials, JWT client assertion).
    Smart {
        token_url: String,
        client_id: String,
        /// PKCS#8 PEM (RSA or EC P-384) or PKCS#1 `RSA PRIVATE KEY`, mode 0600.
        key_file: PathBuf,
        alg: SmartAlg,
        /// Key id registered with the server (its JWKS).
        kid: String,
        #[serde(default = "default_scope")]
        scope: String,
    },
    /// Salesforce OAuth 2.0 JWT bearer flow.
    Salesforce {
        /// `https://login.salesforce.com`, `https://test.salesforce.com` or a My Domain URL;
        /// the token URL is `<login_url>/services/oauth2/token`.
        login_url: String,
        /// The connected app's consumer key.
        consumer_key: String,
        /// The integration user's username.
        user: String,
        /// RSA private key (PKCS#8 or PKCS#1 PEM), mode 0600.
        key_file: PathBuf,
        /// Salesforce returns no `expires_in`: the session lifetime assumed (the org's
        /// session timeout). A 401 before then fetches a new token anyway.
        #[serde(default = "default_salesforce_lifetime")]
        token_lifetime_secs: u64,
    },
}

/// The SMART client assertion's signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SmartAlg {
    RS384,
    ES384,
}

fn default_scope() -> String {
    "system/*.write".into()
}

fn default_salesforce_lifetime() -> u64 {
    30 * 60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ops {
    /// Admin HTTP endpoint (health, metrics); keep it on loopback.
    pub(crate) admin_bind: Option<SocketAddr>,
    /// Admin connections at once; more are closed at once.
    #[serde(default = "defaults::admin_max_connections")]
    pub(crate) admin_max_connections: NonZeroUsize,
    /// The admin endpoint has no TLS and no token: bound to a non-loopback address it is
    /// refused unless this says why that is safe (`"firewalled"`: a firewall admits only the
    /// management network, as on the appliance).
    pub(crate) admin_exposed: Option<Spanned<String>>,
}

impl Default for Ops {
    fn default() -> Self {
        Ops {
            admin_bind: Some(SocketAddr::from(([127, 0, 0, 1], 8575))),
            admin_max_connections: defaults::admin_max_connections(),
            admin_exposed: None,
        }
    }
}

/// The only value of `[ops] admin_exposed`.
const ADMIN_FIREWALLED: &str = "firewalled";
/// `[update]`: where `gateway update` finds its trust root, the slots, the ESP and its state
/// (docs/UPDATES.md). The defaults are the appliance image's; tests point them at files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Update {
    /// The keyring shipped in the image (public keys, threshold, revocations).
    pub trust_root: PathBuf,
    /// This hardware's board id: a bundle for another board is refused.
    pub board: String,
    /// Floor, last applied version, rollbacks and rotated keyrings (on the data partition).
    pub state_dir: PathBuf,
    /// The mounted EFI system partition holding `loader/entries`.
    pub esp: PathBuf,
    /// The root filesystem slots' block devices (or files, for tests).
    pub slot_a: PathBuf,
    pub slot_b: PathBuf,
    /// Where the booted slot is read from (`root=PARTLABEL=rootfs-a|b`).
    pub cmdline: PathBuf,
    /// Where the running image version is read from (`IMAGE_VERSION=`).
    pub os_release: PathBuf,
    /// Boot tries a new entry gets (`+N`) before systemd-boot falls back.
    pub boot_tries: u32,
}

impl Default for Update {
    fn default() -> Self {
        Update {
            trust_root: "/usr/share/gateway/update-keyring".into(),
            board: "x86_64-efi".into(),
            state_dir: "/var/lib/gateway-update".into(),
            esp: "/efi".into(),
            slot_a: "/dev/disk/by-partlabel/rootfs-a".into(),
            slot_b: "/dev/disk/by-partlabel/rootfs-b".into(),
            cmdline: "/proc/cmdline".into(),
            os_release: "/usr/lib/os-release".into(),
            boot_tries: 3,
        }
    }
}

impl Update {
    /// Relative paths resolved against the config file's folder `base`.
    pub(crate) fn resolve(&mut self, base: &Path) {
        for p in [
            &mut self.trust_root,
            &mut self.state_dir,
            &mut self.esp,
            &mut self.slot_a,
            &mut self.slot_b,
            &mut self.cmdline,
            &mut self.os_release,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// `[board]`: the appliance hardware the gateway drives (status LED, reset button), and what a
/// long press of the reset button restores.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Board {
    /// The board file naming the LED and button wiring; absent: a simulated board.
    pub(crate) file: Option<Spanned<PathBuf>>,
    /// The factory configuration (shipped in the image) a long press restores at the next
    /// start; absent: a long press is refused.
    pub(crate) factory_config: Option<Spanned<PathBuf>>,
    /// Written by a long press; default `factory-reset-requested` beside the journal.
    pub(crate) reset_marker: Option<Spanned<PathBuf>>,
    /// While this file exists an update is being applied (the LED shows "updating").
    pub(crate) update_marker: Option<Spanned<PathBuf>>,
    /// Written by `gateway provision`: "provisioning" while a stick is read and applied (the
    /// LED shows "provisioning"), "refused" after a refused stick until it is pulled.
    pub(crate) provision_marker: Option<Spanned<PathBuf>>,
    /// `file`, loaded and checked.
    #[serde(skip)]
    pub(crate) spec: BoardSpec,
}

impl Board {
    /// The reset marker file (`reset_marker`, else beside the journal).
    pub(crate) fn reset_marker_path(&self, store: &Store) -> PathBuf {
        match &self.reset_marker {
            Some(p) => p.get_ref().clone(),
            None => store.path.get_ref().parent().unwrap_or(Path::new(".")).join("factory-reset-requested"),
        }
    }
}

/// A board file: how the status LED and the reset button are wired. A part left out is
/// simulated (a dev machine, or a board without it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BoardSpec {
    /// For the log.
    #[serde(default = "defaults::board_name")]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) led: LedSpec,
    #[serde(default)]
    pub(crate) button: ButtonSpec,
}

/// `[led]` of a board file: a sysfs LED by name, or a GPIO character-device line.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LedSpec {
    /// `/sys/class/leds/<sysfs>/brightness`.
    sysfs: Option<Spanned<String>>,
    chip: Option<Spanned<PathBuf>>,
    line: Option<Spanned<u32>>,
    active_low: Option<Spanned<bool>>,
}

/// `[button]` of a board file: a GPIO character-device line, or a file holding its level.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ButtonSpec {
    chip: Option<Spanned<PathBuf>>,
    line: Option<Spanned<u32>>,
    /// A file holding 0 or 1, e.g. a sysfs GPIO `value` file (relative: to the board file).
    input_file: Option<Spanned<PathBuf>>,
    /// The line reads low while pressed.
    #[serde(default)]
    pub(crate) active_low: bool,
}

/// Where the status LED is, once a board file is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LedWiring {
    Simulated,
    /// The name under `/sys/class/leds`.
    Sysfs(String),
    Gpio {
        chip: PathBuf,
        line: u32,
        active_low: bool,
    },
}

/// Where the reset button is, once a board file is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ButtonWiring {
    Simulated,
    Gpio { chip: PathBuf, line: u32 },
    File(PathBuf),
}

/// A chip given by name (`gpiochip0`) lives in `/dev`.
fn chip_path(chip: &Path) -> PathBuf {
    if chip.is_absolute() {
        chip.to_path_buf()
    } else {
        Path::new("/dev").join(chip)
    }
}

impl LedSpec {
    pub(crate) fn wiring(&self) -> LedWiring {
        match (&self.sysfs, &self.chip, &self.line) {
            (Some(name), _, _) => LedWiring::Sysfs(name.get_ref().clone()),
            (None, Some(chip), Some(line)) => LedWiring::Gpio {
                chip: chip_path(chip.get_ref()),
                line: *line.get_ref(),
                active_low: self.active_low.as_ref().is_some_and(|a| *a.get_ref()),
            },
            _ => LedWiring::Simulated,
        }
    }
}

impl ButtonSpec {
    pub(crate) fn wiring(&self) -> ButtonWiring {
        match (&self.input_file, &self.chip, &self.line) {
            (Some(file), _, _) => ButtonWiring::File(file.get_ref().clone()),
            (None, Some(chip), Some(line)) => {
                ButtonWiring::Gpio { chip: chip_path(chip.get_ref()), line: *line.get_ref() }
            }
            _ => ButtonWiring::Simulated,
        }
    }
}

impl BoardSpec {
    /// Parses and checks a board file; errors name the file, line and field.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<BoardSpec, ConfigError> {
        let error_at = |span: Option<std::ops::Range<usize>>, field: &str, message: String| {
            let (line, column) = span.map(|s| line_col(text, s.start)).unzip();
            ConfigError { file: path.into(), line, column, field: Some(field.into()), message }
        };
        let spec: BoardSpec = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            let field = e.span().and_then(|s| key_at(text, s.start)).or_else(|| field_in_message(&message));
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unzip();
            ConfigError { file: path.into(), line, column, field, message }
        })?;
        let led = &spec.led;
        if let (Some(_), Some(chip)) = (&led.sysfs, &led.chip) {
            return Err(error_at(
                Some(chip.span()),
                "led.chip",
                "set either `sysfs` or `chip` + `line`, not both".into(),
            ));
        }
        if let Some(name) = &led.sysfs {
            let n = name.get_ref();
            if n.is_empty() || n.contains('/') || n == "." || n == ".." {
                return Err(error_at(
                    Some(name.span()),
                    "led.sysfs",
                    format!("{n:?} is not an LED name under /sys/class/leds"),
                ));
            }
            if let Some(active_low) = led.active_low.as_ref().filter(|a| *a.get_ref()) {
                return Err(error_at(
                    Some(active_low.span()),
                    "led.active_low",
                    "applies to a GPIO line only (a sysfs LED's polarity is the kernel's)".into(),
                ));
            }
        }
        check_line("led", &led.chip, &led.line, &error_at)?;
        let button = &spec.button;
        if let (Some(_), Some(chip)) = (&button.input_file, &button.chip) {
            return Err(error_at(
                Some(chip.span()),
                "button.chip",
                "set either `input_file` or `chip` + `line`, not both".into(),
            ));
        }
        check_line("button", &button.chip, &button.line, &error_at)?;
        let mut spec = spec;
        if let Some(file) = &mut spec.button.input_file {
            if file.get_ref().is_relative() {
                *file.get_mut() = path.parent().unwrap_or(Path::new(".")).join(file.get_ref());
            }
        }
        Ok(spec)
    }

    /// Reads and checks the board file at `path`.
    pub(crate) fn load(path: &Path) -> Result<BoardSpec, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.into(),
            line: None,
            column: None,
            field: None,
            message: format!("cannot read the board file: {e}"),
        })?;
        BoardSpec::parse(&text, path)
    }
}

/// Builds a board file error from a span, field and message.
type BoardErrorAt<'a> = &'a dyn Fn(Option<std::ops::Range<usize>>, &str, String) -> ConfigError;

/// A GPIO line needs both its chip and its offset.
fn check_line(
    part: &str,
    chip: &Option<Spanned<PathBuf>>,
    line: &Option<Spanned<u32>>,
    error_at: BoardErrorAt<'_>,
) -> Result<(), ConfigError> {
    match (chip, line) {
        (Some(c), None) => Err(error_at(
            Some(c.span()),
            &format!("{part}.line"),
            "`chip` needs `line` (the line offset; see `gpioinfo`)".into(),
        )),
        (None, Some(l)) => {
            Err(error_at(Some(l.span()), &format!("{part}.chip"), "`line` needs `chip` (e.g. \"gpiochip0\")".into()))
        }
        _ => Ok(()),
    }
}

/// `[alerts]`: when the gateway raises an alert (see `ops/alerts` and the README's "Status
/// page and alerts"). Every key has a default, so the section may be left out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Alerts {
    /// `HH:MM-HH:MM` in `[mapping] time_zone`: when a silent feed is an alert (the end may be
    /// `24:00`; an end before the start spans midnight).
    pub(crate) hours: String,
    /// A listener with no message for this long (within `hours`) raises `feed_silence`.
    pub(crate) silence_secs: u64,
    /// The oldest undelivered message older than this raises `oldest_undelivered`.
    pub(crate) oldest_undelivered_secs: u64,
    /// The queue rising, never falling, for this long raises `queue_growth`.
    pub(crate) queue_growth_secs: u64,
    /// More than `dead_letter_spike` dead letters within `dead_letter_window_secs` raise
    /// `dead_letter_spike`.
    pub(crate) dead_letter_spike: u64,
    pub(crate) dead_letter_window_secs: u64,
    /// Journal use over this share of `[store] max_bytes` raises `disk_budget`, filesystem use
    /// over it `disk_filesystem`.
    pub(crate) disk_percent: u8,
    /// How long `restart` stays raised after an unclean stop or a stage's recovered panic.
    pub(crate) restart_alert_secs: u64,
    /// Where each raise and clear is POSTed as JSON (http or https); none: not sent.
    pub(crate) webhook_url: Option<String>,
    /// How often the alerts are evaluated and the status page's figures refreshed.
    pub(crate) evaluate_every_ms: NonZeroU64,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            hours: "00:00-24:00".into(),
            silence_secs: 30 * 60,
            oldest_undelivered_secs: 15 * 60,
            queue_growth_secs: 10 * 60,
            dead_letter_spike: 10,
            dead_letter_window_secs: 10 * 60,
            disk_percent: 80,
            restart_alert_secs: 3600,
            webhook_url: None,
            evaluate_every_ms: NonZeroU64::new(2000).unwrap(),
        }
    }
}

impl Alerts {
    /// `hours` as minutes of the day `(start, end)`, end in `1..=1440`.
    pub(crate) fn hours_minutes(&self) -> Result<(u32, u32), String> {
        let minutes = |t: &str| -> Option<u32> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
        };
        let bad = || format!("{:?} is not HH:MM-HH:MM (e.g. \"06:00-22:00\")", self.hours);
        let (a, b) = self.hours.split_once('-').ok_or_else(bad)?;
        let (start, end) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if start == 1440 {
            return Err(bad());
        }
        Ok((start, if end == 0 { 1440 } else { end }))
    }
}

/// `[limits]`: bounds that span every listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limits {
    /// In-flight frame budget: bytes held for MLLP frames across all connections (beyond each
    /// connection's free 64 KiB, counted twice while a frame is sealed for its commit). At the
    /// limit, connections with large frames stop reading until there is room or their frame
    /// times out. Must be at least twice every listener's `max_frame_bytes`.
    #[serde(default = "defaults::inflight_frame_bytes")]
    pub(crate) inflight_frame_bytes: NonZeroUsize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { inflight_frame_bytes: defaults::inflight_frame_bytes() }
    }
}

mod defaults {
    use std::num::{NonZeroU64, NonZeroUsize};

    pub(crate) fn keepalive_secs() -> u16 {
        25
    }
    pub(crate) fn handshake_max_age_secs() -> u64 {
        // WireGuard re-handshakes every 2 minutes while traffic flows; 3 missed is down.
        180
    }
    pub(crate) fn wg_status_file() -> toml::Spanned<std::path::PathBuf> {
        toml::Spanned::new(0..0, super::WG_DUMP_FILE.into())
    }
    pub(crate) fn wg_poll_secs() -> NonZeroU64 {
        NonZeroU64::new(30).unwrap()
    }
    pub(crate) fn board_name() -> String {
        "board".into()
    }

    pub(crate) fn concurrency() -> NonZeroUsize {
        NonZeroUsize::new(4).unwrap()
    }
    pub(crate) fn request_max_entries() -> NonZeroUsize {
        NonZeroUsize::new(crate::fhir::bundle::BATCH_MAX_ENTRIES).unwrap()
    }
    pub(crate) fn transaction_max_entries() -> NonZeroUsize {
        NonZeroUsize::new(crate::fhir::bundle::TxLimits::MEDPLUM.max_entries).unwrap()
    }
    pub(crate) fn salesforce_max_reads() -> usize {
        10
    }
    pub(crate) fn reassert_hours() -> NonZeroU64 {
        NonZeroU64::new(24).unwrap()
    }
    pub(crate) fn transaction_max_updates() -> NonZeroUsize {
        NonZeroUsize::new(crate::fhir::bundle::TxLimits::MEDPLUM.max_updates).unwrap()
    }
    pub(crate) fn connect_timeout_secs() -> NonZeroU64 {
        NonZeroU64::new(5).unwrap()
    }
    pub(crate) fn read_timeout_secs() -> NonZeroU64 {
        NonZeroU64::new(30).unwrap()
    }
    pub(crate) fn timeout_secs() -> NonZeroU64 {
        NonZeroU64::new(60).unwrap()
    }
    pub(crate) fn backoff_base_ms() -> NonZeroU64 {
        NonZeroU64::new(500).unwrap()
    }
    pub(crate) fn backoff_max_secs() -> NonZeroU64 {
        NonZeroU64::new(300).unwrap()
    }
    pub(crate) fn yes() -> bool {
        true
    }

    pub(crate) fn max_bytes() -> u64 {
        8 << 30
    }
    pub(crate) fn dedup_window_secs() -> u64 {
        7 * 24 * 3600
    }
    pub(crate) fn retention_secs() -> u64 {
        7 * 24 * 3600
    }
    pub(crate) fn batch_max_messages() -> NonZeroUsize {
        NonZeroUsize::new(512).unwrap()
    }
    pub(crate) fn batch_max_bytes() -> NonZeroUsize {
        NonZeroUsize::new(16 << 20).unwrap()
    }
    pub(crate) fn allow() -> Vec<ipnet::IpNet> {
        vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
    }
    pub(crate) fn max_connections() -> NonZeroUsize {
        NonZeroUsize::new(128).unwrap()
    }
    pub(crate) fn max_connections_per_source() -> NonZeroUsize {
        NonZeroUsize::new(16).unwrap()
    }
    pub(crate) fn admin_max_connections() -> NonZeroUsize {
        NonZeroUsize::new(16).unwrap()
    }
    pub(crate) fn inflight_frame_bytes() -> NonZeroUsize {
        NonZeroUsize::new(64 << 20).unwrap()
    }
    pub(crate) fn idle_timeout_secs() -> u64 {
        600
    }
    pub(crate) fn frame_timeout_secs() -> u64 {
        30
    }
    /// 8 MiB.
    pub fn max_frame_bytes() -> NonZeroUsize {
        NonZeroUsize::new(8 << 20).unwrap()
    }
    pub(crate) fn versions() -> Vec<String> {
        ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"]
            .map(String::from)
            .to_vec()
    }
    pub(crate) fn processing_ids() -> Vec<String> {
        vec!["P".into()]
    }
    pub(crate) fn default_processing_id() -> String {
        "P".into()
    }
    pub(crate) fn message_types() -> Vec<String> {
        ["ADT", "ORU", "ORM", "OML", "OMG", "OUL", "SIU", "MDM", "VXU", "BAR", "DFT", "RDE", "RDS", "REF", "PPR"]
            .map(String::from)
            .to_vec()
    }
}

/// `[provision]`: which boxes a provisioned configuration is for, when it is valid, its
/// version, and the firewall's site networks. Checked by `gateway provision` before the file
/// is applied; kept in the live config so `check-config` and the receipt show it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Provision {
    /// Strictly increasing across the sticks a box accepts: an older or replayed one is refused.
    pub(crate) config_version: u64,
    /// Serial numbers this configuration is for.
    #[serde(default)]
    pub(crate) serials: Vec<String>,
    /// Board names (the `[board]` file's `name`; `board` without one) it is for.
    #[serde(default)]
    pub(crate) boards: Vec<String>,
    /// For every box of the site: must be said explicitly (and is signed like the rest).
    #[serde(default)]
    pub(crate) site_wide: bool,
    /// Validity window, RFC 3339 (`2026-12-01T00:00:00Z`).
    pub(crate) not_before: Spanned<String>,
    pub(crate) not_after: Spanned<String>,
    /// Networks allowed to send MLLP (nftables `hospital_nets`); empty: the shipped defaults.
    #[serde(default)]
    pub(crate) hospital_nets: Vec<IpNet>,
    /// Networks allowed SSH and the admin port (nftables `mgmt_nets`); empty: the shipped defaults.
    #[serde(default)]
    pub(crate) mgmt_nets: Vec<IpNet>,
    /// PEM certificate (chain) the cloud's CA issued for the box's TLS client CSR (from its
    /// receipt): installed beside the device key by `gateway provision`, which refuses it
    /// unless its public key is the device key's.
    pub(crate) client_certificate: Option<Spanned<String>>,
    /// `not_before`/`not_after`, parsed.
    #[serde(skip)]
    pub(crate) window: Option<(jiff::Timestamp, jiff::Timestamp)>,
}

/// `[wireguard]`: the tunnel to the central endpoint; the box's private key is generated on
/// the box at its first provisioning and never leaves it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WireGuard {
    /// The box's tunnel address(es), with prefix (`10.99.0.17/32`).
    pub(crate) address: Vec<IpNet>,
    /// The central peer's public key (base64 of 32 bytes, as `wg` prints it).
    pub(crate) peer_public_key: Spanned<String>,
    /// The central peer, `ip:port` (the firewall's `wg_endpoints` set holds its address).
    pub(crate) endpoint: std::net::SocketAddr,
    /// Networks reached through the tunnel (the cloud's); routed via `wg0`. Not a default
    /// route: the tunnel's own packets must still reach the endpoint.
    pub(crate) allowed_ips: Vec<IpNet>,
    #[serde(default = "defaults::keepalive_secs")]
    pub(crate) persistent_keepalive_secs: u16,
    /// A handshake older than this (or none) means the tunnel is down: the `tunnel_down`
    /// alert, `/metrics`, the status page.
    #[serde(default = "defaults::handshake_max_age_secs")]
    pub(crate) handshake_max_age_secs: u64,
    /// The `wg show wg0 dump` the gateway reads (written by the root-run
    /// `gateway-wg-dump.timer`, as reading wg0 needs CAP_NET_ADMIN); without it `wg` is run.
    #[serde(default = "defaults::wg_status_file")]
    pub(crate) status_file: Spanned<PathBuf>,
    /// How often the tunnel's state is read (the timer writes the dump every 30 s; tests
    /// shorten it).
    #[serde(default = "defaults::wg_poll_secs")]
    pub(crate) poll_secs: NonZeroU64,
}

/// Where `gateway-wg-dump.service` writes the tunnel's dump (`[wireguard] status_file`).
pub(crate) const WG_DUMP_FILE: &str = "/run/gateway-wg/wg0.dump";

/// Checks `[provision]` and `[wireguard]`.
fn validate_provision(
    config: &mut Config,
    error_at: &dyn Fn(Option<std::ops::Range<usize>>, Option<String>, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if let Some(p) = &mut config.provision {
        let parse = |s: &Spanned<String>, name: &str| {
            s.get_ref().parse::<jiff::Timestamp>().map_err(|e| {
                error_at(Some(s.span()), Some(format!("provision.{name}")), format!("not an RFC 3339 time: {e}"))
            })
        };
        let (from, until) = (parse(&p.not_before, "not_before")?, parse(&p.not_after, "not_after")?);
        if until <= from {
            return Err(error_at(
                Some(p.not_after.span()),
                Some("provision.not_after".into()),
                "must be after not_before".into(),
            ));
        }
        p.window = Some((from, until));
        let scoped = !p.serials.is_empty() || !p.boards.is_empty();
        if scoped == p.site_wide {
            return Err(error_at(
                None,
                Some("provision.site_wide".into()),
                "name `serials`/`boards`, or set `site_wide = true` (not both)".into(),
            ));
        }
    }
    if let Some(wg) = &mut config.wireguard {
        let status_file = &mut wg.status_file;
        if status_file.get_ref().is_relative() {
            *status_file.get_mut() = config.dir.join(status_file.get_ref());
        }
        // Absent is fine (the timer writes it); anything but a file is a mistake.
        if std::fs::metadata(status_file.get_ref()).is_ok_and(|m| !m.is_file()) {
            return Err(error_at(
                Some(status_file.span()).filter(|s| !s.is_empty()),
                Some("wireguard.status_file".into()),
                format!("{} is not a file", status_file.get_ref().display()),
            ));
        }
        let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, wg.peer_public_key.get_ref());
        if key.map(|k| k.len()) != Ok(32) {
            return Err(error_at(
                Some(wg.peer_public_key.span()),
                Some("wireguard.peer_public_key".into()),
                "not a WireGuard key (base64 of 32 bytes)".into(),
            ));
        }
        if wg.address.is_empty() || wg.allowed_ips.is_empty() {
            return Err(error_at(
                None,
                Some("wireguard".into()),
                "`address` and `allowed_ips` must not be empty".into(),
            ));
        }
        if wg.allowed_ips.iter().any(|n| n.prefix_len() == 0 || n.contains(&wg.endpoint.ip())) {
            return Err(error_at(
                None,
                Some("wireguard.allowed_ips".into()),
                "must name the cloud's networks: not a default route, not the endpoint's own address".into(),
            ));
        }
    }
    Ok(())
}

/// A configuration error, naming the file and, where known, line, column and field.
#[derive(Debug)]
pub struct ConfigError {
    pub(crate) file: PathBuf,
    pub(crate) line: Option<usize>,
    pub(crate) column: Option<usize>,
    pub(crate) field: Option<String>,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

impl Config {
    /// Loads, validates and resolves relative paths against the config file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.into(),
            line: None,
            column: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parses `text` as if read from `path`.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let error_at = |span: Option<std::ops::Range<usize>>, field: Option<String>, message: String| {
            let (line, column) = match span {
                Some(s) => {
                    let (l, c) = line_col(text, s.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            ConfigError { file: path.into(), line, column, field, message }
        };
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let mut message = e.message().trim().to_string();
            let field = e.span().and_then(|s| key_at(text, s.start)).or_else(|| field_in_message(&message));
            if let Some(hint) = e.span().and_then(|s| missing_prefix_hint(&text[s])) {
                message = hint;
            }
            error_at(e.span(), field, message)
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.dir = base.to_path_buf();
        config.file = path.to_path_buf();
        config.source = text.to_string();
        check_admin_exposure(&config.ops, text, &error_at)?;
        let resolve = |p: &mut Spanned<PathBuf>| {
            if p.get_ref().is_relative() {
                *p.get_mut() = base.join(p.get_ref());
            }
        };
        resolve(&mut config.store.path);
        resolve(&mut config.store.key_file);
        if let Some(profile) = &config.cloud.profile {
            if let Err(e) = profile.get_ref().parse::<crate::fhir::bundle::Profile>() {
                return Err(error_at(Some(profile.span()), Some("cloud.profile".into()), e.to_string()));
            }
        }
        // A client certificate delivered on the stick is installed by `gateway provision`
        // after this check: its files are the box's own, checked there and by check-config.
        let provisioned_cert = config.provision.as_ref().is_some_and(|p| p.client_certificate.is_some());
        validate_cloud(&mut config.cloud, base, provisioned_cert, &error_at)?;
        if let Err(e) = config.alerts.hours_minutes() {
            return Err(error_at(None, Some("alerts.hours".into()), e));
        }
        if config.alerts.disk_percent == 0 || config.alerts.disk_percent > 100 {
            return Err(error_at(None, Some("alerts.disk_percent".into()), "must be 1..=100".into()));
        }
        if let Some(url) = &config.alerts.webhook_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(error_at(
                    None,
                    Some("alerts.webhook_url".into()),
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        validate_provision(&mut config, &error_at)?;
        config.update.resolve(base);
        let board = &mut config.board;
        for p in [
            &mut board.file,
            &mut board.factory_config,
            &mut board.reset_marker,
            &mut board.update_marker,
            &mut board.provision_marker,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        if let Some(file) = &board.file {
            board.spec = BoardSpec::load(file.get_ref())?;
        }
        for (old, new) in deprecated_keys(text) {
            tracing::warn!(file = %path.display(), "config: `{old}` is deprecated, read as `{new}`; rename it");
        }
        if config.listeners.is_empty() {
            return Err(error_at(None, Some("listener".into()), "at least one [[listener]] is required".into()));
        }
        let mut names = std::collections::HashSet::new();
        for (i, l) in config.listeners.iter_mut().enumerate() {
            if !names.insert(l.name.clone()) {
                return Err(error_at(
                    None,
                    Some(format!("listener[{i}].name")),
                    format!("duplicate listener name {:?}", l.name),
                ));
            }
            if config.limits.inflight_frame_bytes.get() / 2 < l.max_frame_bytes.get() {
                return Err(error_at(
                    None,
                    Some("limits.inflight_frame_bytes".into()),
                    format!("must be at least twice listener {:?}'s max_frame_bytes ({}), or a frame at that size could never be held", l.name, l.max_frame_bytes),
                ));
            }
            if let Some(tls) = &mut l.tls {
                resolve(&mut tls.cert);
                resolve(&mut tls.key);
                if let Some(ca) = &mut tls.client_ca {
                    resolve(ca);
                }
                let files = [("cert", Some(&tls.cert)), ("key", Some(&tls.key)), ("client_ca", tls.client_ca.as_ref())];
                for (name, file) in files {
                    if let Some(file) = file {
                        if let Err(e) = std::fs::metadata(file.get_ref()) {
                            return Err(error_at(
                                Some(file.span()),
                                Some(format!("listener[{i}].tls.{name}")),
                                format!("cannot read {}: {e}", file.get_ref().display()),
                            ));
                        }
                    }
                }
            }
        }
        Ok(config)
    }
}

/// Keys read under an old name (serde `alias`) as `(section, old, new)`: each one a config
/// uses gets one WARN at load naming the new key.
pub const DEPRECATED_KEYS: &[(&str, &str, &str)] = &[
    // It limits the entries of one request (several lanes' batch bundles), not of a bundle.
    ("cloud", "batch_max_entries", "request_max_entries"),
];

/// The deprecated keys `text` uses, as dotted `(old, new)` names.
fn deprecated_keys(text: &str) -> Vec<(String, String)> {
    let Ok(doc) = text.parse::<toml::Table>() else { return Vec::new() };
    DEPRECATED_KEYS
        .iter()
        .filter(|(section, old, _)| doc.get(*section).and_then(|t| t.get(*old)).is_some())
        .map(|(section, old, new)| (format!("{section}.{old}"), format!("{section}.{new}")))
        .collect()
}

/// The FHIR R4 resource types (`[cloud.base_urls]` keys must name one).
const FHIR_R4_TYPES: &str = concat!(
    "Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse AuditEvent Basic ",
    "Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry ",
    "ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem Communication ",
    "CommunicationRequest CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage ",
    "CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric ",
    "DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis ",
    "Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence ",
    "EvidenceVariable ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group ",
    "GuidanceResponse HealthcareService ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation ",
    "ImplementationGuide InsurancePlan Invoice Library Linkage List Location Measure MeasureReport Media Medication ",
    "MedicationAdministration MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement ",
    "MedicinalProduct MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication ",
    "MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured MedicinalProductPackaged ",
    "MedicinalProductPharmaceutical MedicinalProductUndesirableEffect MessageDefinition MessageHeader ",
    "MolecularSequence NamingSystem NutritionOrder Observation ObservationDefinition OperationDefinition ",
    "OperationOutcome Organization OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation ",
    "Person PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse ",
    "RelatedPerson RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject ",
    "RiskAssessment RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition ",
    "StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid SubstancePolymer SubstanceProtein ",
    "SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task ",
    "TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription",
);

/// Whether `url` is an http(s) URL with a host, or (`path_ok`) a path on the auth's instance.
fn http_url(url: &str, path_ok: bool) -> bool {
    match url.parse::<ureq::http::Uri>() {
        Ok(uri) => match uri.scheme_str() {
            Some("http" | "https") => uri.host().is_some(),
            None => path_ok && url.starts_with('/'),
            _ => false,
        },
        Err(_) => false,
    }
}

/// Checks `[cloud.base_urls]`: FHIR type names, http(s) URLs, the salesforce profile only (a
/// generic transaction is all or nothing, so it cannot be split between servers).
fn validate_base_urls(
    cloud: &Cloud,
    error_at: &dyn Fn(Option<std::ops::Range<usize>>, Option<String>, String) -> ConfigError,
) -> Result<(), ConfigError> {
    for (kind, url) in &cloud.base_urls {
        let field = Some(format!("cloud.base_urls.{}", kind.get_ref()));
        if !FHIR_R4_TYPES.split_whitespace().any(|t| t == kind.get_ref()) {
            return Err(error_at(
                Some(kind.span()),
                field,
                format!("{:?} is not a FHIR R4 resource type", kind.get_ref()),
            ));
        }
        if cloud.profile() != crate::fhir::bundle::Profile::Salesforce {
            return Err(error_at(
                Some(kind.span()),
                field,
                "base_urls needs profile = \"salesforce\": a transaction cannot be split between servers".into(),
            ));
        }
        let u = url.get_ref();
        if !http_url(u, true) {
            return Err(error_at(Some(url.span()), field, format!("{u:?} is not an http(s) URL")));
        }
        if insecure_http(u) && !cloud.allow_insecure_http {
            return Err(error_at(
                Some(url.span()),
                field,
                "plain http:// sends patient data in clear text: use https://, or set `allow_insecure_http = true` in [cloud]".into(),
            ));
        }
    }
    Ok(())
}

/// Checks `[cloud]` and resolves its paths against the config folder.
fn validate_cloud(
    cloud: &mut Cloud,
    base: &Path,
    provisioned_cert: bool,
    error_at: &dyn Fn(Option<std::ops::Range<usize>>, Option<String>, String) -> ConfigError,
) -> Result<(), ConfigError> {
    for p in [&mut cloud.sink, &mut cloud.ca_file, &mut cloud.client_cert, &mut cloud.client_key].into_iter().flatten()
    {
        if p.get_ref().is_relative() {
            *p.get_mut() = base.join(p.get_ref());
        }
    }
    if let Some(url) = &cloud.url {
        let u = url.get_ref();
        if !http_url(u, true) {
            return Err(error_at(Some(url.span()), Some("cloud.url".into()), format!("{u:?} is not an http(s) URL")));
        }
        if insecure_http(u) && !cloud.allow_insecure_http {
            return Err(error_at(
                Some(url.span()),
                Some("cloud.url".into()),
                "plain http:// sends patient data in clear text: use https://, or set `allow_insecure_http = true` in [cloud] if the network path is protected otherwise".into(),
            ));
        }
        if let Some(sink) = &cloud.sink {
            return Err(error_at(
                Some(sink.span()),
                Some("cloud.sink".into()),
                "set either `url` (a FHIR server) or `sink` (a local folder), not both".into(),
            ));
        }
    }
    if let Some(proxy) = &cloud.proxy {
        if let Err(e) = ureq::Proxy::new(proxy.get_ref()) {
            return Err(error_at(Some(proxy.span()), Some("cloud.proxy".into()), format!("not a proxy URL: {e}")));
        }
    }
    match (&cloud.client_cert, &cloud.client_key) {
        (Some(c), None) => {
            return Err(error_at(
                Some(c.span()),
                Some("cloud.client_key".into()),
                "client_cert needs client_key".into(),
            ))
        }
        (None, Some(k)) => {
            return Err(error_at(
                Some(k.span()),
                Some("cloud.client_cert".into()),
                "client_key needs client_cert".into(),
            ))
        }
        _ => {}
    }
    let mut files = vec![("ca_file", &cloud.ca_file)];
    if !provisioned_cert {
        files.extend([("client_cert", &cloud.client_cert), ("client_key", &cloud.client_key)]);
    }
    for (name, file) in files {
        if let Some(file) = file {
            if let Err(e) = std::fs::metadata(file.get_ref()) {
                return Err(error_at(
                    Some(file.span()),
                    Some(format!("cloud.{name}")),
                    format!("cannot read {}: {e}", file.get_ref().display()),
                ));
            }
        }
    }
    if cloud.timeout_secs < cloud.connect_timeout_secs {
        return Err(error_at(None, Some("cloud.timeout_secs".into()), "must be at least connect_timeout_secs".into()));
    }
    validate_base_urls(cloud, error_at)
}

/// True for an `http://` URL whose host is not loopback.
fn insecure_http(url: &str) -> bool {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else { return false };
    if uri.scheme_str() != Some("http") {
        return false;
    }
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback =
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// The admin endpoint serves `/metrics` and health without TLS or a token: on a non-loopback
/// address only with `admin_exposed = "firewalled"`.
fn check_admin_exposure(
    ops: &Ops,
    text: &str,
    error_at: &dyn Fn(Option<std::ops::Range<usize>>, Option<String>, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if let Some(exposed) = &ops.admin_exposed {
        if exposed.get_ref() != ADMIN_FIREWALLED {
            return Err(error_at(
                Some(exposed.span()),
                Some("ops.admin_exposed".into()),
                format!("the only value is \"{ADMIN_FIREWALLED}\" (a firewall admits only the management network)"),
            ));
        }
    }
    let Some(bind) = ops.admin_bind else { return Ok(()) };
    if bind.ip().is_loopback() || ops.admin_exposed.is_some() {
        return Ok(());
    }
    Err(error_at(
        span_of(text, &["ops", "admin_bind"]),
        Some("ops.admin_bind".into()),
        format!(
            "{bind} is not a loopback address and the admin endpoint has no TLS or token: bind it to 127.0.0.1, or set `admin_exposed = \"{ADMIN_FIREWALLED}\"` in [ops] if a firewall admits only the management network"
        ),
    ))
}

/// An address where a network (`addr/prefix`) belongs: the hint ipnet's "invalid IP address
/// syntax" does not give. `value` is the TOML text the error points at.
fn missing_prefix_hint(value: &str) -> Option<String> {
    let bare = value.trim().trim_matches(|c| c == '"' || c == '\'');
    let ip: std::net::IpAddr = bare.parse().ok()?;
    let example = if ip.is_ipv4() { format!("{bare}/16") } else { format!("{bare}/64") };
    Some(format!(
        "{bare:?} is an address, not a network: missing /prefix, e.g. {example} (or {bare}/{} for this one address)",
        if ip.is_ipv4() { 32 } else { 128 }
    ))
}

/// The span of the value at `path` (table names and keys; a number selects an element of an
/// array of tables, `listener`, `0`, `tls`), for errors found after parsing.
pub(crate) fn span_of(text: &str, path: &[&str]) -> Option<std::ops::Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut span = root.span();
    let mut table: &DeTable<'_> = root.get_ref();
    let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
    for step in path {
        let value = match array.take() {
            Some(items) => items.get(step.parse::<usize>().ok()?)?,
            None => table.iter().find(|(k, _)| k.get_ref().as_ref() == *step).map(|(_, v)| v)?,
        };
        span = value.span();
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            DeValue::Array(items) => array = Some(items.as_ref()),
            _ => {}
        }
    }
    Some(span)
}

/// The dotted key (`listener.bind`) of the `key = value` line holding `offset`, qualified by
/// the nearest table header above it.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let table = text[..start].lines().rev().map(str::trim).find(|l| l.starts_with('['));
    Some(match table {
        Some(t) => format!("{}.{key}", t.trim_matches(|c| c == '[' || c == ']')),
        None => key.to_string(),
    })
}

/// serde names the offending field in backticks ("missing field `store`"); surface it.
fn field_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[store]
path = "var/j.db"
key_file = "/abs/j.key"

[[listener]]
name = "adt"
bind = "127.0.0.1:2575"
"#;

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let c = Config::parse(MINIMAL, Path::new("/etc/gw/gateway.toml")).unwrap();
        assert_eq!(c.store.path.get_ref(), Path::new("/etc/gw/var/j.db"));
        assert_eq!(c.store.key_file.get_ref(), Path::new("/abs/j.key"));
        let l = &c.listeners[0];
        assert_eq!(l.max_frame_bytes.get(), 8 * 1024 * 1024);
        assert_eq!(l.accept.processing_ids, vec!["P"]);
        assert!(l.allow.iter().any(|n| n.contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap())));
        assert_eq!(c.ops.admin_bind, Some("127.0.0.1:8575".parse().unwrap()));
        assert_eq!((l.max_connections.get(), l.max_connections_per_source.get()), (128, 16));
        assert_eq!(c.limits.inflight_frame_bytes.get(), 64 << 20);
        assert_eq!(c.ops.admin_max_connections.get(), 16);
    }

    #[test]
    fn transaction_limits_default_to_what_medplum_accepts() {
        use crate::fhir::bundle::TxLimits;
        let cloud = "\n[cloud]\nurl = \"https://fhir.example/r4\"\n";
        let c = Config::parse(&format!("{MINIMAL}{cloud}"), Path::new("gw.toml")).unwrap();
        assert_eq!(c.cloud.transaction_limits(), TxLimits { max_entries: 8, max_updates: 50 });
        let text = format!("{MINIMAL}{cloud}transaction_max_entries = 100\ntransaction_max_updates = 20\n");
        let c = Config::parse(&text, Path::new("gw.toml")).unwrap();
        assert_eq!(c.cloud.transaction_limits(), TxLimits { max_entries: 100, max_updates: 20 });
        assert!(Config::parse(&format!("{MINIMAL}{cloud}transaction_max_entries = 0\n"), Path::new("gw.toml")).is_err());
        // The local sink takes any transaction.
        let c = Config::parse(MINIMAL, Path::new("gw.toml")).unwrap();
        assert_eq!(c.cloud.transaction_limits(), TxLimits::NONE);
    }

    #[test]
    fn a_frame_budget_smaller_than_two_frames_is_refused() {
        let text = format!("{MINIMAL}max_frame_bytes = 1000\n\n[limits]\ninflight_frame_bytes = 1999\n");
        let e = Config::parse(&text, Path::new("gw.toml")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limits.inflight_frame_bytes"), "{e}");
        let text = text.replace("1999", "2000");
        assert!(Config::parse(&text, Path::new("gw.toml")).is_ok());
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = MINIMAL.replace("bind = \"127.0.0.1:2575\"", "bind = \"127.0.0.1:2575\"\nmax_connections = 0");
        let e = Config::parse(&text, Path::new("site.toml")).unwrap_err();
        assert_eq!(e.file, Path::new("site.toml"));
        assert_eq!(e.line, Some(9), "{e}");
        assert!(e.to_string().starts_with("site.toml:9:"), "{e}");
        assert_eq!(e.field.as_deref(), Some("listener.max_connections"), "{e}");

        let text = MINIMAL.replace("name = \"adt\"", "name = \"adt\"\nbogus = 1");
        let e = Config::parse(&text, Path::new("site.toml")).unwrap_err();
        assert_eq!(e.line, Some(8));
        assert_eq!(e.field.as_deref(), Some("listener.bogus"), "{e}");

        let e = Config::parse("[store]\npath = \"x\"\n", Path::new("a.toml")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("key_file"), "{e}");
    }

    #[test]
    fn alerts_have_defaults_and_their_hours_and_webhook_are_checked() {
        let c = Config::parse(MINIMAL, Path::new("gw.toml")).unwrap();
        assert_eq!(c.alerts.hours_minutes(), Ok((0, 1440)));
        assert_eq!((c.alerts.silence_secs, c.alerts.disk_percent), (1800, 80));
        let with = |alerts: &str| Config::parse(&format!("{MINIMAL}[alerts]\n{alerts}\n"), Path::new("gw.toml"));
        let c = with("hours = \"22:00-06:00\"\nsilence_secs = 60").unwrap();
        assert_eq!((c.alerts.hours_minutes(), c.alerts.silence_secs), (Ok((1320, 360)), 60));
        for bad in ["hours = \"6-22\"", "hours = \"06:00-25:00\"", "hours = \"24:00-06:00\""] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("alerts.hours"), "{bad}: {e}");
        }
        assert_eq!(with("webhook_url = \"ftp://x\"").unwrap_err().field.as_deref(), Some("alerts.webhook_url"));
        assert_eq!(with("disk_percent = 0").unwrap_err().field.as_deref(), Some("alerts.disk_percent"));
        assert_eq!(with("bogus = 1").unwrap_err().field.as_deref(), Some("alerts.bogus"));
    }

    #[test]
    fn the_tunnel_status_file_defaults_resolves_and_must_be_a_file() {
        let wg = "[wireguard]\naddress = [\"10.99.0.17/32\"]\npeer_public_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\nendpoint = \"203.0.113.5:51820\"\nallowed_ips = [\"10.100.0.0/16\"]\n";
        let c = Config::parse(&format!("{MINIMAL}{wg}"), Path::new("/etc/gw/gateway.toml")).unwrap();
        let w = c.wireguard.unwrap();
        assert_eq!((w.status_file.get_ref().as_path(), w.poll_secs.get()), (Path::new(WG_DUMP_FILE), 30));
        let c =
            Config::parse(&format!("{MINIMAL}{wg}status_file = \"run/wg0.dump\"\n"), Path::new("/etc/gw/gateway.toml"))
                .unwrap();
        assert_eq!(c.wireguard.unwrap().status_file.get_ref(), Path::new("/etc/gw/run/wg0.dump"));
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{MINIMAL}{wg}status_file = \"{}\"\n", dir.path().display());
        let e = Config::parse(&text, Path::new("gw.toml")).unwrap_err();
        assert_eq!((e.field.as_deref(), e.line), (Some("wireguard.status_file"), Some(14)), "{e}");
    }

    #[test]
    fn a_client_certificate_on_the_stick_defers_the_check_of_the_cloud_client_files() {
        let cloud = "[cloud]\nclient_cert = \"keys/tls-client.crt\"\nclient_key = \"keys/tls-client.key\"\n";
        let e = Config::parse(&format!("{MINIMAL}{cloud}"), Path::new("/nonexistent/gw.toml")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cloud.client_cert"), "{e}");
        let provision = "[provision]\nconfig_version = 1\nsite_wide = true\nnot_before = \"2026-01-01T00:00:00Z\"\nnot_after = \"2027-01-01T00:00:00Z\"\nclient_certificate = \"PEM\"\n";
        let c = Config::parse(&format!("{MINIMAL}{cloud}{provision}"), Path::new("/nonexistent/gw.toml")).unwrap();
        assert_eq!(c.cloud.client_key.unwrap().get_ref(), Path::new("/nonexistent/keys/tls-client.key"));
    }

    #[test]
    fn missing_tls_file_is_reported_with_its_field() {
        let text = format!("{MINIMAL}[listener.tls]\ncert = \"nope.pem\"\nkey = \"nope.key\"\n");
        let e = Config::parse(&text, Path::new("/nonexistent/gw.toml")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("listener[0].tls.cert"));
        assert_eq!(e.line, Some(10), "{e}");
    }

    #[test]
    fn shipped_default_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.listeners[0].bind, "127.0.0.1:2575".parse().unwrap());
        assert_eq!(c.ops.admin_bind, Some("127.0.0.1:8575".parse().unwrap()));
    }

    /// The image's config: every path the gateway writes is under the unit's StateDirectory
    /// (the only writable place on the read-only root), and MLLP listens on the LAN.
    #[test]
    fn shipped_appliance_config_writes_only_under_var_lib_gateway() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/appliance.toml");
        let c = Config::load(&path).unwrap();
        let state = Path::new("/var/lib/gateway");
        assert!(c.store.path.get_ref().starts_with(state));
        assert!(c.store.key_file.get_ref().starts_with(state));
        assert!(c.cloud.sink.as_ref().is_some_and(|s| s.get_ref().starts_with(state)));
        assert!(c.listeners[0].bind.ip().is_unspecified());
        assert!(!c.listeners[0].allow.iter().any(|n| n.prefix_len() == 0), "no allow-all");
    }

    /// Parses `text` and returns what it logged.
    fn parse_logged(text: &str) -> (Result<Config, ConfigError>, String) {
        crate::log_limit::captured(|| Config::parse(text, Path::new("gw.toml")))
    }

    #[test]
    fn the_old_name_of_request_max_entries_still_loads_with_one_warning() {
        let (c, log) = parse_logged(&format!(
            "{MINIMAL}
[cloud]
batch_max_entries = 7
"
        ));
        assert_eq!(c.unwrap().cloud.request_max_entries.get(), 7);
        assert_eq!(log.matches("WARN").count(), 1, "{log}");
        assert!(log.contains("`cloud.batch_max_entries` is deprecated, read as `cloud.request_max_entries`"), "{log}");

        let (c, log) = parse_logged(&format!(
            "{MINIMAL}
[cloud]
request_max_entries = 7
"
        ));
        assert_eq!(c.unwrap().cloud.request_max_entries.get(), 7);
        assert!(!log.contains("WARN"), "{log}");

        let both = format!(
            "{MINIMAL}
[cloud]
request_max_entries = 7
batch_max_entries = 8
"
        );
        let e = Config::parse(&both, Path::new("gw.toml")).unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
    }

    #[test]
    fn cloud_auth_kinds_parse_with_defaults() {
        #[derive(Deserialize)]
        struct Wrap {
            auth: AuthConfig,
        }
        let parse = |s: &str| toml::from_str::<Wrap>(s).map(|w| w.auth);
        assert_eq!(parse("[auth]\nkind = \"none\"").unwrap(), AuthConfig::None);
        assert_eq!(
            parse("[auth]\nkind = \"bearer\"\ntoken_file = \"t\"").unwrap(),
            AuthConfig::Bearer { token_file: "t".into() }
        );
        let smart = parse(
            "[auth]\nkind = \"smart\"\ntoken_url = \"https://a/t\"\nclient_id = \"c\"\nkey_file = \"k\"\nalg = \"ES384\"\nkid = \"1\"",
        )
        .unwrap();
        assert!(
            matches!(smart, AuthConfig::Smart { alg: SmartAlg::ES384, ref scope, .. } if scope == "system/*.write")
        );
        let sf = parse(
            "[auth]\nkind = \"salesforce\"\nlogin_url = \"https://login.salesforce.com\"\nconsumer_key = \"c\"\nuser = \"u\"\nkey_file = \"k\"",
        )
        .unwrap();
        assert!(matches!(sf, AuthConfig::Salesforce { token_lifetime_secs: 1800, .. }));
        assert!(parse("[auth]\nkind = \"bearer\"\ntoken_file = \"t\"\nbogus = 1").is_err());
        assert!(parse("[auth]\nkind = \"smart\"\ntoken_url = \"https://a/t\"\nclient_id = \"c\"\nkey_file = \"k\"\nalg = \"HS256\"\nkid = \"1\"").is_err());
        assert!(parse("[auth]\nkind = \"basic\"").is_err());
    }

    #[test]
    fn a_board_file_names_its_wiring() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("board.toml"),
            "name = \"test\"\n[led]\nchip = \"gpiochip1\"\nline = 4\nactive_low = true\n[button]\ninput_file = \"x/value\"\nactive_low = true\n",
        )
        .unwrap();
        let text = format!("{MINIMAL}\n[board]\nfile = \"board.toml\"\n");
        let c = Config::parse(&text, &dir.path().join("gateway.toml")).unwrap();
        assert_eq!(c.board.spec.name, "test");
        assert_eq!(
            c.board.spec.led.wiring(),
            LedWiring::Gpio { chip: "/dev/gpiochip1".into(), line: 4, active_low: true }
        );
        assert_eq!(
            c.board.spec.button.wiring(),
            ButtonWiring::File(dir.path().join("x/value")),
            "relative to the board file"
        );
        assert!(c.board.spec.button.active_low);
        // No [board]: simulated.
        let c = Config::parse(MINIMAL, Path::new("/etc/gw/gateway.toml")).unwrap();
        assert_eq!(c.board.spec.led.wiring(), LedWiring::Simulated);
        assert_eq!(c.board.spec.button.wiring(), ButtonWiring::Simulated);
        assert_eq!(c.board.reset_marker_path(&c.store), Path::new("/etc/gw/var/factory-reset-requested"));
    }

    #[test]
    fn board_file_errors_name_file_line_and_field() {
        let path = Path::new("/etc/gw/board.toml");
        let cases = [
            ("[led]\nsysfs = \"a\"\nchip = \"gpiochip0\"\nline = 1\n", "board.toml:3:8: field `led.chip`: set either"),
            ("[led]\nchip = \"gpiochip0\"\n", "board.toml:2:8: field `led.line`: `chip` needs `line`"),
            ("[button]\nline = 3\n", "board.toml:2:8: field `button.chip`"),
            ("[led]\nsysfs = \"../x\"\n", "board.toml:2:9: field `led.sysfs`"),
            ("[led]\nsysfs = \"x\"\nactive_low = true\n", "board.toml:3:14: field `led.active_low`"),
            ("[button]\nlnie = 3\n", "board.toml:2:1: field `button.lnie`: unknown field"),
            ("[led]\nline = \"five\"\n", "board.toml:2:8: field `led.line`"),
        ];
        for (text, want) in cases {
            let e = BoardSpec::parse(text, path).unwrap_err().to_string();
            assert!(e.starts_with("/etc/gw/") && e.contains(want), "{text:?}: {e}");
        }
        let e = Config::parse(
            &format!("{MINIMAL}\n[board]\nfile = \"missing.toml\"\n"),
            Path::new("/nonexistent/gateway.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/nonexistent/missing.toml: cannot read the board file"), "{e}");
    }

    #[test]
    fn the_shipped_board_files_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/boards");
        let sim = BoardSpec::load(&dir.join("sim.toml")).unwrap();
        assert_eq!((sim.led.wiring(), sim.button.wiring()), (LedWiring::Simulated, ButtonWiring::Simulated));
        let apu2 = BoardSpec::load(&dir.join("apu2.toml")).unwrap();
        assert_eq!(apu2.led.wiring(), LedWiring::Sysfs("apu2:green:led1".into()));
        assert_eq!(apu2.button.wiring(), ButtonWiring::Gpio { chip: "/dev/gpiochip0".into(), line: 5 });
    }
}
