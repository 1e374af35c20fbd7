//! `gateway report <seq>`: the conversion report the convert stage kept with a journal row —
//! segments no map consumed, codes without a mapping, located warnings, authorities keyed
//! under the default system, keyless resource types. It is kept sealed (a sender may put a
//! name where a code belongs, and unmapped codes are shown as sent), so reading it takes the
//! journal's key, as `deadletter show` does.

use std::io::Write;
use std::path::Path;

use anyhow::bail;

use crate::config::Config;
use crate::store::{db, journal, key_guard, Keys};

/// Prints the report of journal row `seq` of the configuration's journal.
pub fn report_command(config: &Path, seq: i64, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let path = config.store.path.get_ref();
    if !path.exists() {
        bail!("journal {} does not exist", path.display());
    }
    let mut conn = db::open(path, None, db::Synchronous::Full)?;
    db::migrate(&mut conn, path)?;
    let Some(row) = journal::report(&conn, seq)? else { bail!("journal seq {seq}: no such message") };
    writeln!(out, "journal seq {seq}  MSH-10 {}  {}  state {}", row.control_id, row.message_type, row.state)?;
    match row.report {
        Some(sealed) => {
            // The CLI never creates a key, nor uses one the store was not sealed with.
            let key_file = config.store.key_file.get_ref();
            let keys = Keys::load_for_operator(key_file)?;
            if !key_guard::fits_store(&conn, &keys)? {
                bail!("key file {} is not the key the journal {} was sealed with", key_file.display(), path.display());
            }
            let json =
                keys.open(&sealed).map_err(|_| anyhow::anyhow!("journal seq {seq}: the report does not open"))?;
            let value: serde_json::Value = serde_json::from_slice(&json)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        }
        None => writeln!(
            out,
            "no conversion report (not converted yet, or the conversion failed: see `gateway deadletter list`)"
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conversion::ConvertBatch;
    use crate::store::state::JournalState;

    #[test]
    fn prints_the_kept_report_or_says_why_there_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("gateway.toml");
        std::fs::write(
            &config,
            "[store]\npath = \"j.db\"\nkey_file = \"j.key\"\n\n[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:2575\"\n",
        )
        .unwrap();
        let path = tmp.path().join("j.db");
        let mut conn = db::open(&path, None, db::Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        fn row(control_id: &str) -> journal::NewRow<'_> {
            journal::NewRow {
                received_at: 0,
                listener: "a",
                sender: "A|B",
                control_id,
                message_type: "ADT^A01",
                lane: None,
                payload_hash: control_id.as_bytes(),
                payload: b"sealed",
            }
        }
        let (converted, waiting) =
            (journal::insert(&conn, &row("C1")).unwrap(), journal::insert(&conn, &row("C2")).unwrap());
        let report = r#"{"structure":"ADT_A01","unconsumed":["5:ZPV"],"unmapped_codes":[],"warnings":["3:PID-7: invalid date/time"],"default_systems":[],"keyless":[]}"#;
        let keys = Keys::create(&tmp.path().join("j.key")).unwrap();
        let batch = ConvertBatch::begin(&mut conn, 0).unwrap();
        assert!(batch.leave_received(converted, JournalState::Converted).unwrap());
        batch.set_report(converted, &keys.seal(report.as_bytes())).unwrap();
        batch.commit().unwrap();

        let mut out = Vec::new();
        report_command(&config, converted, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("MSH-10 C1  ADT^A01  state converted"), "{out}");
        assert!(out.contains("\"3:PID-7: invalid date/time\""), "{out}");
        let mut out = Vec::new();
        report_command(&config, waiting, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("no conversion report"));
        let e = report_command(&config, 99, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("journal seq 99: no such message"), "{e}");
        // Sealed at rest: the report's text is not in the database file.
        drop(conn);
        assert!(!std::fs::read(&path).unwrap().windows(9).any(|w| w == b"ZPV\",\"xx" || w == b"invalid d"));
    }
}
