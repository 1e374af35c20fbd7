//! What the provisioned configuration makes of the network: the WireGuard tunnel as
//! systemd-networkd files, and the firewall's site sets as an nft script. Rendering is pure
//! (tested); installing runs `networkctl reload` and `nft -f`.
//!
//! `/etc` is read-only on the appliance, so the networkd files go to `/run/systemd/network`
//! (networkd reads it too); `gateway-network.service` renders them again from the live
//! configuration at every boot, before networkd starts.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use ipnet::IpNet;

use crate::config::{Config, Provision, WireGuard};

/// The tunnel interface the firewall names.
pub const INTERFACE: &str = "wg0";
pub const NETDEV_FILE: &str = "90-gateway-wg0.netdev";
pub const NETWORK_FILE: &str = "90-gateway-wg0.network";
pub const NFT_FILE: &str = "nftables-site.nft";

/// The `.netdev` of `wg0`: the box's key file and the central peer.
pub(crate) fn netdev(wg: &WireGuard, private_key_file: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Written by `gateway provision` from the provisioned configuration.");
    let _ = writeln!(s, "[NetDev]\nName={INTERFACE}\nKind=wireguard\n");
    let _ = writeln!(s, "[WireGuard]\nPrivateKeyFile={}\n", private_key_file.display());
    let _ = writeln!(s, "[WireGuardPeer]");
    let _ = writeln!(s, "PublicKey={}", wg.peer_public_key.get_ref());
    let _ = writeln!(s, "Endpoint={}", wg.endpoint);
    let _ = writeln!(s, "AllowedIPs={}", join(&wg.allowed_ips, ","));
    let _ = writeln!(s, "PersistentKeepalive={}", wg.persistent_keepalive_secs);
    s
}

/// The `.network` of `wg0`: its addresses, and a route through it to each allowed network
/// (the cloud), so upstream traffic takes the tunnel (the firewall lets nothing else out).
pub(crate) fn network(wg: &WireGuard) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Written by `gateway provision` from the provisioned configuration.");
    let _ = writeln!(s, "[Match]\nName={INTERFACE}\n\n[Network]");
    for a in &wg.address {
        let _ = writeln!(s, "Address={a}");
    }
    for net in &wg.allowed_ips {
        let _ = writeln!(s, "\n[Route]\nDestination={}", net.trunc());
    }
    s
}

fn join(nets: &[IpNet], sep: &str) -> String {
    nets.iter().map(|n| n.trunc().to_string()).collect::<Vec<_>>().join(sep)
}

/// The nft script that fills the firewall's sets from the site's networks; a set the
/// configuration leaves empty keeps the shipped elements.
pub(crate) fn nft_sets(provision: Option<&Provision>, wg: Option<&WireGuard>) -> String {
    let mut s = String::from("# Written by `gateway provision`: the site's networks (nft -f).\n");
    // Elements as nft writes them: prefixes for the interval sets, plain addresses for
    // wg_endpoints (no `flags interval`).
    let mut set = |name: &str, elements: Vec<(bool, String)>, keep_if_empty: bool| {
        if elements.is_empty() && keep_if_empty {
            return;
        }
        let (v4, v6): (Vec<_>, Vec<_>) = elements.into_iter().partition(|(is_v4, _)| *is_v4);
        for (suffix, elements) in [("4", v4), ("6", v6)] {
            let _ = writeln!(s, "flush set inet gateway {name}{suffix}");
            if !elements.is_empty() {
                let list: Vec<String> = elements.into_iter().map(|(_, e)| e).collect();
                let _ = writeln!(s, "add element inet gateway {name}{suffix} {{ {} }}", list.join(", "));
            }
        }
    };
    let nets = |nets: &[IpNet]| nets.iter().map(|n| (matches!(n, IpNet::V4(_)), n.trunc().to_string())).collect();
    set("hospital_nets", provision.map(|p| nets(&p.hospital_nets)).unwrap_or_default(), true);
    set("mgmt_nets", provision.map(|p| nets(&p.mgmt_nets)).unwrap_or_default(), true);
    let endpoints = wg.map(|w| vec![(w.endpoint.is_ipv4(), w.endpoint.ip().to_string())]).unwrap_or_default();
    // No tunnel: no endpoint may be reached.
    set("wg_endpoints", endpoints, false);
    s
}

/// Writes the networkd files (or removes them when the configuration has no tunnel) and the
/// nft script; `activate` then reloads networkd and loads the script.
pub(crate) fn install(
    config: &Config,
    networkd_dir: &Path,
    state_dir: &Path,
    key_file: &Path,
    activate: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(networkd_dir).with_context(|| format!("creating {}", networkd_dir.display()))?;
    let (netdev_path, network_path) = (networkd_dir.join(NETDEV_FILE), networkd_dir.join(NETWORK_FILE));
    match &config.wireguard {
        Some(wg) => {
            super::apply::write_atomic(&netdev_path, netdev(wg, key_file).as_bytes(), 0o644)?;
            super::apply::write_atomic(&network_path, network(wg).as_bytes(), 0o644)?;
        }
        None => {
            for p in [&netdev_path, &network_path] {
                match std::fs::remove_file(p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
        }
    }
    let nft_path = state_dir.join(NFT_FILE);
    super::apply::write_atomic(
        &nft_path,
        nft_sets(config.provision.as_ref(), config.wireguard.as_ref()).as_bytes(),
        0o644,
    )?;
    if activate {
        run("networkctl", &["reload"])?;
        run("nft", &["-f", &nft_path.display().to_string()])?;
    }
    Ok(())
}

pub(crate) fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status =
        std::process::Command::new(program).args(args).status().with_context(|| format!("running {program}"))?;
    anyhow::ensure!(status.success(), "{program} {} failed: {status}", args.join(" "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = r#"
[store]
path = "j.db"
key_file = "j.key"
[[listener]]
name = "mllp"
bind = "0.0.0.0:2575"
[provision]
config_version = 3
site_wide = true
not_before = "2026-01-01T00:00:00Z"
not_after = "2027-01-01T00:00:00Z"
hospital_nets = ["10.20.0.0/16", "fd00:20::/48"]
[wireguard]
address = ["10.99.0.17/32"]
peer_public_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
endpoint = "203.0.113.5:51820"
allowed_ips = ["10.100.0.0/16", "10.101.3.7/24"]
"#;
        Config::parse(text, Path::new("/x/gateway.toml")).unwrap()
    }

    #[test]
    fn networkd_files_name_the_peer_routes_and_key_file() {
        let c = config();
        let wg = c.wireguard.as_ref().unwrap();
        assert_eq!(
            netdev(wg, Path::new("/var/lib/gateway-provision/keys/wireguard.key")),
            "# Written by `gateway provision` from the provisioned configuration.\n\
             [NetDev]\nName=wg0\nKind=wireguard\n\n\
             [WireGuard]\nPrivateKeyFile=/var/lib/gateway-provision/keys/wireguard.key\n\n\
             [WireGuardPeer]\nPublicKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nEndpoint=203.0.113.5:51820\n\
             AllowedIPs=10.100.0.0/16,10.101.3.0/24\nPersistentKeepalive=25\n"
        );
        assert_eq!(
            network(wg),
            "# Written by `gateway provision` from the provisioned configuration.\n\
             [Match]\nName=wg0\n\n[Network]\nAddress=10.99.0.17/32\n\n\
             [Route]\nDestination=10.100.0.0/16\n\n[Route]\nDestination=10.101.3.0/24\n"
        );
    }

    #[test]
    fn nft_sets_are_filled_from_the_site_networks() {
        let c = config();
        assert_eq!(
            nft_sets(c.provision.as_ref(), c.wireguard.as_ref()),
            "# Written by `gateway provision`: the site's networks (nft -f).\n\
             flush set inet gateway hospital_nets4\n\
             add element inet gateway hospital_nets4 { 10.20.0.0/16 }\n\
             flush set inet gateway hospital_nets6\n\
             add element inet gateway hospital_nets6 { fd00:20::/48 }\n\
             flush set inet gateway wg_endpoints4\n\
             add element inet gateway wg_endpoints4 { 203.0.113.5 }\n\
             flush set inet gateway wg_endpoints6\n"
        );
        // No tunnel: the endpoint sets are emptied, the site sets left as shipped.
        let none = nft_sets(None, None);
        assert!(!none.contains("hospital_nets") && none.contains("flush set inet gateway wg_endpoints4"), "{none}");
    }

    /// The script must load on top of the shipped ruleset: `nft -c` (check only) where nft
    /// is installed (CI checks the ruleset with it too).
    #[test]
    fn nft_accepts_the_sets_on_the_shipped_ruleset() {
        let c = config();
        let shipped =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../image/nftables.conf")).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("all.nft");
        std::fs::write(&file, shipped + &nft_sets(c.provision.as_ref(), c.wireguard.as_ref())).unwrap();
        match std::process::Command::new("nft").arg("-c").arg("-f").arg(&file).output() {
            Ok(out) => assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("nft not run ({e}): the rendering is checked by the test above only"),
        }
    }

    #[test]
    fn a_default_route_through_the_tunnel_is_refused() {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/appliance.toml")).unwrap();
        let text = format!(
            "{text}\n[wireguard]\naddress = [\"10.99.0.17/32\"]\npeer_public_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\nendpoint = \"203.0.113.5:51820\"\nallowed_ips = [\"0.0.0.0/0\"]\n"
        );
        let e = Config::parse(&text, Path::new("/etc/gateway/gateway.toml")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("wireguard.allowed_ips"), "{e}");
    }
}
