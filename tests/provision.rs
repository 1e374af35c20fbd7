//! USB provisioning end to end on FAT images made here with the `fatfs` crate (the host kernel
//! cannot mount vfat): the stick is read the way `gateway provision` reads an image or block
//! device; the symlink and the huge sparse file use the mountpoint (folder) variant.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gateway::provision::stick::{DirStick, FatStick, Stick, StickError};
use gateway::provision::trust::{self, Purpose, SigningKey};
use gateway::provision::{self, apply, Identity, Options, Refusal};

const SERIAL: &str = "SN-0042";

struct Box_ {
    tmp: tempfile::TempDir,
    opts: Options,
    office: [SigningKey; 2],
}

fn setup() -> Box_ {
    let tmp = tempfile::tempdir().unwrap();
    let office = [SigningKey::generate().unwrap(), SigningKey::generate().unwrap()];
    let shipped = tmp.path().join("shipped.toml");
    std::fs::write(&shipped, config_text(tmp.path(), None)).unwrap();
    let opts = Options {
        keys: office.iter().map(SigningKey::public).collect(),
        threshold: 2,
        state_dir: tmp.path().join("state"),
        current_config: shipped,
        identity: Identity { serial: SERIAL.into(), board: "board".into() },
        networkd_dir: tmp.path().join("run-network"),
        activate: false,
        marker: Some(tmp.path().join("provisioning")),
        now: jiff::Timestamp::now(),
    };
    Box_ { tmp, opts, office }
}

/// A full gateway configuration; with `provision`, a provisioned one with a tunnel.
fn config_text(dir: &Path, provision: Option<&str>) -> String {
    let mut t = format!(
        "[store]\npath = \"{0}/journal.db\"\nkey_file = \"{0}/journal.key\"\n\n[[listener]]\nname = \"mllp\"\nbind = \"0.0.0.0:2575\"\n",
        dir.display()
    );
    if let Some(p) = provision {
        t.push_str(p);
        t.push_str(
            "\n[wireguard]\naddress = [\"10.99.0.17/32\"]\npeer_public_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\nendpoint = \"203.0.113.5:51820\"\nallowed_ips = [\"10.100.0.0/16\"]\n",
        );
    }
    t
}

fn hours(h: i64) -> jiff::Timestamp {
    jiff::Timestamp::now() + jiff::SignedDuration::from_hours(h)
}

fn manifest(b: &Box_, version: u64, scope: &str, from: jiff::Timestamp, until: jiff::Timestamp) -> Vec<u8> {
    let p = format!(
        "\n[provision]\nconfig_version = {version}\n{scope}\nnot_before = \"{from}\"\nnot_after = \"{until}\"\nhospital_nets = [\"10.20.0.0/16\"]\n"
    );
    config_text(b.tmp.path(), Some(&p)).into_bytes()
}

fn valid(b: &Box_, version: u64) -> Vec<u8> {
    manifest(b, version, &format!("serials = [\"{SERIAL}\"]"), hours(-1), hours(24))
}

fn signatures(keys: &[&SigningKey], data: &[u8]) -> Vec<u8> {
    keys.iter().map(|k| k.sign_line(Purpose::Manifest, data)).collect::<String>().into_bytes()
}

/// A FAT image labelled `label` holding `files`.
fn fat_image(dir: &Path, name: &str, label: &[u8; 11], files: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    f.set_len(4 << 20).unwrap();
    fatfs::format_volume(&mut f, fatfs::FormatVolumeOptions::new().volume_label(*label)).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    {
        let fs = fatfs::FileSystem::new(&mut f, fatfs::FsOptions::new()).unwrap();
        for (n, data) in files {
            fs.root_dir().create_file(n).unwrap().write_all(data).unwrap();
        }
        fs.unmount().unwrap();
    }
    path
}

fn stick(b: &Box_, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    fat_image(b.tmp.path(), name, b"GW-PROV    ", files)
}

fn signed_stick(b: &Box_, name: &str, data: &[u8]) -> PathBuf {
    let sig = signatures(&[&b.office[0], &b.office[1]], data);
    stick(b, name, &[("provision.toml", data), ("provision.sig", &sig)])
}

fn run(b: &Box_, image: &Path) -> Result<u64, Refusal> {
    let mut s = FatStick::open_path(image).unwrap();
    provision::provision(&mut s, &b.opts)
}

fn read_back(image: &Path, name: &str) -> Option<String> {
    let mut s = FatStick::open_path(image).unwrap();
    s.read(name, 1 << 20).ok().map(|d| String::from_utf8(d).unwrap())
}

fn receipt(b: &Box_, image: &Path) -> toml::Table {
    let (name, _) = provision::receipt_names(&b.opts.identity.serial);
    read_back(image, &name).expect("a receipt on the stick").parse().unwrap()
}

fn live(b: &Box_) -> Option<Vec<u8>> {
    std::fs::read(b.opts.state_dir.join(apply::LIVE)).ok()
}

fn audit_actions(b: &Box_) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(b.tmp.path().join("journal.db")).unwrap();
    let mut stmt = conn.prepare("SELECT action, journal_seq FROM audit ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn a_signed_stick_is_applied_with_a_signed_receipt_of_public_material_only() {
    let b = setup();
    let data = valid(&b, 1);
    let image = signed_stick(&b, "ok.img", &data);
    assert_eq!(run(&b, &image).unwrap(), 1);
    assert_eq!(live(&b).unwrap(), data);
    assert!(b.opts.networkd_dir.join(provision::network::NETDEV_FILE).is_file());
    let nft = std::fs::read_to_string(b.opts.state_dir.join(provision::network::NFT_FILE)).unwrap();
    assert!(nft.contains("add element inet gateway hospital_nets4 { 10.20.0.0/16 }"), "{nft}");

    let r = receipt(&b, &image);
    assert_eq!(r["result"].as_str(), Some("applied"));
    assert_eq!(r["serial"].as_str(), Some(SERIAL));
    assert_eq!(r["config_version"].as_integer(), Some(1));
    assert_eq!(r["config_sha256"].as_str().unwrap().len(), 64);
    assert!(r["tls_client_csr"].as_str().unwrap().contains("BEGIN CERTIFICATE REQUEST"));
    let wg_public = r["wireguard_public_key"].as_str().unwrap();
    // Nothing private left the box.
    let (name, sig_name) = provision::receipt_names(SERIAL);
    let text = read_back(&image, &name).unwrap();
    assert!(!text.contains("PRIVATE"), "{text}");
    let keys_dir = b.opts.state_dir.join("keys");
    for f in std::fs::read_dir(&keys_dir).unwrap() {
        let f = f.unwrap();
        let content = std::fs::read_to_string(f.path()).unwrap();
        if f.file_name().to_string_lossy().ends_with(".key") {
            assert_eq!(f.metadata().unwrap().mode() & 0o777, 0o600, "{:?}", f.file_name());
            assert!(!text.contains(content.trim()), "{:?} is on the stick", f.file_name());
        }
    }
    assert_ne!(wg_public, std::fs::read_to_string(keys_dir.join("wireguard.key")).unwrap().trim());
    // The receipt is signed by the device key it names.
    let device = base64_decode(r["device_public_key"].as_str().unwrap());
    let device = trust::PublicKey::from_bytes(&device).unwrap();
    let sig = read_back(&image, &sig_name).unwrap();
    trust::verify(Purpose::Receipt, text.as_bytes(), sig.as_bytes(), &[device], 1).unwrap();

    assert_eq!(audit_actions(&b), vec![("provision-applied".to_string(), 1)]);
    assert_eq!(std::fs::read_to_string(b.tmp.path().join("provisioning")).unwrap().trim(), "applied");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// The refusal, and that nothing was applied while the stick got a refusal receipt.
fn refused(b: &Box_, image: &Path) -> Refusal {
    let before = live(b);
    let e = run(b, image).unwrap_err();
    assert_eq!(live(b), before, "{e}");
    let r = receipt(b, image);
    assert_eq!(r["result"].as_str(), Some("refused"));
    assert_eq!(r["code"].as_str(), Some(e.code()));
    assert_eq!(audit_actions(b).last().map(|a| a.0.clone()), Some(e.code().to_string()));
    assert_eq!(std::fs::read_to_string(b.tmp.path().join("provisioning")).unwrap().trim(), "refused");
    e
}

#[test]
fn an_unsigned_stick_is_refused() {
    let b = setup();
    let image = stick(&b, "unsigned.img", &[("provision.toml", &valid(&b, 1))]);
    assert!(matches!(refused(&b, &image), Refusal::Trust(trust::TrustError::Unsigned)));
}

#[test]
fn one_signature_when_two_are_required_is_refused() {
    let b = setup();
    let data = valid(&b, 1);
    let sig = signatures(&[&b.office[0]], &data);
    let image = stick(&b, "one.img", &[("provision.toml", &data), ("provision.sig", &sig)]);
    assert!(matches!(refused(&b, &image), Refusal::Trust(trust::TrustError::TooFew { valid: 1, needed: 2 })));
}

#[test]
fn a_stick_for_another_serial_is_refused_and_a_site_wide_one_applies() {
    let b = setup();
    let other = manifest(&b, 1, "serials = [\"SN-9999\"]", hours(-1), hours(1));
    let image = signed_stick(&b, "other.img", &other);
    assert!(matches!(refused(&b, &image), Refusal::NotForThisBox { .. }));
    let site = manifest(&b, 1, "site_wide = true", hours(-1), hours(1));
    assert_eq!(run(&b, &signed_stick(&b, "site.img", &site)).unwrap(), 1);
}

#[test]
fn an_expired_or_not_yet_valid_stick_is_refused() {
    let b = setup();
    let scope = format!("serials = [\"{SERIAL}\"]");
    let expired = signed_stick(&b, "expired.img", &manifest(&b, 1, &scope, hours(-48), hours(-24)));
    assert!(matches!(refused(&b, &expired), Refusal::Expired(_)));
    let early = signed_stick(&b, "early.img", &manifest(&b, 1, &scope, hours(24), hours(48)));
    assert!(matches!(refused(&b, &early), Refusal::NotYetValid(_)));
}

#[test]
fn an_older_version_is_refused() {
    let b = setup();
    assert_eq!(run(&b, &signed_stick(&b, "v5.img", &valid(&b, 5))).unwrap(), 5);
    let older = signed_stick(&b, "v3.img", &valid(&b, 3));
    assert!(matches!(refused(&b, &older), Refusal::Older { version: 3, last: 5 }));
}

#[test]
fn the_same_stick_again_is_refused_as_replayed() {
    let b = setup();
    let image = signed_stick(&b, "v1.img", &valid(&b, 1));
    assert_eq!(run(&b, &image).unwrap(), 1);
    assert!(matches!(refused(&b, &image), Refusal::Replayed { version: 1 }));
}

#[test]
fn a_2_gib_file_is_refused_before_it_is_read() {
    let b = setup();
    // FAT: the directory declares 2 GiB (the image stays 4 MiB).
    let data = valid(&b, 1);
    let image = signed_stick(&b, "huge.img", &data);
    let mut raw = std::fs::read(&image).unwrap();
    let at = raw.windows(11).position(|w| w == b"PROVIS~1TOM").expect("the short name entry");
    raw[at + 28..at + 32].copy_from_slice(&(2u32 << 30).to_le_bytes());
    std::fs::write(&image, raw).unwrap();
    let e = refused(&b, &image);
    assert!(matches!(e, Refusal::Stick(StickError::TooLarge { size: 2_147_483_648, .. })), "{e}");

    // A mounted stick: a sparse 2 GiB file (nothing is written).
    let dir = b.tmp.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("provision.sig"), signatures(&[&b.office[0], &b.office[1]], &data)).unwrap();
    std::fs::File::create(dir.join("provision.toml")).unwrap().set_len(2 << 30).unwrap();
    let e = provision::provision(&mut DirStick::new(&dir, false), &b.opts).unwrap_err();
    assert!(matches!(e, Refusal::Stick(StickError::TooLarge { size: 2_147_483_648, .. })), "{e}");
}

#[test]
fn a_symlink_on_a_mounted_stick_is_refused() {
    let b = setup();
    let data = valid(&b, 1);
    let elsewhere = b.tmp.path().join("elsewhere.toml");
    std::fs::write(&elsewhere, &data).unwrap();
    let dir = b.tmp.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("provision.sig"), signatures(&[&b.office[0], &b.office[1]], &data)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("provision.toml")).unwrap();
    let e = provision::provision(&mut DirStick::new(&dir, false), &b.opts).unwrap_err();
    assert!(matches!(e, Refusal::Stick(StickError::NotRegular { .. })), "{e}");
    assert!(live(&b).is_none());
    // The refusal receipt is on the stick.
    let (name, _) = provision::receipt_names(SERIAL);
    assert!(std::fs::read_to_string(dir.join(name)).unwrap().contains("provision-refused-unreadable"));
}

#[test]
fn garbage_and_wrongly_labelled_sticks_are_refused() {
    let b = setup();
    let garbage = b.tmp.path().join("garbage.img");
    std::fs::write(
        &garbage,
        (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(matches!(FatStick::open_path(&garbage), Err(StickError::NotFat(_))));
    let data = valid(&b, 1);
    let other = fat_image(b.tmp.path(), "label.img", b"HOLIDAYS   ", &[("provision.toml", &data)]);
    assert!(matches!(FatStick::open_path(&other), Err(StickError::Label { .. })));
}

/// An image that fails every read past a byte budget once armed: a stick pulled midway.
struct Pulled {
    file: std::fs::File,
    budget: Arc<AtomicU64>,
}

impl Read for Pulled {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.budget.load(Ordering::SeqCst);
        if left < buf.len() as u64 {
            return Err(std::io::Error::other("device removed"));
        }
        self.budget.fetch_sub(buf.len() as u64, Ordering::SeqCst);
        self.file.read(buf)
    }
}

impl Write for Pulled {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other(format!("device removed ({} bytes not written)", buf.len())))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for Pulled {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

#[test]
fn a_stick_pulled_mid_read_leaves_the_old_config() {
    let b = setup();
    let first = valid(&b, 1);
    assert_eq!(run(&b, &signed_stick(&b, "v1.img", &first)).unwrap(), 1);
    // A large v2 (padded with a comment) whose read cannot finish within the budget.
    let mut second = valid(&b, 2);
    second.extend(format!("# {}\n", "x".repeat(60_000)).bytes());
    let image = signed_stick(&b, "v2.img", &second);
    let budget = Arc::new(AtomicU64::new(u64::MAX));
    let disk = Pulled { file: std::fs::File::open(&image).unwrap(), budget: budget.clone() };
    let mut s = FatStick::new(disk).unwrap();
    budget.store(16 * 1024, Ordering::SeqCst);
    let e = provision::provision(&mut s, &b.opts).unwrap_err();
    assert!(matches!(&e, Refusal::Stick(StickError::Io { name, .. }) if name == "provision.toml"), "{e}");
    assert_eq!(live(&b).unwrap(), first);
    assert_eq!(apply::last_version(&b.opts.state_dir).unwrap().map(|v| v.0), Some(1));
}

/// The office's tools and the device command through the binary: `sign` twice, `verify`, then
/// `gateway provision <image>` applies it; the same image again is refused.
#[test]
fn the_office_signs_and_the_command_applies() {
    let b = setup();
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("provision-keys");
    let office = b.tmp.path().join("office");
    std::fs::create_dir(&office).unwrap();
    let manifest_path = office.join("provision.toml");
    std::fs::write(&manifest_path, valid(&b, 7)).unwrap();
    let gateway = |args: &[&str]| {
        let out = std::process::Command::new(gateway_tests::gateway_bin()).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let p = |p: &Path| p.display().to_string();
    let keys_arg = p(&keys);
    for k in ["dev-office-a.key", "dev-office-b.key"] {
        let (ok, out) = gateway(&["provision", "sign", "--key", &p(&keys.join(k)), &p(&manifest_path)]);
        assert!(ok, "{out}");
        // After one signature the threshold of two is not met yet.
        if k == "dev-office-a.key" {
            let (ok, out) = gateway(&["provision", "verify", "--keys", &keys_arg, &p(&office)]);
            assert!(!ok && out.contains("1 valid signature(s) from provisioning keys, 2 needed"), "{out}");
        }
    }
    let (ok, out) = gateway(&["provision", "verify", "--keys", &keys_arg, "--serial", SERIAL, &p(&office)]);
    assert!(ok && out.contains("config_version 7"), "{out}");

    let data = std::fs::read(&manifest_path).unwrap();
    let sig = std::fs::read(office.join("provision.sig")).unwrap();
    let image = stick(&b, "cli.img", &[("provision.toml", &data), ("provision.sig", &sig)]);
    let apply = [
        "provision",
        &p(&image),
        "--keys",
        &keys_arg,
        "--state",
        &p(&b.opts.state_dir),
        "--config",
        &p(&b.opts.current_config),
        "--serial",
        SERIAL,
        "--networkd-dir",
        &p(&b.opts.networkd_dir),
        "--no-activate",
    ];
    let (ok, out) = gateway(&apply);
    assert!(ok && out.contains("applied config_version 7"), "{out}");
    assert_eq!(live(&b).unwrap(), data);
    let (ok, out) = gateway(&apply);
    assert!(!ok && out.contains("provision-refused-replayed"), "{out}");
    assert_eq!(receipt(&b, &image)["code"].as_str(), Some("provision-refused-replayed"));
    // check-config accepts the applied file.
    let (ok, out) = gateway(&["check-config", "--config", &p(&b.opts.state_dir.join(apply::LIVE))]);
    assert!(ok, "{out}");
}

// ------------------------------------------------------------------ the client certificate back

/// The cloud's CA, made here.
fn cloud_ca() -> rcgen::Issuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "cloud client CA");
    rcgen::Issuer::new(params, rcgen::KeyPair::generate().unwrap())
}

/// A stick of `version` carrying `certificate` in `[provision]`, whose `[cloud]` names the
/// box's own key and certificate (relative: beside the provisioned configuration).
fn with_certificate(b: &Box_, version: u64, certificate: &str) -> Vec<u8> {
    let p = format!(
        "\n[provision]\nconfig_version = {version}\nserials = [\"{SERIAL}\"]\nnot_before = \"{}\"\nnot_after = \"{}\"\nclient_certificate = \"\"\"\n{certificate}\"\"\"\n",
        hours(-1),
        hours(24)
    );
    let mut text = config_text(b.tmp.path(), Some(&p));
    text.push_str(
        "\n[cloud]\nurl = \"https://fhir.example/r4\"\nclient_cert = \"keys/tls-client.crt\"\nclient_key = \"keys/tls-client.key\"\n",
    );
    text.into_bytes()
}

fn check_config(path: &Path) -> (bool, String) {
    let out = std::process::Command::new(gateway_tests::gateway_bin())
        .arg("check-config")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// The receipt's CSR goes to the cloud's CA; the certificate comes back on the next stick,
/// is installed beside the device key, and the configuration naming both passes check-config
/// and loads as a TLS client identity.
#[test]
fn the_certificate_for_the_receipts_csr_comes_back_and_is_installed() {
    let b = setup();
    let first = signed_stick(&b, "v1.img", &valid(&b, 1));
    assert_eq!(run(&b, &first).unwrap(), 1);
    let csr = receipt(&b, &first)["tls_client_csr"].as_str().unwrap().to_string();
    let ca = cloud_ca();
    let certificate = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap().signed_by(&ca).unwrap().pem();

    let data = with_certificate(&b, 2, &certificate);
    let image = signed_stick(&b, "v2.img", &data);
    assert_eq!(run(&b, &image).unwrap(), 2, "{:?}", receipt(&b, &image).get("reason"));
    assert_eq!(live(&b).unwrap(), data);
    let keys = b.opts.state_dir.join("keys");
    let installed = keys.join("tls-client.crt");
    assert_eq!(std::fs::read_to_string(&installed).unwrap().trim(), certificate.trim());
    assert_eq!(std::fs::metadata(&installed).unwrap().mode() & 0o777, 0o644);

    let (ok, out) = check_config(&b.opts.state_dir.join(apply::LIVE));
    assert!(ok, "{out}");
    // The pair loads as rustls loads a client identity, and the keys match.
    use rustls::pki_types::pem::PemObject as _;
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(&installed).unwrap().map(Result::unwrap).collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(keys.join("tls-client.key")).unwrap();
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key, &provider).unwrap().keys_match().unwrap();
}

#[test]
fn a_certificate_for_another_key_refuses_the_whole_stick() {
    let b = setup();
    let first = valid(&b, 1);
    assert_eq!(run(&b, &signed_stick(&b, "v1.img", &first)).unwrap(), 1);
    // A CSR made elsewhere, signed by the same CA.
    let stranger = rcgen::KeyPair::generate().unwrap();
    let ca = cloud_ca();
    let certificate =
        rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().signed_by(&stranger, &ca).unwrap().pem();
    let image = signed_stick(&b, "v2.img", &with_certificate(&b, 2, &certificate));
    let e = refused(&b, &image);
    assert!(matches!(e, Refusal::ClientCertificate(_)), "{e}");
    assert_eq!(e.code(), "provision-refused-client-certificate");
    assert!(receipt(&b, &image)["reason"].as_str().unwrap().contains("another key"), "{e}");
    assert_eq!(live(&b).unwrap(), first, "the old configuration stays");
    assert!(!b.opts.state_dir.join("keys/tls-client.crt").exists());
    assert_eq!(apply::last_version(&b.opts.state_dir).unwrap().map(|v| v.0), Some(1));
}
