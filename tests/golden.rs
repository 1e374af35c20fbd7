//! Golden bundles: the main message types converted with a site configuration, compared with
//! files reviewed by hand (tests/golden/*.json). After an intended change to the maps, run
//! `UPDATE_GOLDEN=1 cargo test -p gateway-tests --test golden`, then review the diff.

use std::path::Path;

use gateway::fhir::bundle::{self, Profile};
use gateway::fhir::convert;

#[test]
fn main_message_types_match_their_reviewed_bundles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden = root.join("golden");
    let site = gateway::cli::load_site(Some(&golden.join("site.toml"))).unwrap();
    let mut checked = 0;
    let mut names: Vec<_> = std::fs::read_dir(&golden).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for path in names.iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let raw = std::fs::read(root.join("corpus/hl7").join(format!("{name}.hl7"))).unwrap();
        let conversion = convert::convert(&raw, &site).unwrap();
        let bundles = bundle::bundles(&conversion, Profile::Generic).unwrap();
        assert_eq!(bundles.len(), 1, "{name}: one transaction bundle");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, serde_json::to_string_pretty(&bundles[0]).unwrap() + "\n").unwrap();
        }
        let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(
            bundles[0] == expected,
            "{name}: bundle differs from {} (UPDATE_GOLDEN=1 to rewrite, then review)",
            path.display()
        );
        checked += 1;
    }
    assert_eq!(
        checked, 15,
        "ADT (admit; discharge with procedures and guarantors; A17 swap), ORU, ORM, SIU, MDM (T02, T01), VXU, \
         BAR, DFT, RDS, OUL, REF and PPR goldens"
    );
}
