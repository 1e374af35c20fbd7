//! The status as a plain-text table for a terminal (`gateway status`).

use std::fmt::Write;

use super::{age, size, time, Status};

/// The text, one section after another.
pub fn render(s: &Status) -> String {
    let mut o = String::new();
    let now = s.at_ms;
    let _ = writeln!(o, "Gateway {} — sampled {}", s.device, time(now));
    let v = &s.version;
    let _ = writeln!(
        o,
        "Version  {}  image {}  slot {}",
        v.binary,
        v.image.as_deref().unwrap_or("unknown"),
        v.slot.as_deref().unwrap_or("unknown")
    );
    o.push_str("\nALERTS\n");
    if s.alerts.is_empty() {
        o.push_str("  none\n");
    }
    for a in &s.alerts {
        let listener = a.listener.as_deref().map(|l| format!(" [{l}]")).unwrap_or_default();
        let _ = writeln!(o, "  {}{listener}: {} (since {})", a.name, a.detail, time(a.since_ms));
    }
    let _ = writeln!(
        o,
        "\nLISTENERS\n  {:<16} {:<24} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "name", "last message", "/min 5m", "/min 15m", "AA", "AE", "AR", "CA", "CE", "CR"
    );
    for f in &s.listeners {
        let last = f.last_message_ms.map_or("never".into(), |t| format!("{} ago", age((now - t).max(0) / 1000)));
        let _ = write!(o, "  {:<16} {:<24} {:>8.1} {:>8.1}", f.name, last, f.per_minute_5, f.per_minute_15);
        for code in ["AA", "AE", "AR", "CA", "CE", "CR"] {
            let _ = write!(o, " {:>6}", f.acks.get(code).copied().unwrap_or(0));
        }
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "\nQUEUE\n  undelivered          {}\n  oldest undelivered   {}",
        s.queue.depth,
        s.queue.oldest_undelivered_secs.map_or("none".into(), age)
    );
    let c = &s.cloud;
    let failures: Vec<String> = c.failures.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        o,
        "\nCLOUD\n  target               {}\n  link                 {}\n  circuit              {}\n  auth                 {}\n  delivered            {}\n  failed attempts      {}",
        c.target,
        c.link,
        c.circuit,
        c.auth,
        c.delivered,
        if failures.is_empty() { "none".into() } else { failures.join(", ") }
    );
    let _ = writeln!(o, "\nDEAD LETTERS\n  count                {}", s.dead_letters.count);
    for d in &s.dead_letters.newest {
        let _ = writeln!(o, "  #{:<6} {}  {}", d.id, time(d.at_ms), d.reason);
    }
    let d = &s.disk;
    let fs = match (d.filesystem_used_bytes, d.filesystem_bytes, d.filesystem_percent) {
        (Some(used), Some(total), Some(p)) => format!("{} of {} ({p:.0} %)", size(used), size(total)),
        _ => "unknown".into(),
    };
    let _ = writeln!(
        o,
        "\nDISK\n  storage              {}\n  journal vs budget    {} of {} ({:.0} %)\n  filesystem           {fs}",
        d.storage_problem.as_deref().map_or("ok".into(), |p| format!("FULL OR FAILING: {p}")),
        size(d.journal_bytes),
        size(d.budget_bytes),
        d.budget_percent
    );
    if let Some(t) = &s.tunnel {
        let bytes = |b: Option<u64>| b.map_or("unknown".into(), size);
        let _ = writeln!(
            o,
            "\nTUNNEL\n  wg0                  {}{}\n  last handshake       {}\n  received / sent      {} / {}",
            t.state,
            t.problem.as_deref().map(|p| format!(": {p}")).unwrap_or_default(),
            t.handshake_age_secs.map_or("never".into(), |a| format!("{} ago", age(a as i64))),
            bytes(t.rx_bytes),
            bytes(t.tx_bytes)
        );
    }
    o.push_str("\nCONVERSION WARNINGS\n");
    for (kind, n) in &s.conversion_warnings {
        let _ = writeln!(o, "  {kind:<20} {n}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_is_printed() {
        let text = render(&super::super::sample::status());
        for want in [
            "ALERTS\n  oldest_undelivered: oldest undelivered message waits 125 s",
            "  adt ",
            "  oldest undelivered   2 min 5 s",
            "  link                 circuit open",
            "  #7      ",
            "journal vs budget    3.0 MiB of 4.0 MiB (75 %)",
            "  unmapped_code        2",
            "image 2026.01  slot b",
            "TUNNEL\n  wg0                  down: last handshake 400 s ago (more than 180 s)\n  last handshake       6 min 40 s ago\n  received / sent      1.0 MiB / 2.0 KiB",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        let without = render(&Status { tunnel: None, ..super::super::sample::status() });
        assert!(!without.contains("TUNNEL"));
    }
}
