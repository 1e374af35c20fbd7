//! `/status` as one self-contained HTML page: inline CSS, no scripts, no external assets,
//! refreshing itself every 10 s. Every text from the status is escaped.

use std::fmt::Write;

use super::{age, size, time, Status};

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.2em 0 .4em}\
table{border-collapse:collapse;margin-bottom:.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#eee}.ok{color:#0a6b0a;font-weight:bold}.bad{color:#b00000;font-weight:bold}\
.warn{color:#9a6a00;font-weight:bold}.alerts{border:2px solid #b00000;padding:.5em;background:#fff0f0}\
.muted{color:#666}";

fn class(state: &str) -> &'static str {
    match state {
        "ok" | "closed" => "ok",
        "failing" | "half-open" => "warn",
        _ => "bad",
    }
}

/// The page.
pub fn render(s: &Status) -> String {
    let mut o = String::with_capacity(8192);
    let now = s.at_ms;
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
         <title>Gateway status: {dev}</title><style>{STYLE}</style></head><body>\
         <h1>Gateway status: {dev}</h1><p class=\"muted\" id=\"sampled\">Sampled {at}; refreshes every 10 s.</p>",
        dev = esc(&s.device),
        at = time(now)
    );
    // Alerts first: they are what an operator came for.
    let _ = write!(o, "<h2>Alerts</h2><div id=\"alerts\">");
    if s.alerts.is_empty() {
        o.push_str("<p class=\"ok\">No active alerts</p>");
    } else {
        o.push_str(
            "<div class=\"alerts\"><table><tr><th>Alert</th><th>Listener</th><th>Since</th><th>Detail</th></tr>",
        );
        for a in &s.alerts {
            let _ = write!(
                o,
                "<tr><td class=\"bad\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.name),
                esc(a.listener.as_deref().unwrap_or("")),
                time(a.since_ms),
                esc(&a.detail)
            );
        }
        o.push_str("</table></div>");
    }
    o.push_str("</div><h2>Listeners</h2><table id=\"listeners\"><tr><th>Listener</th><th>Last message</th><th>Msgs/min (5 min)</th><th>Msgs/min (15 min)</th><th>AA</th><th>AE</th><th>AR</th><th>CA</th><th>CE</th><th>CR</th></tr>");
    for f in &s.listeners {
        let last =
            f.last_message_ms.map_or("never".into(), |t| format!("{} ({} ago)", time(t), age((now - t).max(0) / 1000)));
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{last}</td><td>{:.1}</td><td>{:.1}</td>",
            esc(&f.name),
            f.per_minute_5,
            f.per_minute_15
        );
        for code in ["AA", "AE", "AR", "CA", "CE", "CR"] {
            let _ = write!(o, "<td>{}</td>", f.acks.get(code).copied().unwrap_or(0));
        }
        o.push_str("</tr>");
    }
    let oldest = s.queue.oldest_undelivered_secs.map_or("none".into(), age);
    let _ = write!(
        o,
        "</table><h2>Queue</h2><table id=\"queue\"><tr><th>Undelivered messages</th><td>{}</td></tr>\
         <tr><th>Oldest undelivered</th><td>{oldest}</td></tr></table>",
        s.queue.depth
    );
    let c = &s.cloud;
    let failures: Vec<String> =
        c.failures.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{} {n}", esc(k))).collect();
    let _ = write!(
        o,
        "<h2>Cloud</h2><table id=\"cloud\"><tr><th>Target</th><td>{}</td></tr>\
         <tr><th>Link</th><td class=\"{}\">{}</td></tr><tr><th>Circuit</th><td class=\"{}\">{}</td></tr>\
         <tr><th>Auth</th><td class=\"{}\">{}</td></tr><tr><th>Delivered</th><td>{}</td></tr>\
         <tr><th>Failed attempts</th><td>{}</td></tr></table>",
        esc(&c.target),
        class(&c.link),
        esc(&c.link),
        class(&c.circuit),
        esc(&c.circuit),
        class(&c.auth),
        esc(&c.auth),
        c.delivered,
        if failures.is_empty() { "none".into() } else { failures.join(", ") }
    );
    if let Some(t) = &s.tunnel {
        tunnel(&mut o, t);
    }
    let _ = write!(o, "<h2>Dead letters</h2><p id=\"dead-letters\">{} dead letters</p>", s.dead_letters.count);
    if !s.dead_letters.newest.is_empty() {
        o.push_str("<table><tr><th>Id</th><th>When</th><th>Reason</th></tr>");
        for d in &s.dead_letters.newest {
            let _ = write!(o, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", d.id, time(d.at_ms), esc(&d.reason));
        }
        o.push_str("</table>");
    }
    let d = &s.disk;
    let storage = match &d.storage_problem {
        Some(p) => format!("<td class=\"bad\">storage full or failing: {}</td>", esc(p)),
        None => "<td class=\"ok\">ok</td>".into(),
    };
    let fs = match (d.filesystem_used_bytes, d.filesystem_bytes, d.filesystem_percent) {
        (Some(used), Some(total), Some(p)) => format!("{} of {} ({p:.0} %)", size(used), size(total)),
        _ => "unknown".into(),
    };
    let _ = write!(
        o,
        "<h2>Disk</h2><table id=\"disk\"><tr><th>Storage</th>{storage}</tr>\
         <tr><th>Journal vs budget</th><td>{} of {} ({:.0} %)</td></tr><tr><th>Filesystem</th><td>{fs}</td></tr></table>",
        size(d.journal_bytes),
        size(d.budget_bytes),
        d.budget_percent
    );
    o.push_str("<h2>Conversion warnings</h2><table id=\"conversion\"><tr><th>Kind</th><th>Count</th></tr>");
    for (kind, n) in &s.conversion_warnings {
        let _ = write!(o, "<tr><td>{}</td><td>{n}</td></tr>", esc(kind));
    }
    let v = &s.version;
    let _ = write!(
        o,
        "</table><h2>Version</h2><table id=\"version\"><tr><th>Gateway</th><td>{}</td></tr>\
         <tr><th>Image</th><td>{}</td></tr><tr><th>Slot</th><td>{}</td></tr></table></body></html>",
        esc(&v.binary),
        esc(v.image.as_deref().unwrap_or("unknown")),
        esc(v.slot.as_deref().unwrap_or("unknown"))
    );
    o
}

/// The WireGuard tunnel's table (only with `[wireguard]`).
fn tunnel(o: &mut String, t: &super::Tunnel) {
    let class = match t.state.as_str() {
        "up" => "ok",
        "unknown" => "warn",
        _ => "bad",
    };
    let state = match &t.problem {
        Some(p) => format!("{}: {}", esc(&t.state), esc(p)),
        None => esc(&t.state),
    };
    let bytes = |b: Option<u64>| b.map_or("unknown".into(), size);
    let _ = write!(
        o,
        "<h2>Tunnel</h2><table id=\"tunnel\"><tr><th>WireGuard (wg0)</th><td class=\"{class}\">{state}</td></tr>\
         <tr><th>Last handshake</th><td>{}</td></tr><tr><th>Received</th><td>{}</td></tr>\
         <tr><th>Sent</th><td>{}</td></tr></table>",
        t.handshake_age_secs.map_or("never".into(), |a| format!("{} ago", age(a as i64))),
        bytes(t.rx_bytes),
        bytes(t.tx_bytes)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_escaped_and_refreshing() {
        let page = render(&super::super::sample::status());
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        assert!(!page.contains("http://") && !page.contains("src="), "no external assets");
        assert!(page.contains("http 400 &lt;refused&gt;"), "reasons are escaped");
        assert!(page.contains("circuit open"));
        assert!(page.contains("2 min 5 s"), "the oldest undelivered age");
        assert!(page.contains("oldest_undelivered"));
        assert!(page.contains("<td>2026.01</td>") && page.contains("<td>b</td>"));
        assert!(
            page.contains("<td class=\"bad\">down: last handshake 400 s ago (more than 180 s)</td>")
                && page.contains("<td>6 min 40 s ago</td>")
                && page.contains("<td>1.0 MiB</td>"),
            "{page}"
        );
        let without = render(&Status { tunnel: None, ..super::super::sample::status() });
        assert!(!without.contains("Tunnel"), "no section without [wireguard]");
    }
}
