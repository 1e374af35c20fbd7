//! The `gateway` command: the daemon and the tools around it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gateway::config::Config;

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
    },
    /// Check a configuration file and exit.
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
        /// Prefix of the control IDs (make it unique per run to avoid duplicate detection).
        #[arg(long, default_value = "LG")]
        run_id: String,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    gateway::ops::logging::init();
    let result = match cli.command {
        Command::Run { config } => Config::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|c| runtime()?.block_on(gateway::daemon::run(c))),
        Command::CheckConfig { config } => Config::load(&config).map(|_| println!("{}: ok", config.display())).map_err(Into::into),
        Command::Loadgen { addr, connections, messages, run_id } => runtime().and_then(|rt| {
            let report = rt.block_on(gateway::loadgen::run(addr, connections, messages, &run_id))?;
            println!("{report}");
            Ok(())
        }),
        Command::BenchCeiling { path, batch, messages, payload_bytes } => {
            gateway::bench::sqlite_ceiling(&path, batch, messages, payload_bytes).map(|rate| {
                println!("batch={batch} messages={messages} rows_per_s={rate:.0}");
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
