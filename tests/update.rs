//! The operator's commands of signed updates end to end (issue 14): the real gateway binary
//! makes keys, a keyring and a bundle, and applies it to file-backed slots and a folder as
//! ESP through a config file's `[update]` section; `status` shows the outcome. The refusals
//! and power cuts are unit tests (gateway/src/update/tests.rs).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use gateway_tests::gateway_bin;

fn gateway(args: &[&str]) -> Output {
    Command::new(gateway_bin()).args(args).output().expect("run gateway")
}

fn ok(args: &[&str]) -> String {
    let out = gateway(args);
    assert!(out.status.success(), "gateway {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn keygen_keyring_bundle_apply_status() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let k = |n: &str| dir.join(n);

    ok(&["update", "keygen", "--out", p(&k("k1"))]);
    ok(&["update", "keygen", "--out", p(&k("k2"))]);
    let mode = std::fs::metadata(k("k1.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a private key readable by others");
    // keygen never overwrites a key.
    assert!(!gateway(&["update", "keygen", "--out", p(&k("k1"))]).status.success());

    ok(&[
        "update",
        "sign-keyring",
        "--keyring-version",
        "1",
        "--threshold",
        "2",
        "--pub",
        p(&k("k1.pub")),
        "--pub",
        p(&k("k2.pub")),
        "--key",
        p(&k("k1.key")),
        "--key",
        p(&k("k2.key")),
        "--out",
        p(&k("keyring.json")),
    ]);

    // The box: slots, an ESP with the running slot's entry, os-release, the kernel command line.
    std::fs::create_dir_all(dir.join("esp/loader/entries")).unwrap();
    std::fs::write(dir.join("esp/loader/entries/gateway-1.0.5-a.conf"), "version 1.0.5\n").unwrap();
    std::fs::write(dir.join("slot-a"), vec![0u8; 1 << 16]).unwrap();
    std::fs::write(dir.join("slot-b"), vec![0u8; 1 << 16]).unwrap();
    std::fs::write(dir.join("cmdline"), "root=PARTLABEL=rootfs-a ro\n").unwrap();
    std::fs::write(dir.join("os-release"), "IMAGE_VERSION=1.0.5\n").unwrap();
    std::fs::write(dir.join("rootfs.sqfs"), b"a root filesystem".repeat(1000)).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        "[store]\npath = \"var/j.db\"\nkey_file = \"var/j.key\"\n\n[[listener]]\nname = \"m\"\nbind = \"127.0.0.1:0\"\n\n\
         [board]\nupdate_marker = \"run/updating\"\n\n\
         [update]\ntrust_root = \"keyring.json\"\nboard = \"test\"\nstate_dir = \"state\"\nesp = \"esp\"\n\
         slot_a = \"slot-a\"\nslot_b = \"slot-b\"\ncmdline = \"cmdline\"\nos_release = \"os-release\"\n",
    )
    .unwrap();
    // The [update] section is part of the gateway's configuration.
    ok(&["check-config", "--config", p(&config)]);

    let (rootfs, keyring) = (dir.join("rootfs.sqfs"), dir.join("keyring.json"));
    let bundle = |version: &str, keys: &[&str], out: &str| {
        let mut args = vec![
            "update",
            "bundle",
            "--rootfs",
            p(&rootfs),
            "--version",
            version,
            "--board",
            "test",
            "--min-version",
            "1.0.0",
            "--expires",
            "2099-01-01T00:00:00Z",
            "--keyring",
            p(&keyring),
            "--out",
            out,
        ];
        for key in keys {
            args.extend(["--key", key]);
        }
        gateway(&args)
    };
    let good = dir.join("good.bundle");
    assert!(bundle("1.0.6", &[p(&k("k1.key")), p(&k("k2.key"))], p(&good)).status.success());
    let one = dir.join("one.bundle");
    assert!(bundle("1.0.6", &[p(&k("k1.key"))], p(&one)).status.success());

    let refused = gateway(&["update", "apply", "--config", p(&config), p(&one)]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("1 valid signature(s), 2 required"), "{err}");
    assert_eq!(std::fs::read(dir.join("slot-b")).unwrap(), vec![0u8; 1 << 16], "written before the checks");

    let out = ok(&["update", "apply", "--config", p(&config), p(&good)]);
    assert!(out.contains("version 1.0.6 written to slot b (entry gateway-1.0.6-b+3.conf)"), "{out}");
    assert!(dir.join("esp/loader/entries/gateway-1.0.6-b+3.conf").exists());
    assert!(!dir.join("run/updating").exists());
    let again = ok(&["update", "apply", "--skip-installed", "--config", p(&config), p(&good)]);
    assert!(again.contains("nothing to do"), "{again}");

    // Fell back to a: boot-check reports the rollback, status shows it.
    assert!(ok(&["update", "boot-check", "--config", p(&config)]).contains("rollback: 1.0.6 did not stay booted"));
    let status = ok(&["update", "status", "--config", p(&config)]);
    assert!(status.contains("running:   1.0.5 (slot a)"), "{status}");
    assert!(status.contains("applied:   1.0.6 to slot b"), "{status}");
    assert!(status.contains("rollbacks: 1 (last: 1.0.6 fell back to 1.0.5"), "{status}");
    assert!(status.contains("keyring:   version 1, threshold 2"), "{status}");
    assert!(status.contains("entry:     gateway-1.0.6-b+3.conf (slot b, 3 tries left)"), "{status}");
    // A blessed boot raises the floor.
    assert!(ok(&["update", "confirm", "--config", p(&config)]).contains("floor raised to 1.0.5"));
    assert!(ok(&["update", "status", "--config", p(&config)]).contains("floor:     1.0.5"));
}
