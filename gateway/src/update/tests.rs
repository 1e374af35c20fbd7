//! The updater on file-backed slots: temp files as partitions, a temp folder as the ESP.

use std::path::{Path, PathBuf};

use super::apply::{apply_file, PowerCut};
use super::bundle::{self, BundleSpec};
use super::keyring::{self, Keyring, KeyringBody};
use super::keys::SigningKey;
use super::slots::{self, Slot};
use super::{boot, state, Refused, Version};
use crate::config::Update;

const RUNNING: &str = "1.0.10";
const RUNNING_ENTRY: &str = "gateway-1.0.10-a.conf";
const OLD_B_ENTRY: &str = "gateway-1.0.10-b+3.conf";
const BOARD: &str = "test-board";

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cfg: Update,
    /// k0, k1, k2 are in the keyring (threshold 2); k3 is not.
    keys: Vec<SigningKey>,
    rootfs: PathBuf,
    now: jiff::Timestamp,
}

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

fn keyring_of(keys: &[&SigningKey], version: u64, threshold: usize, revoked: Vec<String>) -> KeyringBody {
    KeyringBody { version, threshold, keys: keys.iter().map(|k| k.public()).collect(), revoked }
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_revoked(Vec::new())
    }

    /// The keyring revokes the keys of these indexes.
    fn with_revoked(revoked: Vec<usize>) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let keys: Vec<SigningKey> = (0..4)
            .map(|i| {
                let (private, _, _) = super::keys::keygen(&root.join(format!("k{i}"))).unwrap();
                SigningKey::load(&private).unwrap()
            })
            .collect();
        let revoked = revoked.iter().map(|&i| keys[i].public().id).collect();
        let body = keyring_of(&[&keys[0], &keys[1], &keys[2]], 1, 2, revoked);
        std::fs::write(root.join("keyring.json"), Keyring::sign_new(&body, &[]).unwrap().to_text()).unwrap();
        let esp = root.join("esp");
        std::fs::create_dir_all(esp.join("loader/entries")).unwrap();
        for (name, slot) in [(RUNNING_ENTRY, Slot::A), (OLD_B_ENTRY, Slot::B)] {
            std::fs::write(esp.join("loader/entries").join(name), slots::entry_text(&v(RUNNING), slot)).unwrap();
        }
        std::fs::write(root.join("slot-a"), vec![b'A'; 4 << 20]).unwrap();
        std::fs::write(root.join("slot-b"), vec![b'B'; 4 << 20]).unwrap();
        std::fs::write(root.join("cmdline"), "BOOT_IMAGE=/a/vmlinuz root=PARTLABEL=rootfs-a ro\n").unwrap();
        std::fs::write(root.join("os-release"), format!("ID=debian\nIMAGE_VERSION={RUNNING}\n")).unwrap();
        let cfg = Update {
            trust_root: root.join("keyring.json"),
            board: BOARD.into(),
            state_dir: root.join("state"),
            esp,
            slot_a: root.join("slot-a"),
            slot_b: root.join("slot-b"),
            cmdline: root.join("cmdline"),
            os_release: root.join("os-release"),
            boot_tries: 3,
        };
        state::set_floor(&cfg.state_dir, &v(RUNNING)).unwrap();
        // Two and a half chunks: several slot writes to cut power at.
        let rootfs = root.join("rootfs.sqfs");
        std::fs::write(&rootfs, (0..(5u32 << 19)).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        Fixture { _tmp: tmp, root, cfg, keys, rootfs, now }
    }

    fn spec(&self) -> BundleSpec<'_> {
        BundleSpec {
            rootfs: &self.rootfs,
            version: v("1.0.11"),
            board: BOARD.into(),
            min_version: v("1.0.0"),
            expires: "2027-01-01T00:00:00Z".parse().unwrap(),
            keyring_version: 1,
        }
    }

    /// A bundle of `spec`, signed by the keys of these indexes.
    fn bundle_with(&self, spec: BundleSpec<'_>, signers: &[usize]) -> PathBuf {
        let keys: Vec<SigningKey> = signers.iter().map(|&i| self.key(i)).collect();
        let out = self.root.join(format!("b-{}.bundle", rand_name()));
        bundle::make(&spec, &keys, &out).unwrap();
        out
    }

    fn bundle(&self) -> PathBuf {
        self.bundle_with(self.spec(), &[0, 1])
    }

    /// A copy of key `i` (loaded again from the file keygen wrote).
    fn key(&self, i: usize) -> SigningKey {
        SigningKey::load(&self.root.join(format!("k{i}.key"))).unwrap()
    }

    fn apply(&self, bundle: &Path) -> anyhow::Result<super::apply::Outcome> {
        apply_file(&self.cfg, bundle, Some(&self.root.join("run/updating")), self.now, &mut PowerCut::never())
    }

    fn entry_names(&self) -> Vec<String> {
        slots::entries(&self.cfg.esp).unwrap().into_iter().map(|e| e.file_name).collect()
    }

    /// The box still boots slot a as before, the floor unchanged.
    fn assert_old_slot_boots(&self) {
        let names = self.entry_names();
        assert!(names.contains(&RUNNING_ENTRY.to_string()), "{names:?}");
        assert!(names.iter().all(|n| n == RUNNING_ENTRY || n == OLD_B_ENTRY), "{names:?}");
        let a = std::fs::read_to_string(self.cfg.esp.join("loader/entries").join(RUNNING_ENTRY)).unwrap();
        assert_eq!(a, slots::entry_text(&v(RUNNING), Slot::A));
        assert_eq!(state::floor(&self.cfg.state_dir).unwrap(), Some(v(RUNNING)));
        assert_eq!(std::fs::read(&self.cfg.slot_a).unwrap(), vec![b'A'; 4 << 20]);
    }

    /// Refused before anything was written: slot b and the ESP as they were too.
    fn assert_untouched(&self) {
        self.assert_old_slot_boots();
        assert_eq!(self.entry_names(), vec![RUNNING_ENTRY.to_string(), OLD_B_ENTRY.to_string()]);
        assert_eq!(std::fs::read(&self.cfg.slot_b).unwrap(), vec![b'B'; 4 << 20]);
        assert!(state::applied(&self.cfg.state_dir).unwrap().is_none());
        assert!(!self.root.join("run/updating").exists());
    }
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

fn refusal(e: anyhow::Error) -> Refused {
    e.downcast::<Refused>().unwrap_or_else(|e| panic!("not a refusal: {e:#}"))
}

#[test]
fn a_good_bundle_goes_to_the_inactive_slot_with_a_counted_entry() {
    let fx = Fixture::new();
    let out = fx.apply(&fx.bundle()).unwrap();
    assert_eq!(out.slot, Slot::B);
    assert_eq!(out.entry, "gateway-1.0.11-b+3.conf");
    // The running slot's entry as it was; slot b's old entry replaced by the new one.
    assert_eq!(fx.entry_names(), vec![RUNNING_ENTRY.to_string(), "gateway-1.0.11-b+3.conf".to_string()]);
    let entry = std::fs::read_to_string(fx.cfg.esp.join("loader/entries/gateway-1.0.11-b+3.conf")).unwrap();
    assert!(entry.contains("root=PARTLABEL=rootfs-b") && entry.contains("version  1.0.11"), "{entry}");
    let rootfs = std::fs::read(&fx.rootfs).unwrap();
    assert_eq!(&std::fs::read(&fx.cfg.slot_b).unwrap()[..rootfs.len()], &rootfs[..]);
    assert_eq!(std::fs::read(&fx.cfg.slot_a).unwrap(), vec![b'A'; 4 << 20]);
    // The floor waits for a blessed boot; the applied version is recorded.
    assert_eq!(state::floor(&fx.cfg.state_dir).unwrap(), Some(v(RUNNING)));
    assert_eq!(state::applied(&fx.cfg.state_dir).unwrap().unwrap().version, v("1.0.11"));
    assert!(!fx.root.join("run/updating").exists(), "the update marker outlived the update");
    // No leftovers of the atomic writes.
    assert!(std::fs::read_dir(fx.cfg.esp.join("loader/entries")).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

#[test]
fn booted_from_b_the_update_goes_to_a() {
    let fx = Fixture::new();
    std::fs::write(&fx.cfg.cmdline, "root=PARTLABEL=rootfs-b ro\n").unwrap();
    std::fs::remove_file(fx.cfg.esp.join("loader/entries").join(RUNNING_ENTRY)).unwrap();
    let out = fx.apply(&fx.bundle()).unwrap();
    assert_eq!(out.slot, Slot::A);
    assert_eq!(fx.entry_names(), vec![OLD_B_ENTRY.to_string(), "gateway-1.0.11-a+3.conf".to_string()]);
}

#[test]
fn a_tampered_payload_is_refused_and_never_gets_an_entry() {
    let fx = Fixture::new();
    let path = fx.bundle();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(refusal(fx.apply(&path).unwrap_err()), Refused::PayloadHash(_)));
    // Slot b was written (its hash is known only then), but nothing boots it.
    fx.assert_old_slot_boots();
    assert_eq!(fx.entry_names(), vec![RUNNING_ENTRY.to_string()]);
    assert!(state::applied(&fx.cfg.state_dir).unwrap().is_none());
}

#[test]
fn a_tampered_manifest_is_refused_before_anything_is_written() {
    let fx = Fixture::new();
    let path = fx.bundle();
    let mut bytes = std::fs::read(&path).unwrap();
    // Same length, another version: the signatures no longer hold.
    let at = bytes.windows(8).position(|w| w == b"\"1.0.11\"").unwrap();
    bytes[at + 6] = b'9';
    std::fs::write(&path, bytes).unwrap();
    let r = refusal(fx.apply(&path).unwrap_err());
    assert!(matches!(r, Refused::Signatures { valid: 0, required: 2, bad: 2, .. }), "{r}");
    fx.assert_untouched();
}

#[test]
fn a_key_outside_the_keyring_does_not_count() {
    let fx = Fixture::new();
    let path = fx.bundle_with(fx.spec(), &[0, 3]);
    let r = refusal(fx.apply(&path).unwrap_err());
    assert!(matches!(r, Refused::Signatures { valid: 1, required: 2, unknown: 1, .. }), "{r}");
    fx.assert_untouched();
}

#[test]
fn one_signature_is_below_the_threshold_and_a_repeated_one_counts_once() {
    let fx = Fixture::new();
    let r = refusal(fx.apply(&fx.bundle_with(fx.spec(), &[1])).unwrap_err());
    assert!(matches!(r, Refused::Signatures { valid: 1, required: 2, .. }), "{r}");
    let r = refusal(fx.apply(&fx.bundle_with(fx.spec(), &[1, 1])).unwrap_err());
    assert!(matches!(r, Refused::Signatures { valid: 1, required: 2, .. }), "{r}");
    fx.assert_untouched();
}

#[test]
fn a_revoked_keys_signature_is_refused() {
    let fx = Fixture::with_revoked(vec![2]);
    let r = refusal(fx.apply(&fx.bundle_with(fx.spec(), &[0, 2])).unwrap_err());
    assert!(matches!(r, Refused::Signatures { valid: 1, required: 2, revoked: 1, .. }), "{r}");
    fx.assert_untouched();
    fx.apply(&fx.bundle_with(fx.spec(), &[0, 1])).unwrap();
}

#[test]
fn a_downgrade_below_the_floor_is_refused() {
    let fx = Fixture::new();
    let spec = BundleSpec { version: v("1.0.9"), ..fx.spec() };
    let r = refusal(fx.apply(&fx.bundle_with(spec, &[0, 1])).unwrap_err());
    assert!(matches!(r, Refused::Downgrade { .. }), "{r}");
    fx.assert_untouched();
}

#[test]
fn without_a_floor_yet_the_running_version_is_the_floor() {
    let fx = Fixture::new();
    std::fs::remove_file(fx.cfg.state_dir.join("floor")).unwrap();
    let spec = BundleSpec { version: v("1.0.9"), ..fx.spec() };
    let r = refusal(fx.apply(&fx.bundle_with(spec, &[0, 1])).unwrap_err());
    assert!(matches!(r, Refused::Downgrade { .. }), "{r}");
}

#[test]
fn a_bundle_for_another_board_is_refused() {
    let fx = Fixture::new();
    let spec = BundleSpec { board: "other-board".into(), ..fx.spec() };
    let r = refusal(fx.apply(&fx.bundle_with(spec, &[0, 1])).unwrap_err());
    assert!(matches!(r, Refused::WrongBoard { .. }), "{r}");
    fx.assert_untouched();
}

#[test]
fn an_expired_bundle_is_refused() {
    let fx = Fixture::new();
    let spec = BundleSpec { expires: "2026-11-30T23:59:59Z".parse().unwrap(), ..fx.spec() };
    let r = refusal(fx.apply(&fx.bundle_with(spec, &[0, 1])).unwrap_err());
    assert!(matches!(r, Refused::Expired(_)), "{r}");
    fx.assert_untouched();
}

#[test]
fn a_bundle_needing_a_newer_running_version_is_refused() {
    let fx = Fixture::new();
    let spec = BundleSpec { min_version: v("1.0.11"), ..fx.spec() };
    let r = refusal(fx.apply(&fx.bundle_with(spec, &[0, 1])).unwrap_err());
    assert!(matches!(r, Refused::TooOld { .. }), "{r}");
    fx.assert_untouched();
}

#[test]
fn a_truncated_bundle_is_refused_before_anything_is_written() {
    let fx = Fixture::new();
    let path = fx.bundle();
    let bytes = std::fs::read(&path).unwrap();
    for keep in [bytes.len() - 1, 100, 10] {
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let r = refusal(fx.apply(&path).unwrap_err());
        assert!(matches!(r, Refused::Truncated(_)), "{keep}: {r}");
    }
    // And one with bytes added.
    std::fs::write(&path, [&bytes[..], b"x"].concat()).unwrap();
    assert!(matches!(refusal(fx.apply(&path).unwrap_err()), Refused::Truncated(_)));
    fx.assert_untouched();
}

#[test]
fn a_power_cut_at_any_write_step_leaves_the_old_slot_booting() {
    let steps = {
        let fx = Fixture::new();
        let mut cut = PowerCut::never();
        apply_file(&fx.cfg, &fx.bundle(), None, fx.now, &mut cut).unwrap();
        cut.steps
    };
    // Old entry removal + ESP fsync (2), 3 slot writes, fsync, read back, the new entry's
    // write, fsync, rename, ESP fsync (4), the applied record.
    assert_eq!(steps, 12);
    for n in 0..steps {
        let fx = Fixture::new();
        let bundle = fx.bundle();
        let e = apply_file(&fx.cfg, &bundle, None, fx.now, &mut PowerCut::at(n)).unwrap_err();
        assert!(format!("{e:#}").contains("simulated power cut"), "{n}: {e:#}");
        let names = fx.entry_names();
        let new_entry = "gateway-1.0.11-b+3.conf".to_string();
        if names.contains(&new_entry) {
            // Past the commit point: the new slot is complete and verified.
            let rootfs = std::fs::read(&fx.rootfs).unwrap();
            assert_eq!(&std::fs::read(&fx.cfg.slot_b).unwrap()[..rootfs.len()], &rootfs[..], "step {n}");
            assert_eq!(names, vec![RUNNING_ENTRY.to_string(), new_entry], "step {n}");
            assert_eq!(state::floor(&fx.cfg.state_dir).unwrap(), Some(v(RUNNING)), "step {n}");
        } else {
            fx.assert_old_slot_boots();
        }
        // A rerun after the power comes back completes the update.
        fx.apply(&bundle).unwrap();
        assert!(fx.entry_names().contains(&"gateway-1.0.11-b+3.conf".to_string()));
    }
}

#[test]
fn a_rotated_keyring_needs_a_threshold_of_the_current_one() {
    let fx = Fixture::new();
    let (root, state_dir) = (&fx.cfg.trust_root, &fx.cfg.state_dir);
    // v2: k0 revoked, k3 added; threshold 2 of k1, k2, k3.
    let body = keyring_of(&[&fx.keys[0], &fx.keys[1], &fx.keys[2], &fx.keys[3]], 2, 2, vec![fx.keys[0].public().id]);
    let one = Keyring::sign_new(&body, &[fx.key(1)]).unwrap();
    let err = keyring::install(root, state_dir, &one.to_text()).unwrap_err();
    assert!(matches!(refusal(err), Refused::Signatures { valid: 1, required: 2, .. }));
    // Signed by a key of the new keyring only (k3): not trusted yet.
    let outsider = Keyring::sign_new(&body, &[fx.key(3), fx.key(1)]).unwrap();
    assert!(keyring::install(root, state_dir, &outsider.to_text()).is_err());
    let good = Keyring::sign_new(&body, &[fx.key(0), fx.key(1)]).unwrap();
    assert_eq!(keyring::install(root, state_dir, &good.to_text()).unwrap().body.version, 2);
    assert_eq!(keyring::effective(root, state_dir).unwrap().body.version, 2);
    // The same version again is not a rotation.
    assert!(keyring::install(root, state_dir, &good.to_text()).is_err());
    // Now k0 is revoked: its signature no longer counts; k3's does.
    let spec = BundleSpec { keyring_version: 2, ..fx.spec() };
    let r = refusal(fx.apply(&fx.bundle_with(spec, &[0, 1])).unwrap_err());
    assert!(matches!(r, Refused::Signatures { revoked: 1, .. }), "{r}");
    let spec = BundleSpec { keyring_version: 2, ..fx.spec() };
    fx.apply(&fx.bundle_with(spec, &[1, 3])).unwrap();
}

#[test]
fn a_kept_keyring_that_was_tampered_with_is_ignored() {
    let fx = Fixture::new();
    let body = keyring_of(&[&fx.keys[1], &fx.keys[3]], 2, 1, vec![]);
    let good = Keyring::sign_new(&body, &[fx.key(0), fx.key(1)]).unwrap();
    keyring::install(&fx.cfg.trust_root, &fx.cfg.state_dir, &good.to_text()).unwrap();
    let kept = fx.cfg.state_dir.join("keyrings/2.json");
    let text = std::fs::read_to_string(&kept).unwrap().replace("\"threshold\": 1", "\"threshold\": 2");
    std::fs::write(&kept, text).unwrap();
    assert_eq!(keyring::effective(&fx.cfg.trust_root, &fx.cfg.state_dir).unwrap().body.version, 1);
}

#[test]
fn a_keyring_needs_two_keys_and_a_reachable_threshold() {
    let fx = Fixture::new();
    let single = keyring_of(&[&fx.keys[0]], 1, 1, vec![]);
    assert!(Keyring::sign_new(&single, &[]).is_err());
    let unreachable = keyring_of(&[&fx.keys[0], &fx.keys[1]], 1, 2, vec![fx.keys[1].public().id]);
    assert!(Keyring::sign_new(&unreachable, &[]).is_err());
}

#[test]
fn a_keyring_signature_never_passes_as_a_manifest_signature() {
    let fx = Fixture::new();
    let k = fx.key(0);
    let sig = k.sign(keyring::DOMAIN, b"{}");
    assert!(super::keys::verify(&k.public(), keyring::DOMAIN, b"{}", &sig));
    assert!(!super::keys::verify(&k.public(), bundle::DOMAIN, b"{}", &sig));
}

#[test]
fn a_fallback_after_an_update_is_recorded_once_and_the_floor_waits_for_a_blessed_boot() {
    let fx = Fixture::new();
    fx.apply(&fx.bundle()).unwrap();
    // The new slot failed its tries: systemd-boot fell back to a, still 1.0.10.
    let r = boot::check_rollback(&fx.cfg, fx.now).unwrap().unwrap();
    assert_eq!((r.failed, r.running), (v("1.0.11"), v(RUNNING)));
    assert!(boot::check_rollback(&fx.cfg, fx.now).unwrap().is_none(), "counted twice");
    assert_eq!(boot::rollback_count(&fx.cfg.state_dir), 1);
    assert_eq!(boot::confirm(&fx.cfg).unwrap(), None);
    assert_eq!(state::floor(&fx.cfg.state_dir).unwrap(), Some(v(RUNNING)));
    // Applied again, and this time it boots and is blessed.
    fx.apply(&fx.bundle()).unwrap();
    std::fs::write(&fx.cfg.os_release, "IMAGE_VERSION=1.0.11\n").unwrap();
    assert!(boot::check_rollback(&fx.cfg, fx.now).unwrap().is_none());
    assert_eq!(boot::confirm(&fx.cfg).unwrap(), Some(v("1.0.11")));
    assert_eq!(boot::rollback_count(&fx.cfg.state_dir), 1);
    // From now on 1.0.10 is a downgrade.
    std::fs::write(&fx.cfg.cmdline, "root=PARTLABEL=rootfs-b\n").unwrap();
    let spec = BundleSpec { version: v("1.0.10"), ..fx.spec() };
    assert!(matches!(refusal(fx.apply(&fx.bundle_with(spec, &[0, 1])).unwrap_err()), Refused::Downgrade { .. }));
}

#[test]
fn entry_names_and_versions_parse() {
    let e = slots::parse_entry_name("gateway-1.0.180-b+0-3.conf").unwrap();
    assert_eq!((e.version, e.slot, e.tries_left), (v("1.0.180"), Slot::B, Some(0)));
    let e = slots::parse_entry_name("gateway-1.0.180-a.conf").unwrap();
    assert_eq!((e.slot, e.tries_left), (Slot::A, None));
    assert!(slots::parse_entry_name("other-1.0-a.conf").is_none());
    assert!(slots::parse_entry_name("gateway-1.0.180-c.conf").is_none());
    assert!(v("1.0.180") < v("1.0.1000") && v("1.1") > v("1.0.999"));
    assert!("1.x".parse::<Version>().is_err());
}

#[test]
fn the_booted_slot_comes_from_the_kernel_command_line() {
    let fx = Fixture::new();
    assert_eq!(slots::booted(&fx.cfg.cmdline).unwrap(), Slot::A);
    std::fs::write(&fx.cfg.cmdline, "root=/dev/vda2 ro").unwrap();
    assert!(slots::booted(&fx.cfg.cmdline).is_err());
}
