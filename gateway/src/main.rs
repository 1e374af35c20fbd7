//! The `gateway` command: the daemon and the tools around it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gateway::config::Config;

// The converter and the JSON it builds allocate many small objects; mimalloc handles that
// workload markedly better than the system allocator (see the convert benchmark).
#[global_allocator]
static ALLOC: gateway_heap::Counted = gateway_heap::Counted;

#[derive(Parser)]
#[command(name = "gateway", version, about = "HL7 v2 MLLP edge gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway daemon.
    Run {
        #[arg(long, default_value = "/etc/gateway/gateway.toml")]
        config: PathBuf,
        /// Recovery after a lost key file: keep (or create) the key file on disk and move
        /// every undelivered message that does not decrypt under it to dead letters (audited,
        /// one WARN line). Without it the gateway refuses to start in that case.
        #[arg(long)]
        discard_undecryptable: bool,
    },
    /// Boot health gate: exits 0 once the configuration is valid, the journal opens
    /// (read-only) and the running daemon's admin `/healthz` and MLLP ports answer; retries
    /// until --timeout. An unreachable cloud does not fail it.
    Health {
        #[arg(long, default_value = "/etc/gateway/gateway.toml")]
        config: PathBuf,
        /// Seconds to keep retrying.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Print the running daemon's status page as text (fetches /status.json from its admin
    /// endpoint); exits non-zero when the daemon does not answer.
    Status {
        #[arg(long, default_value = "/etc/gateway/gateway.toml")]
        config: PathBuf,
    },
    /// Check a configuration file as `run` would (files, permissions, time zone, auth, unsafe
    /// settings) and exit: `ok`, or every problem with its file and line.
    CheckConfig {
        #[arg(long, default_value = "/etc/gateway/gateway.toml")]
        config: PathBuf,
    },
    /// Send synthetic ADT messages over MLLP and report throughput and ACK latency.
    Loadgen {
        #[arg(long, default_value = "127.0.0.1:2575")]
        addr: SocketAddr,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Messages per connection.
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        /// Prefix of the control IDs; default: one unique to this run (a re-run with the same
        /// prefix only measures duplicate detection).
        #[arg(long)]
        run_id: Option<String>,
        /// The gateway's admin endpoint, to count duplicate ACKs (default: the MLLP host, port
        /// 8575); a warning and a failing exit when most ACKs were duplicates.
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Spread the messages over this many patients (default: one per connection).
        #[arg(long)]
        patients: Option<u64>,
    },
    /// Measure the raw SQLite commit ceiling (WAL, synchronous=FULL) on this disk.
    BenchCeiling {
        /// Scratch database (deleted and recreated).
        #[arg(long)]
        path: PathBuf,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value_t = 50_000)]
        messages: usize,
        #[arg(long, default_value_t = 1100)]
        payload_bytes: usize,
    },
    /// Print an HL7 v2 message (or batch file) as a tree of segment groups, fields and
    /// components.
    Parse {
        /// The message file; `-` reads standard input.
        file: PathBuf,
    },
    /// Convert an HL7 v2 message (or batch file) to FHIR R4 Bundles: JSON on stdout, the
    /// conversion report on stderr.
    Convert {
        /// Configuration file whose `[mapping]` section gives the site maps (none: UTC, no
        /// code maps), and whose `[cloud]` section the generic transactions are split for, as
        /// the daemon sends them (none: a server's default limits).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Bundle shape: `generic` (transactions) or `salesforce` (batches of 30).
        #[arg(long, default_value = "generic")]
        profile: gateway::fhir::bundle::Profile,
        /// The message file; `-` reads standard input.
        file: PathBuf,
    },
    /// Print the conversion report the daemon kept for a journal row (no patient data).
    Report {
        #[arg(long, default_value = "/etc/gateway/gateway.toml")]
        config: PathBuf,
        /// The journal sequence number (`gateway deadletter list` shows it; the INFO log line
        /// of a conversion with report items names it).
        seq: i64,
    },
    /// Dead letters: list, show, replay, purge, audit-verify. Each action on a dead letter is recorded in
    /// the store's append-only audit trail first.
    Deadletter {
        #[arg(long, default_value = "/etc/gateway/gateway.toml", global = true)]
        config: PathBuf,
        /// Who is acting (a claimed name), for the audit trail; default: $SUDO_USER, else
        /// $USER. The OS identity (uid, euid, login uid) is recorded beside it.
        #[arg(long, global = true)]
        actor: Option<String>,
        #[command(subcommand)]
        command: gateway::deadletter::Command,
    },
    /// USB provisioning: `gateway provision <mountpoint>` applies a signed stick (run by
    /// the appliance's udev rule); `keygen`, `sign`, `verify` are the provisioning office's tools.
    Provision(gateway::cli::ProvisionArgs),
    /// Signed A/B updates: keygen, sign-keyring, bundle (operator side); apply, status,
    /// install-keyring, boot-check, confirm (on the box). See docs/UPDATES.md.
    Update {
        #[arg(long, default_value = "/etc/gateway/gateway.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: gateway::cli::update::Command,
    },
    /// The embedded FHIR sink (the target when `[cloud] url` is absent): `export` writes its
    /// resources as NDJSON, one file per resource type.
    Sink {
        #[arg(long, default_value = "/etc/gateway/gateway.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: gateway::sink::export::Command,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    gateway::ops::logging::init();
    gateway::ops::logging::install_panic_hook();
    let result = match resolve_configs(cli.command) {
        Command::Run { config, discard_undecryptable } => {
            Config::load(&config).map_err(anyhow::Error::from).and_then(|c| {
                // A factory reset the reset button requested: restore the factory config first.
                let c = gateway::board::factory::apply_pending(&config, c);
                runtime()?.block_on(async {
                    // First of all: a SIGTERM during start-up must mean an orderly stop, not the default death.
                    let signals = gateway::daemon::signals()?;
                    gateway::daemon::run(c, discard_undecryptable, signals).await
                })
            })
        }
        Command::Health { config, timeout } => gateway::cli::health_command(
            &config,
            std::time::Duration::from_secs(timeout),
            &mut std::io::stdout().lock(),
        ),
        Command::Status { config } => gateway::cli::status_command(&config, &mut std::io::stdout().lock()),
        Command::CheckConfig { config } => gateway::cli::check_config_command(&config, &mut std::io::stdout().lock()),
        Command::Loadgen { addr, connections, messages, run_id, patients, admin } => runtime().and_then(|rt| {
            let run_id = run_id.unwrap_or_else(gateway::loadgen::unique_run_id);
            let admin = admin.unwrap_or(SocketAddr::new(addr.ip(), 8575));
            rt.block_on(async {
                let before = gateway::loadgen::duplicates_counter(admin).await;
                let mut report = gateway::loadgen::run(addr, connections, messages, patients, &run_id).await?;
                let after = gateway::loadgen::duplicates_counter(admin).await;
                report.duplicates = before.zip(after).map(|(b, a)| a.saturating_sub(b));
                println!("{report}");
                if report.duplicates.is_none() {
                    eprintln!("loadgen: could not read gateway_duplicates_total from http://{admin}/metrics (--admin); duplicate ACKs not counted");
                }
                if report.mostly_duplicates() {
                    anyhow::bail!(
                        "most ACKs were for messages the gateway already had (run id {run_id:?}): nothing new was stored, the rate is not an ingest rate; use a new --run-id"
                    );
                }
                anyhow::Ok(())
            })
        }),
        Command::BenchCeiling { path, batch, messages, payload_bytes } => {
            gateway::bench::sqlite_ceiling(&path, batch, messages, payload_bytes).map(|rate| {
                println!("batch={batch} messages={messages} rows_per_s={rate:.0}");
            })
        }
        Command::Parse { file } => {
            gateway::cli::parse_command(&file, &mut std::io::stdout().lock(), &mut std::io::stderr())
        }
        Command::Convert { config, profile, file } => gateway::cli::convert_command(
            config.as_deref(),
            profile,
            &file,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr(),
        ),
        Command::Report { config, seq } => gateway::cli::report_command(&config, seq, &mut std::io::stdout().lock()),
        Command::Deadletter { config, actor, command } => {
            gateway::deadletter::run(&config, actor, command, &mut std::io::stdout().lock())
        }
        Command::Update { config, command } => {
            gateway::cli::update::run(&config, command, &mut std::io::stdout().lock())
        }
        Command::Sink { config, command } => {
            gateway::sink::export::run(&config, command, &mut std::io::stdout().lock())
        }
        Command::Provision(args) => gateway::cli::provision_command(args, &mut std::io::stdout().lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {}", gateway::cli::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The shipped configuration's path (the default `--config`) means the provisioned
/// configuration once a stick was applied; any other path is kept.
fn resolve_configs(mut command: Command) -> Command {
    use gateway::provision::resolve_config;
    match &mut command {
        Command::Run { config, .. }
        | Command::Health { config, .. }
        | Command::CheckConfig { config }
        | Command::Report { config, .. }
        | Command::Deadletter { config, .. }
        | Command::Sink { config, .. } => *config = resolve_config(config),
        _ => {}
    }
    command
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
